"""vfio-user wire format: constants and fixed-size layouts, declared once.

Everything on the wire is little-endian (the spec says host order; this project only runs on x86-64).
Layouts are the payloads that follow the 16-byte header; offsets in the spec are relative to the end
of the header too. Sources: QEMU's ``docs/interop/vfio-user.rst`` and ``hw/vfio-user/protocol.h``.
"""

from __future__ import annotations

import enum
import struct
from typing import Generic, NamedTuple, TypeVar

# --- protocol version and limits -------------------------------------------------------------------

VERSION_MAJOR = 0
VERSION_MINOR = 0

#: File descriptors we accept in one message; QEMU's client rejects a reply announcing more than 16.
MAX_MSG_FDS = 16
#: Largest ``count`` of a REGION/DMA read/write we accept or send (also the spec's default).
MAX_DATA_XFER_SIZE = 1 << 20
#: Client's ``max_data_xfer_size`` when it announces none (spec default).
DEFAULT_DATA_XFER_SIZE = 1 << 20
#: Largest count we put in one DMA_READ/DMA_WRITE to the client. QEMU 10.2's client sends each
#: reply with a single non-blocking writev and does not finish a partial write, so a DMA_READ reply
#: larger than its socket send buffer (~208 KiB by default) is truncated and the stream is lost
#: (measured: 192 KiB works, 256 KiB breaks). 64 KiB stays well clear of that.
DMA_CHUNK_SIZE = 64 << 10
#: Largest JSON capability text we parse in VERSION.
MAX_VERSION_JSON = 4096
#: DMA windows valid at once (spec default, also QEMU's upper bound).
MAX_DMA_MAPS = 65535
PAGE_SIZE = 4096
#: Largest payload any message we accept may carry: a REGION_WRITE of MAX_DATA_XFER_SIZE bytes plus
#: slack for its fixed part. Larger messages are drained without being stored and answered E2BIG.
MAX_PAYLOAD = MAX_DATA_XFER_SIZE + 64


class Command(enum.IntEnum):
    VERSION = 1
    DMA_MAP = 2
    DMA_UNMAP = 3
    DEVICE_GET_INFO = 4
    DEVICE_GET_REGION_INFO = 5
    DEVICE_GET_REGION_IO_FDS = 6
    DEVICE_GET_IRQ_INFO = 7
    DEVICE_SET_IRQS = 8
    REGION_READ = 9
    REGION_WRITE = 10
    DMA_READ = 11
    DMA_WRITE = 12
    DEVICE_RESET = 13
    DIRTY_PAGES = 14
    REGION_WRITE_MULTI = 15
    DEVICE_FEATURE = 16
    MIG_DATA_READ = 17
    MIG_DATA_WRITE = 18


# Header flags.
FLAG_TYPE_MASK = 0xF
TYPE_REQUEST = 0x0
TYPE_REPLY = 0x1
FLAG_NO_REPLY = 0x10
FLAG_ERROR = 0x20

# DEVICE_GET_INFO flags (linux/vfio.h VFIO_DEVICE_FLAGS_*).
DEVICE_FLAG_RESET = 1 << 0
DEVICE_FLAG_PCI = 1 << 1

# DEVICE_GET_REGION_INFO flags (VFIO_REGION_INFO_FLAG_*).
REGION_FLAG_READ = 1 << 0
REGION_FLAG_WRITE = 1 << 1
REGION_FLAG_MMAP = 1 << 2
REGION_FLAG_CAPS = 1 << 3

# DEVICE_GET_IRQ_INFO flags (VFIO_IRQ_INFO_*).
IRQ_INFO_EVENTFD = 1 << 0
IRQ_INFO_MASKABLE = 1 << 1
IRQ_INFO_AUTOMASKED = 1 << 2
IRQ_INFO_NORESIZE = 1 << 3

# DEVICE_SET_IRQS flags (VFIO_IRQ_SET_*).
IRQ_SET_DATA_NONE = 1 << 0
IRQ_SET_DATA_BOOL = 1 << 1
IRQ_SET_DATA_EVENTFD = 1 << 2
IRQ_SET_ACTION_MASK = 1 << 3
IRQ_SET_ACTION_UNMASK = 1 << 4
IRQ_SET_ACTION_TRIGGER = 1 << 5
IRQ_SET_DATA_MASK = IRQ_SET_DATA_NONE | IRQ_SET_DATA_BOOL | IRQ_SET_DATA_EVENTFD
IRQ_SET_ACTION_MASK_ALL = IRQ_SET_ACTION_MASK | IRQ_SET_ACTION_UNMASK | IRQ_SET_ACTION_TRIGGER

# DMA_MAP / DMA_UNMAP flags.
DMA_MAP_FLAG_READ = 1 << 0
DMA_MAP_FLAG_WRITE = 1 << 1
DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1 << 0
DMA_UNMAP_FLAG_ALL = 1 << 1


class RegionIndex(enum.IntEnum):
    """vfio-pci region indexes (linux/vfio.h VFIO_PCI_*_REGION_INDEX)."""

    BAR0 = 0
    BAR1 = 1
    BAR2 = 2
    BAR3 = 3
    BAR4 = 4
    BAR5 = 5
    ROM = 6
    CONFIG = 7
    VGA = 8


NUM_PCI_REGIONS = 9


class IrqIndex(enum.IntEnum):
    """vfio-pci interrupt indexes (linux/vfio.h VFIO_PCI_*_IRQ_INDEX)."""

    INTX = 0
    MSI = 1
    MSIX = 2
    ERR = 3
    REQ = 4


NUM_PCI_IRQS = 5


# --- layouts ---------------------------------------------------------------------------------------

T = TypeVar("T", bound=tuple)


class Layout(Generic[T]):
    """A fixed-size little-endian record: a NamedTuple type bound to a struct format."""

    def __init__(self, record: type[T], fmt: str) -> None:
        self.record = record
        self.struct = struct.Struct(fmt)
        self.size = self.struct.size
        if len(record._fields) != len(self.struct.unpack(bytes(self.size))):  # type: ignore[attr-defined]
            raise TypeError(f"{record.__name__}: field count does not match {fmt!r}")

    def pack(self, value: T) -> bytes:
        return self.struct.pack(*value)

    def unpack(self, buf: bytes | bytearray | memoryview, offset: int = 0) -> T:
        """Decode from ``buf[offset:]``; the caller checks the length first (struct.error otherwise)."""
        return self.record._make(self.struct.unpack_from(buf, offset))  # type: ignore[attr-defined]


class Header(NamedTuple):
    id: int
    command: int
    size: int  # whole message, header included
    flags: int
    error: int


class VersionHead(NamedTuple):
    major: int
    minor: int  # followed by optional NUL-terminated JSON


class DmaMap(NamedTuple):
    argsz: int
    flags: int
    offset: int  # offset into the passed fd
    iova: int
    size: int


class DmaUnmap(NamedTuple):
    argsz: int
    flags: int
    iova: int
    size: int


class DeviceInfo(NamedTuple):
    argsz: int
    flags: int
    num_regions: int
    num_irqs: int


class RegionInfo(NamedTuple):
    argsz: int
    flags: int
    index: int
    cap_offset: int
    size: int
    offset: int


class IrqInfo(NamedTuple):
    argsz: int
    flags: int
    index: int
    count: int


class IrqSet(NamedTuple):
    argsz: int
    flags: int
    index: int
    start: int
    count: int  # followed by data (bool array) for DATA_BOOL


class RegionAccess(NamedTuple):
    offset: int
    region: int
    count: int  # followed by data for REGION_WRITE requests and REGION_READ replies


class DmaAccess(NamedTuple):
    """DMA_READ/DMA_WRITE prefix as QEMU 10.2's client lays it out (see :data:`DMA_ACCESS`)."""

    address: int
    count: int


HEADER: Layout[Header] = Layout(Header, "<HHIII")
VERSION_HEAD: Layout[VersionHead] = Layout(VersionHead, "<HH")
DMA_MAP: Layout[DmaMap] = Layout(DmaMap, "<IIQQQ")
DMA_UNMAP: Layout[DmaUnmap] = Layout(DmaUnmap, "<IIQQ")
DEVICE_INFO: Layout[DeviceInfo] = Layout(DeviceInfo, "<IIII")
REGION_INFO: Layout[RegionInfo] = Layout(RegionInfo, "<IIIIQQ")
IRQ_INFO: Layout[IrqInfo] = Layout(IrqInfo, "<IIII")
IRQ_SET: Layout[IrqSet] = Layout(IrqSet, "<IIIII")
REGION_ACCESS: Layout[RegionAccess] = Layout(RegionAccess, "<QII")

#: DMA_READ / DMA_WRITE prefix. The spec text says ``address u64, count u64, data``; QEMU 10.2's
#: client (``VFIOUserDMARW``: u64 offset, u32 count, char data[]) reads a u32 count and puts the data
#: right after it, at payload offset 12, and requires the message to be at least
#: ``sizeof(VFIOUserDMARW) + count`` = 16 + 16 + count bytes long (4 bytes of struct padding after the
#: data). We follow QEMU, the only client we serve; see ``dma_rw.py``.
DMA_ACCESS: Layout[DmaAccess] = Layout(DmaAccess, "<QI")
#: sizeof(VFIOUserDMARW) - sizeof(VFIOUserHdr): the padded fixed part QEMU counts in message sizes.
DMA_ACCESS_PADDED = 16

HEADER_SIZE = HEADER.size


def request_type(flags: int) -> int:
    return flags & FLAG_TYPE_MASK


def encode_message(msg_id: int, command: int, flags: int, payload: bytes = b"", error: int = 0) -> bytes:
    """Header plus payload, ready to send."""
    return HEADER.pack(Header(msg_id, command, HEADER_SIZE + len(payload), flags, error)) + payload


def encode_reply(request: Header, payload: bytes = b"") -> bytes:
    return encode_message(request.id, request.command, TYPE_REPLY, payload)


def encode_error(request: Header, errno_value: int) -> bytes:
    """An error reply carries only the header (spec: "the reply message must only include the header")."""
    return encode_message(request.id, request.command, TYPE_REPLY | FLAG_ERROR, b"", errno_value)

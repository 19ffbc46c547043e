"""One connected vfio-user client: command dispatch on the socket-loop thread, and server-to-client
DMA_READ/DMA_WRITE requests from any other thread.

Error policy: a bad message gets an error reply (header with the error flag and an errno) and a log
line, and the connection continues; only an unparseable byte stream ends it. A message flagged
no-reply (posted BAR writes) never gets a reply, not even an error one: replying would desynchronise
QEMU's client. Nothing a client sends may raise out of :meth:`ClientSession.on_readable`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from ..interfaces import DMAError
from .device import RegionAccessError, VfioPciDevice
from .dma import DmaMapError, DmaMapTable, VfioGuestMemory
from .dma_rw import DmaRwLayout, decode_read_reply, encode_read_request, encode_write_request
from .framing import (
    ConnectionClosed,
    Message,
    MessageReader,
    MessageWriter,
    Oversize,
    StreamCorrupt,
    close_fds,
)
from .irq import MsixEventfds, is_eventfd
from .protocol import (
    DEFAULT_DATA_XFER_SIZE,
    DEVICE_FLAG_PCI,
    DEVICE_FLAG_RESET,
    DEVICE_INFO,
    DMA_CHUNK_SIZE,
    DMA_MAP,
    DMA_UNMAP,
    DMA_UNMAP_FLAG_ALL,
    DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
    FLAG_ERROR,
    FLAG_NO_REPLY,
    IRQ_INFO,
    IRQ_SET,
    IRQ_SET_ACTION_MASK_ALL,
    IRQ_SET_ACTION_TRIGGER,
    IRQ_SET_DATA_BOOL,
    IRQ_SET_DATA_EVENTFD,
    IRQ_SET_DATA_MASK,
    IRQ_SET_DATA_NONE,
    MAX_DATA_XFER_SIZE,
    MAX_DMA_MAPS,
    MAX_MSG_FDS,
    MAX_VERSION_JSON,
    PAGE_SIZE,
    REGION_ACCESS,
    REGION_INFO,
    TYPE_REPLY,
    TYPE_REQUEST,
    VERSION_HEAD,
    VERSION_MAJOR,
    VERSION_MINOR,
    Command,
    DeviceInfo,
    Header,
    IrqIndex,
    IrqInfo,
    RegionAccess,
    RegionInfo,
    VersionHead,
    encode_error,
    encode_message,
    encode_reply,
    request_type,
)

log = logging.getLogger("mlx5dev.vfio_user")

#: Messages handled per readiness event before going back to the selector (fairness with stop()).
_BATCH = 64
_UNSUPPORTED = {
    Command.DEVICE_GET_REGION_IO_FDS,
    Command.DIRTY_PAGES,
    Command.REGION_WRITE_MULTI,  # not announced in VERSION, so the client must not send it
    Command.DEVICE_FEATURE,
    Command.MIG_DATA_READ,
    Command.MIG_DATA_WRITE,
}


class ProtocolError(Exception):
    """Refuse the current request with ``errno``; ``expected`` refusals are logged at debug level."""

    def __init__(self, errno_value: int, message: str, expected: bool = False) -> None:
        super().__init__(message)
        self.errno = errno_value
        self.expected = expected


def _einval(message: str) -> ProtocolError:
    return ProtocolError(errno.EINVAL, message)


def _need(payload: bytes, size: int, what: str, exact: bool = False) -> None:
    if len(payload) < size or (exact and len(payload) != size):
        want = f"{size}" if exact else f">= {size}"
        raise _einval(f"{what}: payload of {len(payload)} bytes, want {want}")


@dataclass
class _Pending:
    command: int
    event: threading.Event = field(default_factory=threading.Event)
    reply: Message | None = None
    failure: str | None = None


class ClientSession:
    """Protocol state for one connection. Create, call :meth:`on_readable` when the socket is
    readable (until it returns False), then :meth:`close`."""

    def __init__(
        self,
        sock: socket.socket,
        device: VfioPciDevice,
        table: DmaMapTable,
        memory: VfioGuestMemory,
        msix: MsixEventfds,
        *,
        reply_timeout: float = 5.0,
        dma_rw_layout: DmaRwLayout = DmaRwLayout.QEMU,
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.device = device
        self.table = table
        self.memory = memory
        self.msix = msix
        self.reply_timeout = reply_timeout
        self.dma_rw_layout = dma_rw_layout
        self.reader = MessageReader(sock)
        self.writer = MessageWriter(sock, timeout=reply_timeout)
        self.negotiated = False
        #: Largest count we may put in a DMA_READ/DMA_WRITE: the negotiated limit, at most DMA_CHUNK_SIZE.
        self.xfer_limit = min(DEFAULT_DATA_XFER_SIZE, DMA_CHUNK_SIZE)
        #: The socket-loop thread: sessions are created on it (message-based DMA from it would deadlock).
        self.loop_thread = threading.get_ident()
        self.closed = False
        self._pending: dict[int, _Pending] = {}
        self._pending_lock = threading.Lock()
        self._next_id = 0
        self._handlers: dict[int, Callable[[Message], bytes]] = {
            Command.VERSION: self._version,
            Command.DMA_MAP: self._dma_map,
            Command.DMA_UNMAP: self._dma_unmap,
            Command.DEVICE_GET_INFO: self._get_info,
            Command.DEVICE_GET_REGION_INFO: self._get_region_info,
            Command.DEVICE_GET_IRQ_INFO: self._get_irq_info,
            Command.DEVICE_SET_IRQS: self._set_irqs,
            Command.REGION_READ: self._region_read,
            Command.REGION_WRITE: self._region_write,
            Command.DEVICE_RESET: self._reset,
        }
        memory.attach(self)

    # -- socket-loop side --------------------------------------------------------------------------

    def on_readable(self) -> bool:
        """Handle what arrived; False when the connection is over (peer gone or stream corrupt)."""
        for _ in range(_BATCH):
            try:
                item = self.reader.poll()
                if item is None:
                    return True
                if isinstance(item, Oversize):
                    self._oversize(item)
                else:
                    self._handle(item)
            except ConnectionClosed as exc:
                log.info("client disconnected: %s", exc)
                return False
            except StreamCorrupt as exc:
                log.warning("disconnecting client: corrupt stream: %s", exc)
                return False
        return True

    def close(self) -> None:
        """Forget the client: fail waiting DMA requests, unmap all windows, close every fd."""
        if self.closed:
            return
        self.closed = True
        self.memory.attach(None)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # unblocks a sender on another thread
        with self._pending_lock:
            pending = list(self._pending.values())
            self._pending.clear()
        for p in pending:
            p.failure = "client disconnected"
            p.event.set()
        self.writer.close_when_idle()
        self.reader.discard()
        windows = self.table.clear()
        vectors = len(self.msix.assigned())
        self.msix.clear()
        self.sock.close()
        log.info("client state dropped: %d DMA windows unmapped, %d MSI-X eventfds closed", windows, vectors)

    def _send(self, data: bytes) -> None:
        self.writer.send(data)

    def _oversize(self, item: Oversize) -> None:
        close_fds(item.fds)
        hdr = item.header
        log.warning(
            "message id=%d command=%d of %d bytes exceeds the limit; discarded", hdr.id, hdr.command, hdr.size
        )
        if request_type(hdr.flags) == TYPE_REPLY:
            self._complete(hdr.id, None, f"oversize reply ({hdr.size} bytes)")
        elif not hdr.flags & FLAG_NO_REPLY:
            self._send(encode_error(hdr, errno.E2BIG))

    def _handle(self, msg: Message) -> None:
        hdr = msg.header
        kind = request_type(hdr.flags)
        if kind == TYPE_REPLY:
            close_fds(msg.fds)
            self._complete(hdr.id, msg, None)
            return
        no_reply = bool(hdr.flags & FLAG_NO_REPLY)
        try:
            if kind != TYPE_REQUEST:
                raise _einval(f"unknown message type {kind}")
            if msg.fds_truncated:
                raise _einval(f"more than {MAX_MSG_FDS} fds")
            handler = self._handlers.get(hdr.command)
            if handler is None:
                if hdr.command in (Command.DMA_READ, Command.DMA_WRITE):
                    raise _einval(f"command {hdr.command} goes from server to client")
                if hdr.command in _UNSUPPORTED:
                    raise ProtocolError(errno.ENOTSUP, f"command {Command(hdr.command).name} not supported")
                raise ProtocolError(errno.ENOSYS, f"unknown command {hdr.command}")
            if not self.negotiated and hdr.command != Command.VERSION:
                raise _einval("request before VERSION negotiation")
            if msg.fds and hdr.command not in (Command.DMA_MAP, Command.DEVICE_SET_IRQS):
                raise _einval(f"{len(msg.fds)} unexpected fds")
            payload = handler(msg)
        except ProtocolError as exc:
            self._refuse(
                hdr, exc.errno, str(exc), no_reply, logging.DEBUG if exc.expected else logging.WARNING
            )
            return
        except Exception as exc:  # a bug here or in the device: keep serving, say so loudly
            log.exception("internal error handling command %d (id %d)", hdr.command, hdr.id)
            self._refuse(hdr, errno.EIO, f"internal error: {exc}", no_reply)
            return
        finally:
            close_fds(msg.fds)  # handlers take ownership of fds they keep by emptying the list
        if not no_reply:
            self._send(encode_reply(hdr, payload))

    def _refuse(
        self, hdr: Header, errno_value: int, why: str, no_reply: bool, level: int = logging.WARNING
    ) -> None:
        name = Command(hdr.command).name if hdr.command in Command._value2member_map_ else str(hdr.command)
        log.log(
            level,
            "refused %s (id %d, %d bytes)%s: %s [%s]",
            name,
            hdr.id,
            hdr.size,
            " (no reply wanted)" if no_reply else "",
            why,
            errno.errorcode.get(errno_value, errno_value),
        )
        if not no_reply:
            self._send(encode_error(hdr, errno_value))

    # -- command handlers (return the reply payload) -----------------------------------------------

    def _version(self, msg: Message) -> bytes:
        p = msg.payload
        if self.negotiated:
            raise _einval("VERSION sent twice")
        _need(p, VERSION_HEAD.size, "VERSION")
        head = VERSION_HEAD.unpack(p)
        if head.major != VERSION_MAJOR:
            raise ProtocolError(errno.ENOTSUP, f"protocol major {head.major} unsupported")
        caps = self._parse_caps(p[VERSION_HEAD.size :])
        reply_caps: dict[str, object] = {}
        if "max_msg_fds" in caps:
            reply_caps["max_msg_fds"] = MAX_MSG_FDS
        xfer = min(caps.get("max_data_xfer_size", DEFAULT_DATA_XFER_SIZE), MAX_DATA_XFER_SIZE)
        self.xfer_limit = min(xfer, DMA_CHUNK_SIZE)
        if "max_data_xfer_size" in caps:
            reply_caps["max_data_xfer_size"] = xfer
        if "pgsizes" in caps:
            if not caps["pgsizes"] & PAGE_SIZE:
                raise ProtocolError(errno.ENOTSUP, f"client page sizes {caps['pgsizes']:#x} lack 4 KiB")
            reply_caps["pgsizes"] = PAGE_SIZE
        if "max_dma_maps" in caps:
            reply_caps["max_dma_maps"] = min(caps["max_dma_maps"], MAX_DMA_MAPS)
        self.negotiated = True
        minor = min(head.minor, VERSION_MINOR)
        log.info(
            "client negotiated vfio-user %d.%d (client offered %d.%d, caps %s); replying caps %s",
            VERSION_MAJOR, minor, head.major, head.minor, sorted(caps), reply_caps,
        )  # fmt: skip
        text = json.dumps({"capabilities": reply_caps}, separators=(",", ":")).encode()
        return VERSION_HEAD.pack(VersionHead(VERSION_MAJOR, minor)) + text + b"\0"

    @staticmethod
    def _parse_caps(raw: bytes) -> dict[str, int]:
        """The client's numeric capabilities we use; others (migration, write_multiple, ...) are ignored."""
        text = raw.split(b"\0", 1)[0]
        if not text.strip():
            return {}
        if len(text) > MAX_VERSION_JSON:
            raise ProtocolError(errno.E2BIG, f"capabilities JSON of {len(text)} bytes")
        try:
            obj = json.loads(text.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise _einval(f"capabilities are not JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise _einval("capabilities JSON is not an object")
        caps = obj.get("capabilities", {})
        if not isinstance(caps, dict):
            raise _einval("'capabilities' is not an object")
        out: dict[str, int] = {}
        for key in ("max_msg_fds", "max_data_xfer_size", "pgsizes", "max_dma_maps"):
            if key in caps:
                value = caps[key]
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise _einval(f"capability {key}={value!r} is not a non-negative integer")
                out[key] = value
        if out.get("max_data_xfer_size") == 0:
            raise _einval("max_data_xfer_size is 0")
        return out

    def _dma_map(self, msg: Message) -> bytes:
        _need(msg.payload, DMA_MAP.size, "DMA_MAP", exact=True)
        m = DMA_MAP.unpack(msg.payload)
        if m.argsz < DMA_MAP.size:
            raise _einval(f"DMA_MAP argsz {m.argsz}")
        if len(msg.fds) > 1:
            raise _einval(f"DMA_MAP with {len(msg.fds)} fds")
        fd = msg.fds[0] if msg.fds else None
        try:
            w = self.table.add(m.iova, m.size, m.flags, fd, m.offset)
        except DmaMapError as exc:
            raise ProtocolError(exc.errno, f"DMA_MAP {m.iova:#x}+{m.size:#x}: {exc}") from exc
        log.debug("DMA map %s (fd offset %#x)", w.describe(), m.offset)
        return b""  # the fd is closed by the caller: the mmap holds its own reference

    def _dma_unmap(self, msg: Message) -> bytes:
        _need(msg.payload, DMA_UNMAP.size, "DMA_UNMAP", exact=True)
        u = DMA_UNMAP.unpack(msg.payload)
        if u.argsz < DMA_UNMAP.size:
            raise _einval(f"DMA_UNMAP argsz {u.argsz}")
        if u.flags & DMA_UNMAP_FLAG_GET_DIRTY_BITMAP:
            raise ProtocolError(errno.ENOTSUP, "dirty page tracking is not supported")
        if u.flags & ~DMA_UNMAP_FLAG_ALL:
            raise _einval(f"unknown DMA_UNMAP flags {u.flags:#x}")
        if u.flags & DMA_UNMAP_FLAG_ALL:
            n = self.table.clear()
            log.debug("DMA unmap all: %d windows", n)
        else:
            try:
                gone = self.table.remove(u.iova, u.size)
            except DmaMapError as exc:
                raise ProtocolError(exc.errno, f"DMA_UNMAP: {exc}") from exc
            log.debug("DMA unmap [%#x, +%#x): %d windows", u.iova, u.size, len(gone))
        return msg.payload  # the reply echoes the request

    def _get_info(self, msg: Message) -> bytes:
        _need(msg.payload, DEVICE_INFO.size, "DEVICE_GET_INFO")
        argsz = DEVICE_INFO.unpack(msg.payload).argsz
        if argsz < DEVICE_INFO.size:
            raise _einval(f"DEVICE_GET_INFO argsz {argsz}")
        info = DeviceInfo(
            DEVICE_INFO.size,
            DEVICE_FLAG_PCI | DEVICE_FLAG_RESET,
            self.device.num_regions,
            self.device.num_irqs,
        )
        return DEVICE_INFO.pack(info)

    def _get_region_info(self, msg: Message) -> bytes:
        _need(msg.payload, REGION_INFO.size, "DEVICE_GET_REGION_INFO")
        req = REGION_INFO.unpack(msg.payload)
        if req.argsz < REGION_INFO.size:
            raise _einval(f"DEVICE_GET_REGION_INFO argsz {req.argsz}")
        desc = self.device.region_info(req.index)
        if desc is None:
            raise _einval(f"no region {req.index}")
        return REGION_INFO.pack(RegionInfo(REGION_INFO.size, desc.flags, req.index, 0, desc.size, 0))

    def _get_irq_info(self, msg: Message) -> bytes:
        _need(msg.payload, IRQ_INFO.size, "DEVICE_GET_IRQ_INFO")
        req = IRQ_INFO.unpack(msg.payload)
        if req.argsz < IRQ_INFO.size:
            raise _einval(f"DEVICE_GET_IRQ_INFO argsz {req.argsz}")
        desc = self.device.irq_info(req.index)
        if desc is None:  # QEMU asks for ERR (3) and REQ (4) at every start, and takes EINVAL quietly
            raise ProtocolError(errno.EINVAL, f"IRQ index {req.index} not supported", expected=True)
        return IRQ_INFO.pack(IrqInfo(IRQ_INFO.size, desc.flags, req.index, desc.count))

    def _set_irqs(self, msg: Message) -> bytes:
        p = msg.payload
        _need(p, IRQ_SET.size, "DEVICE_SET_IRQS")
        s = IRQ_SET.unpack(p)
        if s.argsz < IRQ_SET.size:
            raise _einval(f"DEVICE_SET_IRQS argsz {s.argsz}")
        data = s.flags & IRQ_SET_DATA_MASK
        action = s.flags & IRQ_SET_ACTION_MASK_ALL
        if (
            s.flags & ~(IRQ_SET_DATA_MASK | IRQ_SET_ACTION_MASK_ALL)
            or data.bit_count() != 1
            or action.bit_count() != 1
        ):
            raise _einval(f"DEVICE_SET_IRQS flags {s.flags:#x}")
        if msg.fds and data != IRQ_SET_DATA_EVENTFD:
            raise _einval("fds without DATA_EVENTFD")
        desc = self.device.irq_info(s.index)
        if desc is None:
            raise _einval(f"IRQ index {s.index} not supported")
        if data == IRQ_SET_DATA_NONE and s.count == 0 and action == IRQ_SET_ACTION_TRIGGER:
            if s.index == IrqIndex.MSIX:  # "count 0 with DATA_NONE disables all interrupts of the index"
                self.msix.clear()
            log.debug("IRQ index %d: all vectors disabled", s.index)
            return b""
        if s.start + s.count > desc.count or s.count == 0:
            raise _einval(f"IRQ index {s.index}: vectors {s.start}+{s.count} of {desc.count}")
        if s.index != IrqIndex.MSIX or action != IRQ_SET_ACTION_TRIGGER:
            raise _einval(f"IRQ index {s.index}: action {action:#x} not supported")
        if data == IRQ_SET_DATA_EVENTFD:
            if not msg.fds:
                self.msix.unassign(s.start, s.count)
                log.debug("MSI-X vectors %d..%d: eventfds removed", s.start, s.start + s.count - 1)
                return b""
            if len(msg.fds) != s.count:
                raise _einval(f"{len(msg.fds)} fds for {s.count} vectors")
            if not all(is_eventfd(fd) for fd in msg.fds):
                raise _einval("an fd passed for MSI-X is not an eventfd")
            fds, msg.fds = msg.fds, []
            self.msix.assign(s.start, fds)
            log.debug("MSI-X vectors %d..%d: eventfds set", s.start, s.start + s.count - 1)
            return b""
        # ACTION_TRIGGER with DATA_NONE / DATA_BOOL: the client asks us to raise the vectors.
        if data == IRQ_SET_DATA_BOOL:
            _need(p, IRQ_SET.size + s.count, "DEVICE_SET_IRQS bool data")
            flags = p[IRQ_SET.size : IRQ_SET.size + s.count]
        else:
            flags = b"\1" * s.count
        for i, on in enumerate(flags):
            if on:
                self.msix.fire(s.start + i)
        return b""

    def _region_read(self, msg: Message) -> bytes:
        _need(msg.payload, REGION_ACCESS.size, "REGION_READ", exact=True)
        a = REGION_ACCESS.unpack(msg.payload)
        if a.count == 0:
            raise _einval("REGION_READ of 0 bytes")
        if a.count > MAX_DATA_XFER_SIZE:
            raise ProtocolError(errno.E2BIG, f"REGION_READ of {a.count} bytes")
        try:
            data = self.device.region_read(a.region, a.offset, a.count)
        except RegionAccessError as exc:
            raise ProtocolError(
                exc.errno, f"REGION_READ region {a.region} [{a.offset:#x}, +{a.count}]: {exc}"
            ) from exc
        return REGION_ACCESS.pack(a) + data

    def _region_write(self, msg: Message) -> bytes:
        p = msg.payload
        _need(p, REGION_ACCESS.size, "REGION_WRITE")
        a = REGION_ACCESS.unpack(p)
        data = p[REGION_ACCESS.size :]
        if a.count == 0 or len(data) != a.count:
            raise _einval(f"REGION_WRITE count {a.count} with {len(data)} data bytes")
        try:
            self.device.region_write(a.region, a.offset, data)
        except RegionAccessError as exc:
            raise ProtocolError(
                exc.errno, f"REGION_WRITE region {a.region} [{a.offset:#x}, +{a.count}]: {exc}"
            ) from exc
        return REGION_ACCESS.pack(RegionAccess(a.offset, a.region, a.count))

    def _reset(self, msg: Message) -> bytes:
        if msg.payload:
            raise _einval(f"DEVICE_RESET with {len(msg.payload)} payload bytes")
        self.device.reset()
        return b""

    # -- server-to-client DMA (RemoteDma), called from device threads ------------------------------

    def dma_read(self, addr: int, length: int) -> bytes:
        out = bytearray()
        for off in range(0, length, self.xfer_limit):
            n = min(self.xfer_limit, length - off)
            payload = encode_read_request(self.dma_rw_layout, addr + off, n)
            reply = self._request(Command.DMA_READ, payload, f"DMA_READ {addr + off:#x}+{n:#x}")
            try:
                out += decode_read_reply(self.dma_rw_layout, reply.payload, addr + off, n)
            except ValueError as exc:
                raise DMAError(f"bad DMA_READ reply: {exc}") from exc
        return bytes(out)

    def dma_write(self, addr: int, data: bytes) -> None:
        for off in range(0, len(data), self.xfer_limit):
            chunk = data[off : off + self.xfer_limit]
            payload = encode_write_request(self.dma_rw_layout, addr + off, chunk)
            self._request(Command.DMA_WRITE, payload, f"DMA_WRITE {addr + off:#x}+{len(chunk):#x}")

    def _request(self, command: Command, payload: bytes, what: str) -> Message:
        if threading.get_ident() == self.loop_thread:
            raise DMAError(f"{what}: message-based DMA on the socket-loop thread would deadlock")
        pending = _Pending(command)
        with self._pending_lock:
            if self.closed:
                raise DMAError(f"{what}: client disconnected")
            for _ in range(1 << 16):
                msg_id = self._next_id
                self._next_id = (self._next_id + 1) & 0xFFFF
                if msg_id not in self._pending:
                    break
            else:
                raise DMAError(f"{what}: no free message id")
            self._pending[msg_id] = pending
        try:
            self._send(encode_message(msg_id, command, TYPE_REQUEST, payload))
            if not pending.event.wait(self.reply_timeout):
                raise DMAError(f"{what}: no reply within {self.reply_timeout} s")
        except ConnectionClosed as exc:
            raise DMAError(f"{what}: {exc}") from exc
        finally:
            with self._pending_lock:
                if self._pending.get(msg_id) is pending:
                    del self._pending[msg_id]
        if pending.failure is not None:
            raise DMAError(f"{what}: {pending.failure}")
        reply = pending.reply
        assert reply is not None
        if reply.header.flags & FLAG_ERROR:
            code = reply.header.error
            raise DMAError(f"{what}: client answered {errno.errorcode.get(code, code)}")
        return reply

    def _complete(self, msg_id: int, reply: Message | None, failure: str | None) -> None:
        with self._pending_lock:
            pending = self._pending.pop(msg_id, None)
        if pending is None:
            log.warning("reply id %d matches no request of ours; dropped", msg_id)
            return
        if reply is not None and reply.header.command != pending.command:
            failure = f"reply is for command {reply.header.command}, not {pending.command}"
            reply = None
        pending.reply, pending.failure = reply, failure
        pending.event.set()

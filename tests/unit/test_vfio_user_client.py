"""A test-side vfio-user client (speaking like QEMU 10.2's) and a harness running the server.

Other ``test_vfio_user_*`` modules import from here; the tests in this module check the client and
the harness themselves.
"""

from __future__ import annotations

import array
import json
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from mlx5dev.pci import PciFunction, PciFunctionConfig, RegisterFileBar
from mlx5dev.vfio_user import DmaRwLayout, VfioUserServer
from mlx5dev.vfio_user.protocol import (
    DEVICE_INFO,
    DMA_ACCESS,
    DMA_MAP,
    DMA_UNMAP,
    FLAG_ERROR,
    FLAG_NO_REPLY,
    HEADER,
    HEADER_SIZE,
    IRQ_INFO,
    IRQ_SET,
    REGION_ACCESS,
    REGION_INFO,
    TYPE_REPLY,
    VERSION_HEAD,
    Command,
    DeviceInfo,
    DmaMap,
    DmaUnmap,
    Header,
    IrqInfo,
    IrqSet,
    RegionAccess,
    RegionInfo,
    VersionHead,
    encode_message,
)

#: The capabilities QEMU 10.2.2's client proposes in VFIO_USER_VERSION: ``hw/vfio-user/proxy.c: caps_json``
#: with the defaults of ``hw/vfio-user/protocol.h``; the same JSON was measured on the socket.
QEMU_CAPS = {
    "capabilities": {
        "max_msg_fds": 16,
        "max_data_xfer_size": 1048576,
        "pgsizes": 4096,
        "max_dma_maps": 65535,
        "migration": {"pgsize": 4096, "max_bitmap_size": 268435456},
        "write_multiple": True,
    }
}
TIMEOUT = 5.0


class VfioUserError(Exception):
    def __init__(self, header: Header) -> None:
        super().__init__(f"command {header.command} failed: errno {header.error}")
        self.header = header
        self.errno = header.error


class ServerClosed(Exception):
    pass


@dataclass
class Received:
    header: Header
    payload: bytes
    fds: list[int] = field(default_factory=list)


def recv_exact(sock: socket.socket, n: int, fds: list[int] | None = None) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data, anc, _flags, _ = sock.recvmsg(n - len(buf), socket.CMSG_SPACE(64 * 4))
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS and fds is not None:
                a = array.array("i")
                a.frombytes(raw[: len(raw) - len(raw) % 4])
                fds.extend(a)
        if not data:
            raise ServerClosed(f"EOF after {len(buf)} of {n} bytes")
        buf += data
    return bytes(buf)


def recv_message(sock: socket.socket) -> Received:
    fds: list[int] = []
    hdr = HEADER.unpack(recv_exact(sock, HEADER_SIZE, fds))
    assert hdr.size >= HEADER_SIZE, hdr
    payload = recv_exact(sock, hdr.size - HEADER_SIZE, fds) if hdr.size > HEADER_SIZE else b""
    return Received(hdr, payload, fds)


class VfioUserClient:
    """Blocking client. Server-to-client DMA_READ/DMA_WRITE requests that arrive while waiting for
    a reply are answered from :attr:`remote_memory` (``{base iova: bytearray}``), QEMU-style."""

    def __init__(self, sock: socket.socket, layout: DmaRwLayout = DmaRwLayout.QEMU) -> None:
        sock.settimeout(TIMEOUT)
        self.sock = sock
        self.layout = layout
        self._next_id = 0x100
        self.remote_memory: dict[int, bytearray] = {}
        self.dma_requests: list[Received] = []
        self._stash: list[Received] = []

    @classmethod
    def connect(cls, path: os.PathLike[str] | str) -> VfioUserClient:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        s.connect(os.fspath(path))
        return cls(s)

    def close(self) -> None:
        self.sock.close()

    # -- raw -------------------------------------------------------------------------------------

    def send(
        self,
        command: int,
        payload: bytes = b"",
        fds: Sequence[int] = (),
        flags: int = 0,
        msg_id: int | None = None,
    ) -> int:
        if msg_id is None:
            msg_id = self._next_id
            self._next_id = (self._next_id + 1) & 0xFFFF
        data = encode_message(msg_id, command, flags, payload)
        self.send_raw(data, fds)
        return msg_id

    def send_raw(self, data: bytes, fds: Sequence[int] = ()) -> None:
        if fds:
            socket.send_fds(self.sock, [data[:HEADER_SIZE]], list(fds))
            if len(data) > HEADER_SIZE:
                self.sock.sendall(data[HEADER_SIZE:])
        else:
            self.sock.sendall(data)

    def recv(self) -> Received:
        if self._stash:
            return self._stash.pop(0)
        return recv_message(self.sock)

    def wait_reply(self, msg_id: int) -> Received:
        """Next reply with ``msg_id``, answering server requests meanwhile."""
        while True:
            m = recv_message(self.sock)
            if m.header.flags & 0xF == TYPE_REPLY:
                assert m.header.id == msg_id, f"reply id {m.header.id}, expected {msg_id}"
                return m
            self.answer_server_request(m)

    def request(self, command: int, payload: bytes = b"", fds: Sequence[int] = ()) -> Received:
        msg_id = self.send(command, payload, fds)
        reply = self.wait_reply(msg_id)
        assert reply.header.command == command
        if reply.header.flags & FLAG_ERROR:
            assert reply.payload == b"", "error replies carry only the header"
            raise VfioUserError(reply.header)
        return reply

    def answer_server_request(self, m: Received | None = None) -> None:
        """Answer one server-to-client DMA request the way QEMU 10.2 does."""
        if m is None:
            m = recv_message(self.sock)
        self.dma_requests.append(m)
        hdr = m.header
        assert hdr.command in (Command.DMA_READ, Command.DMA_WRITE), hdr
        assert not m.fds
        if self.layout is DmaRwLayout.QEMU:
            assert hdr.size >= 32, hdr
            addr, count = DMA_ACCESS.unpack(m.payload)
            data_at = DMA_ACCESS.size
        else:
            addr, count = array.array("Q", m.payload[:16])
            data_at = 16
        buf, off = self._locate(addr, count)
        if buf is None:
            self.send_raw(encode_message(hdr.id, hdr.command, TYPE_REPLY | FLAG_ERROR, b"", 14))  # EFAULT
            return
        if hdr.command == Command.DMA_READ:
            data = bytes(buf[off : off + count])
            if self.layout is DmaRwLayout.QEMU:
                payload = DMA_ACCESS.pack((addr, count)) + data + bytes(4)  # type: ignore[arg-type]
            else:
                payload = m.payload[:16] + data
            self.send_raw(encode_message(hdr.id, hdr.command, TYPE_REPLY, payload))
        else:
            assert hdr.size >= 32 + count
            buf[off : off + count] = m.payload[data_at : data_at + count]
            self.send_raw(encode_message(hdr.id, hdr.command, TYPE_REPLY, b""))

    def _locate(self, addr: int, count: int) -> tuple[bytearray | None, int]:
        for base, buf in self.remote_memory.items():
            if base <= addr and addr + count <= base + len(buf):
                return buf, addr - base
        return None, 0

    # -- commands --------------------------------------------------------------------------------

    def version(self, caps: dict | None = None, minor: int = 0) -> tuple[VersionHead, dict]:
        text = json.dumps(QEMU_CAPS if caps is None else caps).encode() + b"\0"
        reply = self.request(Command.VERSION, VERSION_HEAD.pack(VersionHead(0, minor)) + text)
        head = VERSION_HEAD.unpack(reply.payload)
        body = reply.payload[VERSION_HEAD.size :]
        assert body.endswith(b"\0"), "VERSION reply JSON must end with a NUL"
        return head, json.loads(body[:-1])

    def dma_map(self, iova: int, size: int, fd: int | None = None, offset: int = 0, flags: int = 3) -> None:
        self.request(
            Command.DMA_MAP,
            DMA_MAP.pack(DmaMap(32, flags, offset, iova, size)),
            [fd] if fd is not None else [],
        )

    def dma_unmap(self, iova: int, size: int, flags: int = 0) -> bytes:
        return self.request(Command.DMA_UNMAP, DMA_UNMAP.pack(DmaUnmap(24, flags, iova, size))).payload

    def device_info(self) -> DeviceInfo:
        return DEVICE_INFO.unpack(
            self.request(Command.DEVICE_GET_INFO, DEVICE_INFO.pack(DeviceInfo(16, 0, 0, 0))).payload
        )

    def region_info(self, index: int) -> RegionInfo:
        req = REGION_INFO.pack(RegionInfo(32, 0, index, 0, 0, 0))
        reply = self.request(Command.DEVICE_GET_REGION_INFO, req)
        assert len(reply.payload) == REGION_INFO.size
        return REGION_INFO.unpack(reply.payload)

    def irq_info(self, index: int) -> IrqInfo:
        reply = self.request(Command.DEVICE_GET_IRQ_INFO, IRQ_INFO.pack(IrqInfo(16, 0, index, 0)))
        assert len(reply.payload) == IRQ_INFO.size
        return IRQ_INFO.unpack(reply.payload)

    def set_irqs(
        self, index: int, start: int, count: int, flags: int, fds: Sequence[int] = (), data: bytes = b""
    ) -> None:
        self.request(
            Command.DEVICE_SET_IRQS,
            IRQ_SET.pack(IrqSet(20 + len(data), flags, index, start, count)) + data,
            fds,
        )

    def region_read(self, region: int, offset: int, count: int) -> bytes:
        reply = self.request(Command.REGION_READ, REGION_ACCESS.pack(RegionAccess(offset, region, count)))
        echo = REGION_ACCESS.unpack(reply.payload)
        assert echo == RegionAccess(offset, region, count), "read replies repeat offset, region, count"
        data = reply.payload[REGION_ACCESS.size :]
        assert len(data) == count
        return data

    def region_write(self, region: int, offset: int, data: bytes, posted: bool = False) -> None:
        payload = REGION_ACCESS.pack(RegionAccess(offset, region, len(data))) + data
        if posted:
            self.send(Command.REGION_WRITE, payload, flags=FLAG_NO_REPLY)
            return
        reply = self.request(Command.REGION_WRITE, payload)
        assert reply.payload == REGION_ACCESS.pack(RegionAccess(offset, region, len(data)))

    def reset(self) -> None:
        self.request(Command.DEVICE_RESET)


# --- harness ----------------------------------------------------------------------------------------


@dataclass
class Harness:
    server: VfioUserServer
    client: VfioUserClient
    bar: RegisterFileBar
    function: PciFunction
    thread: threading.Thread


@contextmanager
def served(
    config: PciFunctionConfig | None = None,
    *,
    negotiate: bool = True,
    layout: DmaRwLayout = DmaRwLayout.QEMU,
    reply_timeout: float = 5.0,
) -> Iterator[Harness]:
    """A server on one end of a socketpair (served on a thread), a client on the other."""
    cfg = config or PciFunctionConfig()
    bar = RegisterFileBar(cfg.bar0_size)
    server = VfioUserServer(
        None, lambda mem, irq: PciFunction(cfg, bar), dma_rw_layout=layout, reply_timeout=reply_timeout
    )
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    thread = threading.Thread(target=server.serve_connection, args=(ours,), daemon=True)
    thread.start()
    client = VfioUserClient(theirs, layout)
    try:
        if negotiate:
            client.version()
        yield Harness(server, client, bar, server.device, thread)  # type: ignore[arg-type]
    finally:
        client.close()
        thread.join(TIMEOUT)
        server.close()
        assert not thread.is_alive(), "server loop did not end after the client closed"


def open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


# --- tests of the harness itself -------------------------------------------------------------------


def test_harness_handshake_and_teardown_leave_no_fds() -> None:
    before = open_fds()
    with served() as h:
        assert h.client.device_info().num_regions >= 9
    assert open_fds() <= before


def test_client_disconnect_ends_serve_connection() -> None:
    with served() as h:
        h.client.close()
        h.thread.join(TIMEOUT)
        assert not h.thread.is_alive()

"""VfioUserServer on a real UNIX socket path: clients one after another, stop, socket file handling,
and framing details (messages dribbled byte by byte, fds attached to the right message)."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from mlx5dev.interfaces import DMAError
from mlx5dev.pci import PciFunction, PciFunctionConfig, RegisterFileBar
from mlx5dev.vfio_user import VfioUserServer
from mlx5dev.vfio_user.protocol import (
    DEVICE_INFO,
    DMA_MAP,
    IRQ_SET,
    IRQ_SET_ACTION_TRIGGER,
    IRQ_SET_DATA_EVENTFD,
    Command,
    DeviceInfo,
    DmaMap,
    IrqIndex,
    IrqSet,
    RegionIndex,
    encode_message,
)

from .test_vfio_user_client import TIMEOUT, ServerClosed, VfioUserClient, open_fds


class Made:
    def __init__(self) -> None:
        self.calls: list[tuple[object, object]] = []
        self.bar = RegisterFileBar(PciFunctionConfig().bar0_size)

    def __call__(self, memory: object, interrupts: object) -> PciFunction:
        self.calls.append((memory, interrupts))
        return PciFunction(PciFunctionConfig(), self.bar)


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "vfu.sock"


def test_serve_one_over_unix_path(sock_path: Path) -> None:
    made = Made()
    with VfioUserServer(sock_path, made) as server:
        assert made.calls == [(server.memory, server.interrupts)]
        t = server.serve_in_thread(forever=False)
        c = VfioUserClient.connect(sock_path)
        c.version()
        assert c.region_read(RegionIndex.CONFIG, 0, 2) == b"\xb3\x15"
        c.close()
        t.join(TIMEOUT)
        assert not t.is_alive()
        assert server.clients_served == 1
    assert not sock_path.exists()


def test_serve_forever_clients_in_turn_device_state_kept(sock_path: Path) -> None:
    made = Made()
    fd = os.memfd_create("ram")
    os.ftruncate(fd, 1 << 20)
    try:
        with VfioUserServer(sock_path, made) as server:
            t = server.serve_in_thread()
            c1 = VfioUserClient.connect(sock_path)
            c1.version()
            c1.dma_map(0, 1 << 20, fd)
            c1.region_write(RegionIndex.BAR0, 0x40, b"keep")
            c1.close()
            c2 = VfioUserClient.connect(sock_path)
            c2.version()  # a fresh session: VERSION again
            assert c2.region_read(RegionIndex.BAR0, 0x40, 4) == b"keep"
            with pytest.raises(DMAError):
                server.memory.read(0, 4)  # the first client's windows are gone
            c2.close()
            server.stop()
            t.join(TIMEOUT)
            assert not t.is_alive()
            assert server.clients_served == 2
            assert len(made.calls) == 1
    finally:
        os.close(fd)


def test_second_concurrent_client_is_refused(sock_path: Path) -> None:
    with VfioUserServer(sock_path, Made()) as server:
        server.serve_in_thread()
        c1 = VfioUserClient.connect(sock_path)
        c1.version()
        c2 = VfioUserClient.connect(sock_path)
        # the server closes a second client as soon as it accepts it: the close shows at the send
        # (EPIPE) when it came first, else at the reply's read
        with pytest.raises((ServerClosed, ConnectionResetError, BrokenPipeError)):
            c2.send(Command.VERSION, b"\0\0\0\0")
            c2.recv()
        c2.close()
        assert c1.device_info().num_regions == 9
        c1.close()


def test_stop_disconnects_current_client(sock_path: Path) -> None:
    with VfioUserServer(sock_path, Made()) as server:
        t = server.serve_in_thread()
        c = VfioUserClient.connect(sock_path)
        c.version()
        server.stop()
        t.join(TIMEOUT)
        assert not t.is_alive()
        with pytest.raises((ServerClosed, ConnectionResetError)):
            c.recv()
        c.close()


def test_stop_while_waiting_for_a_client(sock_path: Path) -> None:
    with VfioUserServer(sock_path, Made()) as server:
        result: list[bool] = []
        t = threading.Thread(target=lambda: result.append(server.serve_one()))
        t.start()
        time.sleep(0.05)
        server.stop()
        t.join(TIMEOUT)
        assert result == [False]


def test_socket_file_handling(sock_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock_path))
    stale.close()  # a socket file nobody listens on
    with VfioUserServer(sock_path, Made()), pytest.raises(FileExistsError):
        VfioUserServer(sock_path, Made())  # live
    regular = sock_path.with_name("file")
    regular.write_text("x")
    with pytest.raises(FileExistsError):
        VfioUserServer(regular, Made())


def test_close_leaves_no_fds_and_no_threads(sock_path: Path) -> None:
    before_fds = open_fds()
    before_threads = threading.active_count()
    server = VfioUserServer(sock_path, Made())
    t = server.serve_in_thread()
    c = VfioUserClient.connect(sock_path)
    c.version()
    c.close()
    server.close()
    t.join(TIMEOUT)
    assert open_fds() <= before_fds
    assert threading.active_count() == before_threads


def test_messages_dribbled_byte_by_byte(sock_path: Path) -> None:
    with VfioUserServer(sock_path, Made()) as server:
        server.serve_in_thread()
        c = VfioUserClient.connect(sock_path)
        c.version()
        data = encode_message(7, Command.DEVICE_GET_INFO, 0, DEVICE_INFO.pack(DeviceInfo(16, 0, 0, 0)))
        for i in range(len(data)):
            c.sock.sendall(data[i : i + 1])
            time.sleep(0.001)
        reply = c.wait_reply(7)
        assert DEVICE_INFO.unpack(reply.payload).num_regions == 9
        c.close()


def test_fds_belong_to_the_message_they_came_with(sock_path: Path) -> None:
    """A message without fds followed at once by one with fds: the fds go to the second."""
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    mfd = os.memfd_create("ram")
    os.ftruncate(mfd, 1 << 16)
    try:
        with VfioUserServer(sock_path, Made()) as server:
            server.serve_in_thread()
            c = VfioUserClient.connect(sock_path)
            c.version()
            first = encode_message(1, Command.DMA_MAP, 0, DMA_MAP.pack(DmaMap(32, 3, 0, 0x9000, 0x1000)))
            second = encode_message(
                2,
                Command.DEVICE_SET_IRQS,
                0,
                IRQ_SET.pack(IrqSet(20, IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER, IrqIndex.MSIX, 0, 1)),
            )
            third = encode_message(3, Command.DMA_MAP, 0, DMA_MAP.pack(DmaMap(32, 3, 0, 0x10000, 0x10000)))
            c.sock.sendall(first)
            socket.send_fds(c.sock, [second], [efd])
            socket.send_fds(c.sock, [third], [mfd])
            for msg_id in (1, 2, 3):
                assert not c.wait_reply(msg_id).header.flags & 0x20
            windows = server.dma_table.windows()
            assert [(w.iova, w.mm is None) for w in windows] == [(0x9000, True), (0x10000, False)]
            server.interrupts.fire(0)
            assert os.eventfd_read(efd) == 1
            c.close()
    finally:
        os.close(efd)
        os.close(mfd)

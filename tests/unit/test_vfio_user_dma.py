"""DMA_MAP / DMA_UNMAP and the GuestMemory built on them (memfd-backed and message-based windows)."""

from __future__ import annotations

import errno
import os
import struct
import threading
from collections.abc import Callable

import pytest

from mlx5dev.interfaces import DMAError
from mlx5dev.vfio_user import DmaRwLayout
from mlx5dev.vfio_user.protocol import DMA_MAP, DMA_UNMAP, Command, DmaMap, DmaUnmap, RegionIndex

from .test_vfio_user_client import TIMEOUT, VfioUserError, open_fds, served

MIB = 1 << 20


def memfd(size: int) -> int:
    fd = os.memfd_create("guest-ram", os.MFD_CLOEXEC)
    os.ftruncate(fd, size)
    return fd


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, dict[str, object]]:
    out: dict[str, object] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except Exception as exc:
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_memfd_round_trip() -> None:
    fd = memfd(4 * MIB)
    try:
        with served() as h:
            h.client.dma_map(0x1_0000_0000, 2 * MIB, fd, offset=MIB)
            mem = h.server.memory
            mem.write(0x1_0000_0000 + 0x10, b"hello guest")
            assert os.pread(fd, 11, MIB + 0x10) == b"hello guest"
            os.pwrite(fd, b"from the guest", MIB + 2 * MIB - 14)
            assert mem.read(0x1_0000_0000 + 2 * MIB - 14, 14) == b"from the guest"
            assert mem.read(0x1_0000_0000, 0) == b""
    finally:
        os.close(fd)


def test_unaligned_fd_offset() -> None:
    fd = memfd(MIB)
    try:
        with served() as h:
            h.client.dma_map(0x2000, 0x1000, fd, offset=0x3010)
            os.pwrite(fd, b"xyz", 0x3010)
            assert h.server.memory.read(0x2000, 3) == b"xyz"
    finally:
        os.close(fd)


def test_map_larger_than_fd_is_refused() -> None:
    fd = memfd(MIB)
    try:
        with served() as h:
            with pytest.raises(VfioUserError) as e:
                h.client.dma_map(0, 2 * MIB, fd)
            assert e.value.errno == errno.EINVAL
            with pytest.raises(VfioUserError):
                h.client.dma_map(0, MIB, fd, offset=4096)
            with pytest.raises(DMAError):
                h.server.memory.read(0, 4)
            h.client.dma_map(0, MIB, fd)  # the exact size is fine
            assert h.server.memory.read(MIB - 4, 4) == b"\0" * 4
    finally:
        os.close(fd)


def test_unmapped_access_raises() -> None:
    fd = memfd(MIB)
    try:
        with served() as h:
            h.client.dma_map(0x10000, 0x10000, fd)
            mem = h.server.memory
            for addr, n in ((0, 4), (0xFFFF, 2), (0x1FFFF, 2), (0x20000, 1)):
                with pytest.raises(DMAError):
                    mem.read(addr, n)
                with pytest.raises(DMAError):
                    mem.write(addr, b"\0" * n)
            with pytest.raises(DMAError):
                mem.read(-1, 1)
            with pytest.raises(DMAError):
                mem.read((1 << 64) - 1, 2)
    finally:
        os.close(fd)


def test_access_spanning_adjacent_windows() -> None:
    fd = memfd(MIB)
    try:
        with served() as h:
            h.client.dma_map(0x0, 0x1000, fd, offset=0x0)
            h.client.dma_map(0x1000, 0x1000, fd, offset=0x5000)
            h.server.memory.write(0xFFE, b"abcd")
            assert os.pread(fd, 2, 0xFFE) == b"ab" and os.pread(fd, 2, 0x5000) == b"cd"
            assert h.server.memory.read(0xFFE, 4) == b"abcd"
    finally:
        os.close(fd)


def test_read_only_window() -> None:
    fd = memfd(MIB)
    try:
        with served() as h:
            os.pwrite(fd, b"rom!", 0)
            h.client.dma_map(0xC0000, 0x10000, fd, flags=1)
            assert h.server.memory.read(0xC0000, 4) == b"rom!"
            with pytest.raises(DMAError):
                h.server.memory.write(0xC0000, b"nope")
            assert os.pread(fd, 4, 0) == b"rom!"
    finally:
        os.close(fd)


def test_overlapping_map_is_eexist() -> None:
    fd = memfd(MIB)
    try:
        with served() as h:
            h.client.dma_map(0x10000, 0x10000, fd)
            for iova, size in ((0x10000, 0x10000), (0x8000, 0x9000), (0x1F000, 0x2000), (0x0, 0x100000)):
                with pytest.raises(VfioUserError) as e:
                    h.client.dma_map(iova, size, fd)
                assert e.value.errno == errno.EEXIST
            h.client.dma_map(0x20000, 0x1000, fd)  # adjacent is fine
    finally:
        os.close(fd)


def test_unmap_drops_window_and_reply_echoes_request() -> None:
    fd = memfd(MIB)
    try:
        with served() as h:
            h.client.dma_map(0x10000, 0x10000, fd)
            h.server.memory.read(0x10000, 4)
            echo = h.client.dma_unmap(0x10000, 0x10000)
            assert echo == DMA_UNMAP.pack(DmaUnmap(24, 0, 0x10000, 0x10000))
            with pytest.raises(DMAError):
                h.server.memory.read(0x10000, 4)
            assert len(h.server.dma_table) == 0
            h.client.dma_unmap(0x10000, 0x10000)  # nothing there (e.g. a refused map): not an error
    finally:
        os.close(fd)


def test_unmap_splitting_a_window_is_refused() -> None:
    fd = memfd(MIB)
    try:
        with served() as h:
            h.client.dma_map(0x10000, 0x10000, fd)
            with pytest.raises(VfioUserError) as e:
                h.client.dma_unmap(0x10000, 0x1000)
            assert e.value.errno == errno.EINVAL
            assert h.server.memory.read(0x18000, 1) == b"\0"
            h.client.dma_map(0x20000, 0x1000)
            h.client.dma_unmap(0x0, 0x100000)  # a range covering both windows drops both
            assert len(h.server.dma_table) == 0
    finally:
        os.close(fd)


def test_unmap_all_flag() -> None:
    fd = memfd(MIB)
    try:
        with served() as h:
            h.client.dma_map(0x0, 0x1000, fd)
            h.client.dma_map(0x100000, 0x1000, fd)
            h.client.dma_map(0xC0000, 0x1000)  # fd-less
            h.client.dma_unmap(0, 0, flags=2)
            assert len(h.server.dma_table) == 0
            with pytest.raises(DMAError):
                h.server.memory.read(0, 1)
    finally:
        os.close(fd)


def test_unmap_dirty_bitmap_and_unknown_flags_refused() -> None:
    with served() as h:
        for flags, err in ((1, errno.ENOTSUP), (4, errno.EINVAL)):
            with pytest.raises(VfioUserError) as e:
                h.client.dma_unmap(0, 0x1000, flags=flags)
            assert e.value.errno == err


@pytest.mark.parametrize(
    ("iova", "size", "flags"),
    [(0, 0, 3), ((1 << 64) - 0x1000, 0x2000, 3), (0, 0x1000, 0x8), (0, 0x1000, 0xFFFFFFFF)],
)
def test_bad_maps_refused(iova: int, size: int, flags: int) -> None:
    with served() as h:
        with pytest.raises(VfioUserError) as e:
            h.client.request(Command.DMA_MAP, DMA_MAP.pack(DmaMap(32, flags, 0, iova, size)))
        assert e.value.errno == errno.EINVAL


def test_map_fd_problems_refused_without_leaking_fds() -> None:
    a, b = memfd(MIB), memfd(MIB)
    r, w = os.pipe()
    try:
        before = open_fds()
        with served() as h:
            with pytest.raises(VfioUserError):
                h.client.request(Command.DMA_MAP, DMA_MAP.pack(DmaMap(32, 3, 0, 0, 0x1000)), [a, b])
            with pytest.raises(VfioUserError) as e:
                h.client.dma_map(0, 0x1000, r)
            assert e.value.errno == errno.EINVAL
            with pytest.raises(VfioUserError):  # fds where none are expected
                h.client.request(Command.DEVICE_GET_INFO, b"\x10" + b"\0" * 15, [a])
            assert len(h.server.dma_table) == 0
        assert open_fds() <= before
    finally:
        for fd in (a, b, r, w):
            os.close(fd)


def test_disconnect_unmaps_everything_and_closes_fds() -> None:
    fd = memfd(MIB)
    try:
        before = open_fds()
        with served() as h:
            h.client.dma_map(0, MIB, fd)
            h.client.dma_map(MIB, 0x1000)
            mem = h.server.memory
            table = h.server.dma_table
        assert len(table) == 0
        with pytest.raises(DMAError):
            mem.read(0, 4)
        assert open_fds() <= before
    finally:
        os.close(fd)


# --- message-based (fd-less) windows -----------------------------------------------------------------


def test_fdless_read_and_write_go_through_the_client_qemu_layout() -> None:
    with served() as h:
        rom = bytearray(b"R" * 0x100 + bytes(range(256)) * 15)
        h.client.remote_memory[0xF0000] = rom
        h.client.dma_map(0xF0000, len(rom), flags=3)
        mem = h.server.memory

        t, out = in_thread(lambda: mem.read(0xF0100, 0x20))
        h.client.answer_server_request()
        t.join(TIMEOUT)
        assert out == {"value": bytes(range(0x20))}
        req = h.client.dma_requests[-1]
        assert req.header.command == Command.DMA_READ and req.header.size == 32
        assert struct.unpack_from("<QI", req.payload) == (0xF0100, 0x20)

        t, out = in_thread(lambda: mem.write(0xF0004, b"WXYZ"))
        h.client.answer_server_request()
        t.join(TIMEOUT)
        assert out == {"value": None}
        req = h.client.dma_requests[-1]
        assert req.header.command == Command.DMA_WRITE and req.header.size == 32 + 4
        assert req.payload[12:16] == b"WXYZ"  # QEMU's VFIOUserDMARW: data right after a u32 count
        assert rom[:8] == b"RRRRWXYZ"


def test_fdless_spec_layout() -> None:
    with served(layout=DmaRwLayout.SPEC) as h:
        h.client.remote_memory[0x1000] = bytearray(b"0123456789")
        h.client.dma_map(0x1000, 10, flags=3)
        t, out = in_thread(lambda: h.server.memory.read(0x1002, 4))
        h.client.answer_server_request()
        t.join(TIMEOUT)
        assert out == {"value": b"2345"}
        t, out = in_thread(lambda: h.server.memory.write(0x1000, b"ab"))
        h.client.answer_server_request()
        t.join(TIMEOUT)
        assert h.client.remote_memory[0x1000][:2] == b"ab"
        assert h.client.dma_requests[-1].payload[16:18] == b"ab"


def test_fdless_transfers_are_chunked_by_negotiated_size() -> None:
    with served(negotiate=False) as h:
        h.client.version(caps={"capabilities": {"max_data_xfer_size": 4096}})
        h.client.remote_memory[0] = bytearray(os.urandom(10000))
        h.client.dma_map(0, 10000)
        t, out = in_thread(lambda: h.server.memory.read(0, 10000))
        for _ in range(3):
            h.client.answer_server_request()
        t.join(TIMEOUT)
        assert out == {"value": bytes(h.client.remote_memory[0])}
        assert [struct.unpack_from("<QI", r.payload)[1] for r in h.client.dma_requests] == [4096, 4096, 1808]


def test_fdless_transfers_default_to_64k_chunks() -> None:
    """QEMU 10.2 truncates DMA_READ replies larger than its socket buffer; we never ask for > 64 KiB."""
    with served() as h:  # the client announced max_data_xfer_size = 1 MiB
        h.client.remote_memory[0] = bytearray(os.urandom(200 << 10))
        h.client.dma_map(0, 200 << 10)
        t, out = in_thread(lambda: h.server.memory.read(0, 200 << 10))
        for _ in range(4):
            h.client.answer_server_request()
        t.join(TIMEOUT)
        assert out == {"value": bytes(h.client.remote_memory[0])}
        counts = [struct.unpack_from("<QI", r.payload)[1] for r in h.client.dma_requests]
        assert counts == [64 << 10] * 3 + [8 << 10]


def test_fdless_error_reply_raises_dmaerror() -> None:
    with served() as h:
        h.client.dma_map(0x5000, 0x1000)  # the client has no backing for it: answers EFAULT
        t, out = in_thread(lambda: h.server.memory.read(0x5000, 4))
        h.client.answer_server_request()
        t.join(TIMEOUT)
        assert isinstance(out["error"], DMAError)
        assert h.client.device_info().num_regions == 9  # still in sync


def test_fdless_timeout_raises_dmaerror() -> None:
    with served(reply_timeout=0.3) as h:
        h.client.dma_map(0x5000, 0x1000)
        t, out = in_thread(lambda: h.server.memory.read(0x5000, 4))
        t.join(TIMEOUT)
        assert isinstance(out["error"], DMAError) and "no reply" in str(out["error"])
        h.client.answer_server_request()  # the late request is still on the wire; its reply is dropped
        assert h.client.device_info().num_irqs == 5


def test_fdless_disconnect_fails_waiters_promptly() -> None:
    with served(reply_timeout=30) as h:
        h.client.dma_map(0x5000, 0x1000)
        t, out = in_thread(lambda: h.server.memory.read(0x5000, 4))
        h.client.recv()  # the DMA_READ arrives; hang up instead of answering
        h.client.close()
        t.join(TIMEOUT)
        assert not t.is_alive()
        assert isinstance(out["error"], DMAError)


def test_fdless_on_socket_loop_thread_raises_instead_of_deadlocking() -> None:
    with served() as h:
        h.client.dma_map(0x5000, 0x1000)
        seen: list[Exception] = []

        def read_from_loop(offset: int, size: int) -> bytes:
            try:
                h.server.memory.read(0x5000, 4)
            except DMAError as exc:
                seen.append(exc)
            return b"\0" * size

        h.bar.mmio_read = read_from_loop  # type: ignore[method-assign]
        assert h.client.region_read(RegionIndex.BAR0, 0, 4) == b"\0" * 4
        assert len(seen) == 1 and "deadlock" in str(seen[0])


def test_concurrent_access_and_unmap_never_touch_a_dead_mapping() -> None:
    fd = memfd(MIB)
    try:
        with served() as h:
            stop = threading.Event()
            errors: list[BaseException] = []

            def hammer() -> None:
                while not stop.is_set():
                    try:
                        h.server.memory.write(0x100, b"x" * 512)
                        h.server.memory.read(0x0, 4096)
                    except DMAError:
                        pass
                    except BaseException as exc:  # anything else is a bug
                        errors.append(exc)
                        return

            workers = [threading.Thread(target=hammer) for _ in range(2)]
            for w in workers:
                w.start()
            for _ in range(100):
                h.client.dma_map(0, MIB, fd)
                h.client.dma_unmap(0, MIB)
            stop.set()
            for w in workers:
                w.join(TIMEOUT)
            assert errors == []
    finally:
        os.close(fd)

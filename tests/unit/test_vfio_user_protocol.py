"""vfio-user commands against the server with a plain-memory BAR0: handshake, info, region I/O, reset."""

from __future__ import annotations

import errno
import json
import struct

import pytest

from mlx5dev.vfio_user.protocol import (
    DEVICE_FLAG_PCI,
    DEVICE_FLAG_RESET,
    FLAG_NO_REPLY,
    IRQ_INFO_EVENTFD,
    IRQ_INFO_NORESIZE,
    REGION_ACCESS,
    REGION_FLAG_MMAP,
    REGION_FLAG_READ,
    REGION_FLAG_WRITE,
    TYPE_REPLY,
    VERSION_HEAD,
    Command,
    IrqIndex,
    RegionAccess,
    RegionIndex,
    VersionHead,
)

from .test_vfio_user_client import VfioUserError, served

MIB = 1 << 20


# --- VERSION ----------------------------------------------------------------------------------------


def test_version_reply_is_major0_json_nul_terminated_without_write_multiple() -> None:
    with served(negotiate=False) as h:
        head, caps = h.client.version()
        assert head == VersionHead(0, 0)
        c = caps["capabilities"]
        assert "write_multiple" not in c
        assert "migration" not in c
        assert 0 < c["max_msg_fds"] <= 16
        assert c["max_data_xfer_size"] == 1 << 20
        assert c["pgsizes"] == 4096
        assert c["max_dma_maps"] <= 65535


def test_version_minor_is_not_above_clients() -> None:
    with served(negotiate=False) as h:
        head, _ = h.client.version(minor=7)
        assert head.major == 0 and head.minor <= 7


def test_version_caps_subset_of_proposed() -> None:
    with served(negotiate=False) as h:
        _, caps = h.client.version(caps={"capabilities": {"max_data_xfer_size": 4096}})
        assert caps == {"capabilities": {"max_data_xfer_size": 4096}}


def test_version_without_json_is_accepted() -> None:
    with served(negotiate=False) as h:
        reply = h.client.request(Command.VERSION, VERSION_HEAD.pack(VersionHead(0, 0)))
        assert json.loads(reply.payload[4:-1]) == {"capabilities": {}}
        assert h.client.device_info().num_irqs >= 5


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\0\0",
        VERSION_HEAD.pack(VersionHead(1, 0)),
        VERSION_HEAD.pack(VersionHead(0, 0)) + b"{not json\0",
        VERSION_HEAD.pack(VersionHead(0, 0)) + b"[1, 2]\0",
        VERSION_HEAD.pack(VersionHead(0, 0)) + b'{"capabilities": 3}\0',
        VERSION_HEAD.pack(VersionHead(0, 0)) + b'{"capabilities": {"max_data_xfer_size": "big"}}\0',
        VERSION_HEAD.pack(VersionHead(0, 0)) + b'{"capabilities": {"max_data_xfer_size": 0}}\0',
        VERSION_HEAD.pack(VersionHead(0, 0)) + b'{"capabilities": {"pgsizes": 2048}}\0',
        VERSION_HEAD.pack(VersionHead(0, 0)) + b"\xff\xfe\0",
        VERSION_HEAD.pack(VersionHead(0, 0)) + b"[" * 100000 + b"\0",
    ],
)
def test_bad_version_gets_error_and_a_good_one_still_works(payload: bytes) -> None:
    with served(negotiate=False) as h:
        with pytest.raises(VfioUserError):
            h.client.request(Command.VERSION, payload)
        head, _ = h.client.version()
        assert head.major == 0


def test_requests_before_version_are_refused() -> None:
    with served(negotiate=False) as h:
        with pytest.raises(VfioUserError) as e:
            h.client.device_info()
        assert e.value.errno == errno.EINVAL
        h.client.version()
        h.client.device_info()


def test_second_version_is_refused() -> None:
    with served() as h, pytest.raises(VfioUserError):
        h.client.version()


# --- info -----------------------------------------------------------------------------------------


def test_device_info() -> None:
    with served() as h:
        info = h.client.device_info()
        assert info.argsz == 16
        assert info.flags & DEVICE_FLAG_PCI and info.flags & DEVICE_FLAG_RESET
        assert info.num_regions >= 9
        assert info.num_irqs >= 5


def test_region_info() -> None:
    with served() as h:
        cfg = h.client.region_info(RegionIndex.CONFIG)
        assert (cfg.argsz, cfg.index, cfg.size) == (32, 7, 4096)
        assert cfg.flags == REGION_FLAG_READ | REGION_FLAG_WRITE
        bar0 = h.client.region_info(RegionIndex.BAR0)
        assert bar0.size == 32 * MIB and bar0.flags == REGION_FLAG_READ | REGION_FLAG_WRITE
        for index in range(h.client.device_info().num_regions):
            r = h.client.region_info(index)
            assert not r.flags & REGION_FLAG_MMAP, "a mappable region would turn off posted writes"
            if index not in (RegionIndex.BAR0, RegionIndex.CONFIG):
                assert r.size == 0
        with pytest.raises(VfioUserError) as e:
            h.client.region_info(9)
        assert e.value.errno == errno.EINVAL


def test_irq_info() -> None:
    with served() as h:
        msix = h.client.irq_info(IrqIndex.MSIX)
        assert msix.count == 16 and msix.flags & IRQ_INFO_EVENTFD
        assert not msix.flags & IRQ_INFO_NORESIZE
        assert h.client.irq_info(IrqIndex.INTX).count == 0
        assert h.client.irq_info(IrqIndex.MSI).count == 0
        for index in (IrqIndex.ERR, IrqIndex.REQ, 5, 1000):
            with pytest.raises(VfioUserError) as e:
                h.client.irq_info(index)
            assert e.value.errno == errno.EINVAL


# --- region I/O ---------------------------------------------------------------------------------------


def test_config_read_vendor_device() -> None:
    with served() as h:
        assert struct.unpack("<HH", h.client.region_read(RegionIndex.CONFIG, 0, 4)) == (0x15B3, 0x1017)
        assert len(h.client.region_read(RegionIndex.CONFIG, 0, 4096)) == 4096


def test_read_reply_repeats_offset_region_count() -> None:
    with served() as h:
        h.bar.poke(0x10, b"\x11\x22\x33\x44\x55\x66\x77\x88")
        msg_id = h.client.send(Command.REGION_READ, REGION_ACCESS.pack(RegionAccess(0x10, 0, 8)))
        reply = h.client.wait_reply(msg_id)
        assert reply.header.flags == TYPE_REPLY and reply.header.size == 16 + 16 + 8
        assert (
            reply.payload
            == REGION_ACCESS.pack(RegionAccess(0x10, 0, 8)) + b"\x11\x22\x33\x44\x55\x66\x77\x88"
        )


def test_bar_write_then_read_raw_bytes() -> None:
    with served() as h:
        h.client.region_write(
            RegionIndex.BAR0, 0x1000, b"\x00\x00\x00\x2a"
        )  # big-endian 42 as the guest wrote it
        assert h.bar.writes == [(0x1000, b"\x00\x00\x00\x2a")]
        assert h.client.region_read(RegionIndex.BAR0, 0x1000, 4) == b"\x00\x00\x00\x2a"


def test_posted_write_gets_no_reply_and_reaches_device() -> None:
    with served() as h:
        h.client.region_write(RegionIndex.BAR0, 0x800, b"\xaa\xbb\xcc\xdd", posted=True)
        h.client.region_write(RegionIndex.BAR0, 0x808, b"\x01", posted=True)
        # The next reply on the stream must be the one for this read: nothing answered the posted writes.
        assert h.client.region_read(RegionIndex.BAR0, 0x800, 4) == b"\xaa\xbb\xcc\xdd"
        assert h.bar.writes == [(0x800, b"\xaa\xbb\xcc\xdd"), (0x808, b"\x01")]


def test_bad_posted_write_gets_no_reply_either() -> None:
    with served() as h:
        payload = REGION_ACCESS.pack(RegionAccess(64 * MIB, 0, 4)) + b"abcd"  # beyond BAR0
        h.client.send(Command.REGION_WRITE, payload, flags=FLAG_NO_REPLY)
        h.client.send(Command.REGION_WRITE, b"short", flags=FLAG_NO_REPLY)
        h.client.send(
            Command.REGION_WRITE, REGION_ACCESS.pack(RegionAccess(0, 3, 4)) + b"abcd", flags=FLAG_NO_REPLY
        )
        assert h.client.region_read(RegionIndex.CONFIG, 0, 2) == b"\xb3\x15"
        assert h.bar.writes == []


@pytest.mark.parametrize(
    ("region", "offset", "count", "err"),
    [
        (RegionIndex.BAR0, 32 * MIB - 2, 4, errno.EINVAL),
        (RegionIndex.BAR0, 1 << 63, 4, errno.EINVAL),
        (RegionIndex.CONFIG, 4094, 4, errno.EINVAL),
        (RegionIndex.ROM, 0, 4, errno.EINVAL),
        (RegionIndex.BAR2, 0, 4, errno.EINVAL),
        (42, 0, 4, errno.EINVAL),
        (RegionIndex.BAR0, 0, 0, errno.EINVAL),
        (RegionIndex.BAR0, 0, (1 << 20) + 1, errno.E2BIG),
    ],
)
def test_bad_region_reads_get_errors(region: int, offset: int, count: int, err: int) -> None:
    with served() as h:
        with pytest.raises(VfioUserError) as e:
            h.client.region_read(region, offset, count)
        assert e.value.errno == err
        assert h.client.region_read(RegionIndex.CONFIG, 0, 2) == b"\xb3\x15"


def test_write_count_must_match_data() -> None:
    with served() as h:
        with pytest.raises(VfioUserError):
            h.client.request(Command.REGION_WRITE, REGION_ACCESS.pack(RegionAccess(0, 0, 8)) + b"abcd")
        with pytest.raises(VfioUserError):
            h.client.request(Command.REGION_READ, REGION_ACCESS.pack(RegionAccess(0, 0, 4)) + b"junk")
        assert h.bar.writes == []


def test_max_size_region_write() -> None:
    with served() as h:
        data = bytes(range(256)) * 4096  # 1 MiB, the negotiated maximum
        h.client.region_write(RegionIndex.BAR0, 0, data)
        assert h.client.region_read(RegionIndex.BAR0, 0, len(data)) == data


def test_device_raising_gets_eio_and_server_survives() -> None:
    with served() as h:

        def boom(offset: int, size: int) -> bytes:
            raise RuntimeError("model bug")

        h.bar.mmio_read = boom  # type: ignore[method-assign]
        with pytest.raises(VfioUserError) as e:
            h.client.region_read(RegionIndex.BAR0, 0, 4)
        assert e.value.errno == errno.EIO
        assert h.client.region_read(RegionIndex.CONFIG, 0, 2) == b"\xb3\x15"


# --- reset ----------------------------------------------------------------------------------------------


def test_reset_reaches_device_and_restores_config() -> None:
    with served() as h:
        h.client.region_write(RegionIndex.CONFIG, 4, b"\x06\x00")  # memory + bus master
        assert h.client.region_read(RegionIndex.CONFIG, 4, 2) == b"\x06\x00"
        h.client.region_write(RegionIndex.BAR0, 0, b"\xff" * 4)
        h.client.reset()
        assert h.bar.resets == 1
        assert h.client.region_read(RegionIndex.CONFIG, 4, 2) == b"\x00\x00"
        assert h.client.region_read(RegionIndex.BAR0, 0, 4) == b"\0" * 4


def test_reset_with_payload_is_refused() -> None:
    with served() as h:
        with pytest.raises(VfioUserError):
            h.client.request(Command.DEVICE_RESET, b"x")
        assert h.bar.resets == 0


@pytest.mark.parametrize(
    ("command", "err"),
    [
        (Command.DEVICE_GET_REGION_IO_FDS, errno.ENOTSUP),
        (Command.DIRTY_PAGES, errno.ENOTSUP),
        (Command.REGION_WRITE_MULTI, errno.ENOTSUP),
        (Command.DEVICE_FEATURE, errno.ENOTSUP),
        (Command.DMA_READ, errno.EINVAL),
        (Command.DMA_WRITE, errno.EINVAL),
        (0, errno.ENOSYS),
        (99, errno.ENOSYS),
        (0xFFFF, errno.ENOSYS),
    ],
)
def test_unsupported_commands(command: int, err: int) -> None:
    with served() as h:
        with pytest.raises(VfioUserError) as e:
            h.client.request(command, b"\0" * 16)
        assert e.value.errno == err
        h.client.device_info()

"""PciFunction routing: config space, BAR0 to the BarDevice, MSI-X table/PBA, resets."""

from __future__ import annotations

import errno

import pytest

from mlx5dev.pci import PciFunction, PciFunctionConfig, RegisterFileBar
from mlx5dev.vfio_user import RegionAccessError
from mlx5dev.vfio_user.protocol import (
    IRQ_INFO_EVENTFD,
    REGION_FLAG_READ,
    REGION_FLAG_WRITE,
    IrqIndex,
    RegionIndex,
)

MIB = 1 << 20
BAR0, CONFIG = RegionIndex.BAR0, RegionIndex.CONFIG
TABLE, PBA = 16 * MIB, 16 * MIB + 0x1000


def make(**kw: object) -> tuple[PciFunction, RegisterFileBar]:
    cfg = PciFunctionConfig(**kw)  # type: ignore[arg-type]
    bar = RegisterFileBar(cfg.bar0_size)
    return PciFunction(cfg, bar), bar


def test_regions_and_irqs() -> None:
    fn, _ = make()
    assert fn.num_regions == 9 and fn.num_irqs == 5
    assert fn.region_info(BAR0) is not None and fn.region_info(BAR0).size == 32 * MIB  # type: ignore[union-attr]
    assert fn.region_info(CONFIG).size == 4096  # type: ignore[union-attr]
    assert fn.region_info(CONFIG).flags == REGION_FLAG_READ | REGION_FLAG_WRITE  # type: ignore[union-attr]
    for index in (1, 2, 3, 4, 5, 6, 8):
        assert fn.region_info(index).size == 0  # type: ignore[union-attr]
    assert fn.region_info(9) is None and fn.region_info(-1) is None
    msix = fn.irq_info(IrqIndex.MSIX)
    assert msix is not None and msix.count == 16 and msix.flags == IRQ_INFO_EVENTFD
    assert fn.irq_info(IrqIndex.ERR) is None and fn.irq_info(IrqIndex.REQ) is None


def test_bar0_routes_raw_bytes_to_device() -> None:
    fn, bar = make()
    fn.region_write(BAR0, 0x20, b"\x12\x34\x56\x78")
    assert bar.writes == [(0x20, b"\x12\x34\x56\x78")]
    assert fn.region_read(BAR0, 0x20, 4) == b"\x12\x34\x56\x78"
    fn.region_write(BAR0, 32 * MIB - 8, b"\xee" * 8)  # last qword of the BAR
    assert fn.region_read(BAR0, 32 * MIB - 8, 8) == b"\xee" * 8


@pytest.mark.parametrize(("offset", "count"), [(32 * MIB, 1), (32 * MIB - 4, 8), (-4, 4), (0, 0)])
def test_bar0_out_of_range(offset: int, count: int) -> None:
    fn, bar = make()
    with pytest.raises(RegionAccessError) as e:
        fn.region_read(BAR0, offset, count)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(RegionAccessError):
        fn.region_write(BAR0, offset, b"\0" * count)
    assert bar.writes == [] and bar.reads == 0


def test_other_regions_refused() -> None:
    fn, _ = make()
    for index in (1, 2, 6, 8, 9, 1000):
        with pytest.raises(RegionAccessError):
            fn.region_read(index, 0, 4)
        with pytest.raises(RegionAccessError):
            fn.region_write(index, 0, b"\0\0\0\0")


def test_pba_reads_pending_bits_and_is_not_forwarded() -> None:
    fn, bar = make(msix_vectors=70)
    assert fn.region_read(BAR0, PBA, 16) == bytes(16)
    fn.set_pending(0, True)
    fn.set_pending(65, True)
    assert fn.region_read(BAR0, PBA, 8) == b"\x01" + bytes(7)
    assert fn.region_read(BAR0, PBA + 8, 1) == b"\x02"
    fn.region_write(BAR0, PBA, b"\0" * 8)  # read-only
    assert fn.region_read(BAR0, PBA, 1) == b"\x01"
    fn.set_pending(0, False)
    assert fn.region_read(BAR0, PBA, 1) == b"\x00"
    assert bar.reads == 0 and bar.writes == []
    with pytest.raises(ValueError):
        fn.set_pending(70, True)


def test_msix_table_kept_by_function_not_device() -> None:
    fn, bar = make()
    entry = fn.region_read(BAR0, TABLE + 16 * 3, 16)
    assert entry[12] & 1, "vectors start masked"
    fn.region_write(BAR0, TABLE + 16 * 3, b"\x00\x10\xe0\xfe")
    assert fn.region_read(BAR0, TABLE + 16 * 3, 4) == b"\x00\x10\xe0\xfe"
    assert bar.writes == [] and bar.reads == 0


def test_access_straddling_msix_area_refused() -> None:
    fn, _ = make()
    with pytest.raises(RegionAccessError):
        fn.region_read(BAR0, TABLE - 4, 8)
    with pytest.raises(RegionAccessError):
        fn.region_read(BAR0, PBA + 4, 8)  # the PBA of 16 vectors is 8 bytes


def test_config_out_of_range() -> None:
    fn, _ = make()
    for off, n in ((4096, 1), (4093, 4), (-1, 2)):
        with pytest.raises(RegionAccessError):
            fn.region_read(CONFIG, off, n)
        with pytest.raises(RegionAccessError):
            fn.region_write(CONFIG, off, b"\0" * n)


def test_reset_restores_config_and_resets_device() -> None:
    fn, bar = make()
    fn.region_write(CONFIG, 0x04, b"\x06\x00")
    fn.region_write(BAR0, 0x0, b"\x01")
    fn.region_write(BAR0, TABLE, b"\xaa" * 4)
    fn.set_pending(1, True)
    fn.reset()
    assert bar.resets == 1 and fn.resets == 1
    assert fn.region_read(CONFIG, 0x04, 2) == b"\0\0"
    assert fn.region_read(BAR0, 0, 1) == b"\0"
    assert fn.region_read(BAR0, TABLE, 4) == b"\0\0\0\0"
    assert fn.region_read(BAR0, PBA, 1) == b"\0"


def test_flr_through_devctl() -> None:
    fn, bar = make()
    devctl = fn.pcie_offset + 0x08
    fn.region_write(CONFIG, 0x04, b"\x06\x00")
    fn.region_write(CONFIG, devctl, b"\x10\x28")  # an ordinary DEVCTL write: no reset
    assert bar.resets == 0
    old = fn.region_read(CONFIG, devctl, 2)
    fn.region_write(CONFIG, devctl, bytes([old[0], old[1] | 0x80]))  # Initiate FLR
    assert bar.resets == 1
    assert not fn.region_read(CONFIG, devctl + 1, 1)[0] & 0x80, "the FLR bit reads as 0"
    assert fn.region_read(CONFIG, 0x04, 2) == b"\0\0"
    fn.region_write(CONFIG, devctl, b"\x00\x80\x00\x00")  # as part of a dword write
    assert bar.resets == 2


def test_flr_ignored_when_not_advertised() -> None:
    fn, bar = make(flr=False)
    fn.region_write(CONFIG, fn.pcie_offset + 0x09, b"\x80")
    assert bar.resets == 0


class BrokenBar(RegisterFileBar):
    def mmio_read(self, offset: int, size: int) -> bytes:
        return b"\0" * (size + 1)

    def mmio_write(self, offset: int, data: bytes) -> None:
        raise RuntimeError("model bug")


def test_device_misbehaviour_becomes_eio() -> None:
    cfg = PciFunctionConfig()
    fn = PciFunction(cfg, BrokenBar(cfg.bar0_size))
    with pytest.raises(RegionAccessError) as e:
        fn.region_read(BAR0, 0, 4)
    assert e.value.errno == errno.EIO
    with pytest.raises(RegionAccessError) as e:
        fn.region_write(BAR0, 0, b"\0")
    assert e.value.errno == errno.EIO

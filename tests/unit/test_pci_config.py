"""Config space of the PCI function: identity, capability list, BARs, write semantics."""

from __future__ import annotations

import struct

import pytest

from mlx5dev.pci import PciFunction, PciFunctionConfig, RegisterFileBar
from mlx5dev.pci.capabilities import CAP_ID_EXP, CAP_ID_MSIX, CAP_ID_PM
from mlx5dev.vfio_user.protocol import RegionIndex

from .test_vfio_user_client import served

MIB = 1 << 20
CONFIG = RegionIndex.CONFIG


def u8(cs: bytes, off: int) -> int:
    return cs[off]


def u16(cs: bytes, off: int) -> int:
    return struct.unpack_from("<H", cs, off)[0]


def u32(cs: bytes, off: int) -> int:
    return struct.unpack_from("<I", cs, off)[0]


def walk_caps(cs: bytes) -> dict[int, int]:
    """Capability id -> offset, walking the list like a guest does (and checking it is sane)."""
    assert u16(cs, 0x06) & 0x10, "status: capability list bit"
    caps: dict[int, int] = {}
    pos = cs[0x34]
    while pos:
        assert pos % 4 == 0 and 0x40 <= pos < 0x100, hex(pos)
        assert cs[pos] not in caps, "capability listed twice"
        caps[cs[pos]] = pos
        pos = cs[pos + 1]
        assert len(caps) < 48, "capability list loops"
    return caps


def function(**kw: object) -> PciFunction:
    cfg = PciFunctionConfig(**kw)  # type: ignore[arg-type]
    return PciFunction(cfg, RegisterFileBar(cfg.bar0_size))


def config_bytes(fn: PciFunction) -> bytes:
    return fn.region_read(CONFIG, 0, 4096)


# --- over the wire --------------------------------------------------------------------------------


def test_config_space_through_vfio_user() -> None:
    with served() as h:
        cs = h.client.region_read(CONFIG, 0, 4096)
        assert (u16(cs, 0), u16(cs, 2)) == (0x15B3, 0x1017)
        assert u32(cs, 0x08) >> 8 == 0x020000
        caps = walk_caps(cs)
        assert CAP_ID_EXP in caps and CAP_ID_MSIX in caps
        msix = caps[CAP_ID_MSIX]
        assert (u16(cs, msix + 2) & 0x7FF) + 1 == 16
        assert u32(cs, msix + 4) == 0x1000000  # table: BAR0 + 16 MiB, BIR 0
        assert u32(cs, msix + 8) == 0x1001000  # PBA: BAR0 + 16 MiB + 4 KiB, BIR 0
        exp = caps[CAP_ID_EXP]
        assert u16(cs, exp + 2) & 0xF == 2 and (u16(cs, exp + 2) >> 4) & 0xF == 0  # v2 endpoint
        assert u32(cs, 0x100) == 0  # no extended capabilities


def test_bar_sizing_write_does_not_change_the_bar() -> None:
    with served() as h:
        before = h.client.region_read(CONFIG, 0x10, 24)
        assert u32(before, 0) == 0x0000000C  # 64-bit prefetchable memory
        for off in range(0x10, 0x28, 4):
            h.client.region_write(CONFIG, off, b"\xff\xff\xff\xff")
        assert h.client.region_read(CONFIG, 0x10, 24) == before
        h.client.region_write(CONFIG, 0x30, b"\x00\xf8\xff\xff")  # ROM sizing: no ROM
        assert h.client.region_read(CONFIG, 0x30, 4) == b"\0\0\0\0"


# --- identity ---------------------------------------------------------------------------------------


def test_identity_fields() -> None:
    cs = config_bytes(function(subsystem_vendor_id=0x1234, subsystem_id=0xABCD, revision=0x5A))
    assert u16(cs, 0x2C) == 0x1234 and u16(cs, 0x2E) == 0xABCD
    assert cs[0x08] == 0x5A
    assert cs[0x09:0x0C] == b"\x00\x00\x02"  # prog-if, subclass, class: Ethernet controller
    assert cs[0x0E] == 0x00  # type 0 header, single function
    assert cs[0x3D] == 0  # no INTx pin


def test_multifunction_bit() -> None:
    assert config_bytes(function(multifunction=True))[0x0E] == 0x80


def test_device_id_configurable() -> None:
    assert u16(config_bytes(function(device_id=0x101B)), 2) == 0x101B


# --- capabilities ---------------------------------------------------------------------------------------


def test_capability_chain_default_and_without_pm() -> None:
    assert set(walk_caps(config_bytes(function()))) == {CAP_ID_PM, CAP_ID_EXP, CAP_ID_MSIX}
    assert set(walk_caps(config_bytes(function(power_management=False)))) == {CAP_ID_EXP, CAP_ID_MSIX}


def test_capabilities_do_not_overlap() -> None:
    caps = walk_caps(config_bytes(function()))
    sizes = {CAP_ID_PM: 8, CAP_ID_EXP: 0x3C, CAP_ID_MSIX: 12}
    spans = sorted((off, off + sizes[cid]) for cid, off in caps.items())
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert end <= start


def test_pcie_link_and_device_caps() -> None:
    fn = function()
    cs = config_bytes(fn)
    exp = walk_caps(cs)[CAP_ID_EXP]
    assert fn.pcie_offset == exp
    devcap = u32(cs, exp + 4)
    assert devcap & 0x7 == 2  # MPS 512
    assert devcap & (1 << 28)  # FLR
    lnkcap = u32(cs, exp + 0x0C)
    assert lnkcap & 0xF == 3 and (lnkcap >> 4) & 0x3F == 8  # Gen3 x8
    lnksta = u16(cs, exp + 0x12)
    assert lnksta & 0xF == 3 and (lnksta >> 4) & 0x3F == 8
    assert u32(cs, exp + 0x2C) == 0b1110  # supported speeds 2.5, 5, 8 GT/s
    cs16 = config_bytes(function(link_speed=4, link_width=16, flr=False))
    exp16 = walk_caps(cs16)[CAP_ID_EXP]
    assert u32(cs16, exp16 + 0x0C) & 0x3FF == 4 | (16 << 4)
    assert not u32(cs16, exp16 + 4) & (1 << 28)


def test_msix_placement_configurable() -> None:
    fn = function(msix_vectors=64, msix_table_offset=0x2000, msix_pba_offset=0x3000, bar0_size=MIB)
    cs = config_bytes(fn)
    msix = walk_caps(cs)[CAP_ID_MSIX]
    assert (u16(cs, msix + 2) & 0x7FF) + 1 == 64
    assert u32(cs, msix + 4) == 0x2000 and u32(cs, msix + 8) == 0x3000


def test_pm_capability() -> None:
    cs = config_bytes(function())
    pm = walk_caps(cs)[CAP_ID_PM]
    assert u16(cs, pm + 2) & 0x7 == 3  # PM spec 1.2
    assert u16(cs, pm + 4) & 0x8  # No_Soft_Reset


# --- write semantics ----------------------------------------------------------------------------------


def test_read_only_and_masked_writes() -> None:
    fn = function()
    fn.region_write(CONFIG, 0, b"\xff\xff\xff\xff")  # vendor/device: read-only
    fn.region_write(CONFIG, 0x04, b"\xff\xff")  # command: only the defined control bits
    fn.region_write(CONFIG, 0x0C, b"\x10")  # cache line size: RW
    fn.region_write(CONFIG, 0x3C, b"\x0b")  # interrupt line: RW
    cs = config_bytes(fn)
    assert u16(cs, 0) == 0x15B3
    assert u16(cs, 0x04) == 0x0547
    assert cs[0x0C] == 0x10 and cs[0x3C] == 0x0B


def test_status_error_bits_are_write_one_to_clear() -> None:
    fn = function()
    fn.config_space.data[0x07] |= 0x20  # received master abort
    fn.region_write(CONFIG, 0x06, b"\x00\x00")
    assert config_bytes(fn)[0x07] & 0x20
    fn.region_write(CONFIG, 0x06, b"\xff\xff")
    assert u16(config_bytes(fn), 0x06) == 0x0010  # error cleared, capability-list bit kept


def test_capability_pointers_are_read_only() -> None:
    fn = function()
    before = config_bytes(fn)
    for off in [0x34] + [pos + 1 for pos in walk_caps(before).values()]:
        fn.region_write(CONFIG, off, b"\x00")
    assert walk_caps(config_bytes(fn)) == walk_caps(before)


def test_msix_control_enable_and_mask_bits_writable_table_size_not() -> None:
    fn = function()
    msix = fn.msix_offset
    fn.region_write(CONFIG, msix + 2, b"\xff\xff")
    assert u16(config_bytes(fn), msix + 2) == 0xC000 | 15


@pytest.mark.parametrize(
    "kw",
    [
        {"bar0_size": 3 * MIB},
        {"bar0_size": 2048},
        {"bar0_64bit": False, "bar0_size": 4 << 30},
        {"msix_vectors": 0},
        {"msix_vectors": 2049},
        {"msix_table_offset": 0x1004},
        {"msix_pba_offset": 64 * MIB},
        {"msix_table_offset": 0x1000, "msix_pba_offset": 0x1008},
        {"vendor_id": 0x10000},
        {"vendor_id": 0xFFFF},
        {"class_code": 1 << 24},
        {"max_payload_size": 100},
        {"link_width": 3},
        {"link_speed": 0},
    ],
)
def test_bad_configs_rejected(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PciFunctionConfig(**kw)  # type: ignore[arg-type]

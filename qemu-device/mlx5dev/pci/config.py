"""Static identity and resources of the emulated PCI function."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1 << 20

MSIX_TABLE_ENTRY_SIZE = 16
MSIX_MAX_VECTORS = 2048


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclass(frozen=True)
class PciFunctionConfig:
    """Everything the config space and BAR layout are derived from. Defaults: a ConnectX-5 PF."""

    vendor_id: int = 0x15B3  # Mellanox
    device_id: int = 0x1017  # ConnectX-5
    subsystem_vendor_id: int = 0x15B3
    subsystem_id: int = 0x0007  # arbitrary; the driver does not look at it
    class_code: int = 0x020000  # network controller, Ethernet
    revision: int = 0x00
    #: Set on function 0 of a multi-function slot (QEMU decides what the guest sees, but says so).
    multifunction: bool = False

    bar0_size: int = 32 * MIB
    bar0_64bit: bool = True
    bar0_prefetchable: bool = True

    msix_vectors: int = 16
    #: MSI-X table and PBA offsets inside BAR0: clear of the mlx5 initialisation segment and UAR pages.
    msix_table_offset: int = 16 * MIB
    msix_pba_offset: int = 16 * MIB + 0x1000

    power_management: bool = True
    #: Function-level reset: advertised in DEVCAP, and a write of DEVCTL.BCR_FLR resets the function.
    flr: bool = True
    #: Link: 1=2.5, 2=5, 3=8, 4=16 GT/s; width in lanes.
    link_speed: int = 3
    link_width: int = 8
    max_payload_size: int = 512

    def __post_init__(self) -> None:
        for name, bits in (
            ("vendor_id", 16),
            ("device_id", 16),
            ("subsystem_vendor_id", 16),
            ("subsystem_id", 16),
            ("class_code", 24),
            ("revision", 8),
        ):
            value = getattr(self, name)
            if not 0 <= value < (1 << bits):
                raise ValueError(f"{name}={value:#x} does not fit {bits} bits")
        if self.vendor_id == 0xFFFF:
            raise ValueError("vendor_id 0xffff means 'no device'")
        if not _is_pow2(self.bar0_size) or self.bar0_size < 4096:
            raise ValueError(f"bar0_size={self.bar0_size:#x} must be a power of two >= 4 KiB")
        if not self.bar0_64bit and self.bar0_size > 1 << 31:
            raise ValueError("a 32-bit BAR0 cannot exceed 2 GiB")
        if not 1 <= self.msix_vectors <= MSIX_MAX_VECTORS:
            raise ValueError(f"msix_vectors={self.msix_vectors} not in 1..{MSIX_MAX_VECTORS}")
        for name, off, size in (
            ("msix_table_offset", self.msix_table_offset, self.msix_table_size),
            ("msix_pba_offset", self.msix_pba_offset, self.msix_pba_size),
        ):
            if off % 8:
                raise ValueError(f"{name}={off:#x} must be 8-byte aligned (low bits hold the BIR)")
            if off < 0 or off + size > self.bar0_size:
                raise ValueError(f"{name}={off:#x} (+{size:#x}) lies outside BAR0")
        t0, t1 = self.msix_table_offset, self.msix_table_offset + self.msix_table_size
        p0, p1 = self.msix_pba_offset, self.msix_pba_offset + self.msix_pba_size
        if t0 < p1 and p0 < t1:
            raise ValueError("MSI-X table and PBA overlap")
        if self.max_payload_size not in (128, 256, 512, 1024, 2048, 4096):
            raise ValueError(f"max_payload_size={self.max_payload_size} is not a PCIe MPS")
        if not 1 <= self.link_speed <= 6:
            raise ValueError(f"link_speed={self.link_speed} not in 1..6")
        if self.link_width not in (1, 2, 4, 8, 12, 16, 32):
            raise ValueError(f"link_width={self.link_width} is not a PCIe width")

    @property
    def msix_table_size(self) -> int:
        return self.msix_vectors * MSIX_TABLE_ENTRY_SIZE

    @property
    def msix_pba_size(self) -> int:
        return ((self.msix_vectors + 63) // 64) * 8

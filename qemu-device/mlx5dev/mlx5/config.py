"""Static configuration of one emulated function."""

from __future__ import annotations

from dataclasses import dataclass

from .port import check_speed


def parse_mac(mac: str | bytes) -> bytes:
    raw = mac if isinstance(mac, bytes) else bytes(int(part, 16) for part in mac.replace("-", ":").split(":"))
    if len(raw) != 6:
        raise ValueError(f"bad MAC {mac!r}")
    if raw[0] & 1:
        raise ValueError(f"MAC {mac!r} is multicast")
    return raw


@dataclass
class FunctionConfig:
    """What the function looks like to the driver.

    ``num_msix`` must equal the MSI-X table size the PCI layer exposes: it sizes the EQ capability
    (the driver needs ``1 << log_max_eq >= vectors + 4``). ``bar0_size`` must equal the PCI layer's
    BAR0 size: UAR indexes are handed out from ``uar_base`` up to the last 4 KiB page of BAR0.
    """

    name: str = "mlx5_0"
    function_index: int = 0
    mac: str | bytes = "02:15:b3:00:00:01"
    speed_mbps: int = 100000
    link_up: bool = True
    num_msix: int = 16
    fw_version: tuple[int, int, int] = (16, 35, 2000)  # major, minor, subminor (ConnectX-5 style)
    # ConnectX-5-like: firmware that can tear down fast (main.c: mlx5_try_fast_unload takes that path on
    # shutdown), reset itself on the driver's request (health.c: reset_fw_if_needed) and negotiate a sync
    # reset (fw_reset.c); each is a card setting so a scenario can take the other path.
    fast_teardown: bool = True
    force_teardown: bool = True
    fw_reset_supported: bool = True
    sync_reset: bool = True
    uar_base: int = 8
    bar0_size: int = 1 << 20
    mtu: int = 1500
    board_id: str = "MLX5LAB0000001"  # QUERY_ADAPTER vsd_contd_psid, shown as board_id
    cmd_timeout_ms: int | None = None  # if set: iseg cmd_exec_to, which makes the driver read DTOR too

    def __post_init__(self) -> None:
        self.mac = parse_mac(self.mac)
        check_speed(self.speed_mbps)
        if not 1 <= self.num_msix <= 2048:
            raise ValueError("num_msix must be 1..2048")
        if self.uar_base < 3 or self.bar0_size % 4096 or self.bar0_size // 4096 <= self.uar_base:
            raise ValueError("uar_base must be >= 3 (iseg pages) and inside BAR0")

    @property
    def mac_bytes(self) -> bytes:
        assert isinstance(self.mac, bytes)
        return self.mac

    @property
    def log_max_eq(self) -> int:
        """Smallest log2 EQ count leaving room for one EQ per vector plus the 4 async EQs."""
        need = self.num_msix + 4
        return min(8, max(4, (need - 1).bit_length()))  # eq_number is 8 bits wide

    @property
    def uar_count(self) -> int:
        return self.bar0_size // 4096 - self.uar_base

"""Per-function physical port: MAC, speed, link and admin state, MTU, as PTYS/PAOS/PMTU show them.

Speed encoding (``include/linux/mlx5/port.h``, ``en/port.c``): a speed the legacy PTYS table knows is
reported as one legacy ``eth_proto_*`` bit; 5/200/400 Gb/s only exist in the extended table and are
reported with the ``ext_eth_proto_*`` fields (legacy fields 0), which is what makes the driver pick the
extended table; any other multiple of 100 Mb/s is reported by ``data_rate_oper`` alone (the driver
falls back to ``100 * data_rate_oper`` when no oper bit maps to a speed).

The operational state is ``link_up and admin_up``: the link is the cable (control channel),
admin is what the driver writes into PAOS. QUERY_VPORT_STATE reports the operational state.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

# Mb/s -> legacy PTYS bit (one representative link mode per speed)
LEGACY_BIT = {
    100: 24,  # 100BASE_TX
    1000: 1,  # 1000BASE_KX
    10000: 12,  # 10GBASE_CR
    20000: 5,  # 20GBASE_KR2
    25000: 27,  # 25GBASE_CR
    40000: 6,  # 40GBASE_CR4
    50000: 30,  # 50GBASE_CR2
    56000: 8,  # 56GBASE_R4
    100000: 20,  # 100GBASE_CR4
}
# Mb/s -> extended PTYS bit
EXT_BIT = {
    100: 0,  # SGMII_100M
    1000: 1,  # 1000BASE_X_SGMII
    5000: 3,  # 5GBASE_R
    10000: 4,  # 10GBASE_XFI_XAUI_1
    40000: 5,  # 40GBASE_XLAUI_4_XLPPI_4
    25000: 6,  # 25GAUI_1_25GBASE_CR_KR
    50000: 8,  # 50GAUI_1_LAUI_1_50GBASE_CR_KR
    100000: 9,  # CAUI_4_100GBASE_CR4_KR4
    200000: 12,  # 200GAUI_4_200GBASE_CR4_KR4
    400000: 16,  # 400GAUI_4_400GBASE_CR4_KR4 (bit 15, 400GAUI_8, also maps to 400G)
}
LEGACY_MASK = sum(1 << b for b in LEGACY_BIT.values())
EXT_MASK = sum(1 << b for b in EXT_BIT.values())

PAOS_UP = 1
PAOS_DOWN = 2
PAOS_UP_ONCE = 3
VPORT_DOWN = 0
VPORT_UP = 1


@dataclass(frozen=True)
class PtysView:
    """The PTYS Ethernet fields for the current speed and link."""

    eth_proto_capability: int
    eth_proto_admin: int
    eth_proto_oper: int
    ext_eth_proto_capability: int
    ext_eth_proto_admin: int
    ext_eth_proto_oper: int
    data_rate_oper: int
    an_status: int


def check_speed(mbps: int) -> None:
    if mbps in LEGACY_BIT or mbps in EXT_BIT:
        return
    if mbps <= 0 or mbps % 100 or mbps // 100 > 0xFFFF:
        raise ValueError(f"speed {mbps} Mb/s cannot be reported (need a multiple of 100 below 6553600)")


class Port:
    """Port state; every accessor takes the port lock (the control channel and the worker share it)."""

    MAX_MTU = 9978  # PMTU max_mtu, as real ConnectX reports

    def __init__(self, mac: bytes, speed_mbps: int, link_up: bool) -> None:
        check_speed(speed_mbps)
        self._lock = threading.Lock()
        self.mac = mac
        self.speed_mbps = speed_mbps
        self.link_up = link_up
        self.admin_up = True
        self.admin_mtu = 1500 + 22  # hardware MTU (includes the L2 header the driver adds)
        self.registers: dict[str, bytes] = {}  # last written content of echo-style registers

    @property
    def oper_up(self) -> bool:
        return self.link_up and self.admin_up

    def set_link(self, up: bool) -> tuple[bool, bool]:
        """Returns (old oper state, new oper state)."""
        with self._lock:
            old = self.oper_up
            self.link_up = up
            return old, self.oper_up

    def set_admin(self, status: int) -> tuple[bool, bool]:
        with self._lock:
            old = self.oper_up
            self.admin_up = status in (PAOS_UP, PAOS_UP_ONCE)
            return old, self.oper_up

    def set_speed(self, mbps: int) -> None:
        check_speed(mbps)
        with self._lock:
            self.speed_mbps = mbps

    def ptys(self) -> PtysView:
        with self._lock:
            mbps, up = self.speed_mbps, self.oper_up
        rate = mbps // 100 if up else 0
        if mbps in LEGACY_BIT:
            oper = (1 << LEGACY_BIT[mbps]) if up else 0
            return PtysView(LEGACY_MASK, LEGACY_MASK, oper, 0, 0, 0, rate, 1 if up else 0)
        if mbps in EXT_BIT:
            oper = (1 << EXT_BIT[mbps]) if up else 0
            return PtysView(0, 0, 0, EXT_MASK, EXT_MASK, oper, rate, 1 if up else 0)
        return PtysView(LEGACY_MASK, LEGACY_MASK, 0, 0, 0, 0, rate, 1 if up else 0)

    @property
    def oper_mtu(self) -> int:
        return self.admin_mtu


@dataclass
class VportContext:
    """NIC vport context the driver writes with MODIFY_NIC_VPORT_CONTEXT and reads back."""

    mtu: int
    promisc_uc: bool = False
    promisc_mc: bool = False
    promisc_all: bool = False
    disable_uc_local_lb: bool = False
    disable_mc_local_lb: bool = False
    arm_change_event: bool = False
    lists: dict[int, list[bytes]] = field(default_factory=lambda: {0: [], 1: [], 2: []})  # UC, MC, VLAN

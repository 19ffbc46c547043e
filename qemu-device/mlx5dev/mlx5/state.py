"""All mutable state of one function in one struct, plus the event-posting helpers handlers share.

Handlers run on the command worker with ``lock`` held; the control API (link, speed) takes the
same lock, so a handler always sees a consistent port and object set.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from ..interfaces import DMAError, GuestMemory, InterruptSink
from .capabilities import build_caps
from .config import FunctionConfig
from .consts import Event, PortChange
from .datapath.counters import TrafficCounters
from .eq import EventQueue
from .firmware import Firmware, FunctionSide
from .ifc.hw import EQE
from .objects import Objects
from .port import Port, VportContext
from .trace import CommandTrace

log = logging.getLogger("mlx5dev.mlx5")

MAX_GIVEN_PAGES = 1 << 18


@dataclass
class HcaState:
    """Firmware life cycle.

    ENABLE_HCA -> (ISSI, pages, caps) -> INIT_HCA -> ... -> TEARDOWN_HCA -> DISABLE_HCA.
    """

    enabled: bool = False
    initialized: bool = False
    issi: int = 0
    driver_version: str = ""
    given_pages: list[int] = field(default_factory=list)
    host_endianness: int = 0


class DeviceState:
    def __init__(
        self, config: FunctionConfig, memory: GuestMemory, irq: InterruptSink, trace: CommandTrace,
        firmware: Firmware | None = None, owner: FunctionSide | None = None,
    ) -> None:
        self.config = config
        self.firmware = firmware if firmware is not None else Firmware(config.fw_version)
        self.owner = owner  # the Mlx5Function whose state this is (registers that talk to the firmware)
        self.memory = memory
        self.irq = irq
        self.trace = trace
        self.lock = threading.RLock()
        self.port = Port(config.mac_bytes, config.speed_mbps, config.link_up)
        self.port.admin_mtu = config.mtu + 22
        self.vport = VportContext(mtu=config.mtu + 22)
        self.caps_max = build_caps(config)
        self.caps_cur = {k: bytearray(v) for k, v in self.caps_max.items()}
        self.objects = Objects(1 << config.log_max_eq, config.uar_base, config.uar_count)
        self.hca = HcaState()
        self.commands = 0
        self.events_posted: dict[str, int] = {}
        self.traffic = TrafficCounters()

    @property
    def name(self) -> str:
        return self.config.name

    def cmd_eq(self) -> EventQueue | None:
        """The EQ that receives command completions (event_bitmask bit 0x0a), if any."""
        for eq in self.objects.eqs.values():
            if eq.handles(Event.CMD):
                return eq
        return None

    def post_eqe(self, eq: EventQueue, event_type: int, sub_type: int, data: bytes) -> bool:
        """Write an EQE and raise the EQ's vector; problems are traced, never raised."""
        if self.firmware.halted:
            self.reject(f"EQ {eq.eqn:#x}: EQE type {event_type:#x} not written: the firmware is halted")
            return False
        try:
            ok = eq.post(self.memory, event_type, sub_type, data)
        except DMAError as e:
            self.reject(f"EQ {eq.eqn:#x}: DMA error writing EQE type {event_type:#x}: {e}")
            return False
        if not ok:
            self.reject(f"EQ {eq.eqn:#x} full (pi {eq.pi} ci {eq.ci}): EQE type {event_type:#x} dropped")
            return False
        key = f"{event_type:#x}"
        self.events_posted[key] = self.events_posted.get(key, 0) + 1
        self.irq.fire(eq.intr)
        return True

    def post_event(self, event_type: int, sub_type: int, data: bytes) -> bool:
        """Route an asynchronous event to the lowest-numbered EQ subscribed to its type."""
        for eqn in sorted(self.objects.eqs):
            eq = self.objects.eqs.get(eqn)
            if eq.handles(event_type):
                return self.post_eqe(eq, event_type, sub_type, data)
        return False

    def post_cmd_completion(self, slot_mask: int) -> bool:
        eq = self.cmd_eq()
        if eq is None:
            return False
        data = bytearray(0x1C)
        data[0:4] = slot_mask.to_bytes(4, "big")
        return self.post_eqe(eq, Event.CMD, 0, bytes(data))

    def post_port_change(self, up: bool, port: int = 1) -> bool:
        data = bytearray(0x1C)
        data[EQE.field("port").byte - EQE.field("data").byte] = (port & 0xF) << 4
        sub = PortChange.ACTIVE if up else PortChange.DOWN
        posted = self.post_event(Event.PORT_CHANGE, sub, bytes(data))
        self.trace.emit(
            {"kind": "event", "function": self.name, "detail": f"port change {sub.name}", "posted": posted}
        )
        return posted

    def reject(self, detail: str, **extra: object) -> None:
        """Trace a guest input the device refused or could not act on."""
        self.trace.emit({"kind": "reject", "function": self.name, "detail": detail, **extra})

    def teardown(self) -> None:
        """What TEARDOWN_HCA leaves behind: no objects, no DMA targets, HCA not initialised."""
        self.objects.clear()
        self.hca.initialized = False

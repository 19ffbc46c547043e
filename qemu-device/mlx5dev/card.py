"""A card of several mlx5 PCI functions, each served on its own vfio-user socket.

By default one slot with two functions, like the dual-port ConnectX of the seed case: each function is
its own mlx5 device with its own port, MAC, speed, link state, fault table and command trace.

A cable joins the ports in pairs (fn0 <-> fn1, fn2 <-> fn3, ...): a frame one port sends arrives at
the other, if both links are up. A function without a partner sends into nothing (counted as drops).
With ``tap`` set, the last function's cable ends in a host TAP interface of that name instead
(:mod:`.tap`), and its partner has none.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from .interfaces import GuestMemory, InterruptSink
from .mlx5.config import FunctionConfig
from .mlx5.device import Mlx5Function
from .mlx5.firmware import Firmware
from .mlx5.trace import CommandTrace
from .pci import PciFunction, PciFunctionConfig
from .rundir import CardDir
from .tap import TapPort
from .vfio_user import VfioUserServer

log = logging.getLogger("mlx5dev.card")


@dataclass
class FunctionSpec:
    mac: str
    speed_mbps: int = 100000
    link_up: bool = True


@dataclass
class CardConfig:
    """The card: its functions, and the capabilities that decide which path the driver takes.

    Defaults are ConnectX-5-like: fast and force teardown (so ``shutdown`` takes
    ``main.c: mlx5_try_fast_unload``), a firmware reset on the driver's request (``health.c:
    reset_fw_if_needed``), and sync reset (``fw_reset.c``). ``cmd_timeout_ms`` makes the card advertise its
    command timeout in the initialization segment and the DTOR register (``lib/tout.c``), by default the
    driver's own minute; set lower, a command timeout takes seconds.
    """

    functions: list[FunctionSpec] = field(default_factory=lambda: [
        FunctionSpec("02:15:b3:00:00:10", 100000), FunctionSpec("02:15:b3:00:00:11", 25000)])
    device_id: int = 0x1017
    msix_vectors: int = 8
    fast_teardown: bool = True
    force_teardown: bool = True
    fw_reset_supported: bool = True
    sync_reset: bool = True
    # the firmware's command timeout in the initialization segment, which also makes the driver read DTOR
    # (lib/tout.c); None: the card advertises none and the driver keeps its defaults (a minute), but also
    # its shorter sync-reset deadline (PCI_SYNC_UPDATE without DTOR's tear_down_to), which two functions'
    # serialised PCI link toggles under QEMU overrun
    cmd_timeout_ms: int | None = 60000
    # a host TAP interface the last function's port is cabled to instead of its partner (None: no host
    # backend); the card creates it, down, when it starts
    tap: str | None = None

    @classmethod
    def from_json(cls, text: str) -> CardConfig:
        raw = json.loads(text)
        fns = [FunctionSpec(**f) for f in raw.pop("functions")]
        return cls(functions=fns, **raw)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_speeds(cls, speeds: list[int], **settings: Any) -> CardConfig:
        """One function per speed, with MACs 02:15:b3:00:00:10, :11, ...; ``settings`` as the fields."""
        return cls([FunctionSpec(f"02:15:b3:00:00:{0x10 + i:02x}", s) for i, s in enumerate(speeds)], **settings)


class Card:
    """Builds and serves every function of the card; the control channel acts on it."""

    def __init__(self, config: CardConfig, run_dir: Path) -> None:
        self.config = config
        self.run_dir = CardDir(run_dir)
        self.functions: list[Mlx5Function | None] = [None] * len(config.functions)
        fw_version = FunctionConfig().fw_version
        self.firmware = Firmware(fw_version, fw_reset_supported=config.fw_reset_supported,
                                 sync_reset=config.sync_reset, on_event=self._firmware_event)
        self.tap_index = len(config.functions) - 1 if config.tap else None
        self.tap = TapPort(config.tap, self._from_tap) if config.tap else None
        self.servers: list[VfioUserServer] = []
        for i in range(len(config.functions)):
            self.servers.append(VfioUserServer(self.run_dir.function_socket(i), self._factory(i)))

    def _factory(self, i: int):  # noqa: ANN202 - a FunctionFactory closure
        spec = self.config.functions[i]
        pci_cfg = PciFunctionConfig(device_id=self.config.device_id, msix_vectors=self.config.msix_vectors,
                                    multifunction=(i == 0 and len(self.config.functions) > 1))
        fn_cfg = FunctionConfig(name=f"fn{i}", function_index=i, mac=spec.mac, speed_mbps=spec.speed_mbps,
                                link_up=spec.link_up, num_msix=self.config.msix_vectors,
                                bar0_size=pci_cfg.msix_table_offset,  # UARs stay below MSI-X
                                fast_teardown=self.config.fast_teardown,
                                force_teardown=self.config.force_teardown,
                                fw_reset_supported=self.config.fw_reset_supported,
                                sync_reset=self.config.sync_reset, cmd_timeout_ms=self.config.cmd_timeout_ms)

        def make(memory: GuestMemory, irq: InterruptSink) -> PciFunction:
            trace = CommandTrace(self.run_dir.trace(i))
            old = self.functions[i]
            if old is not None:  # QEMU reconnected (a new session): the old model stops
                old.close()
            fn = Mlx5Function(fn_cfg, memory, irq, trace, self.firmware)
            if i == self.tap_index and self.tap is not None:
                fn.wire = self.tap.send
            elif (i ^ 1) < len(self.config.functions) and (i ^ 1) != self.tap_index:
                fn.wire = partial(self._carry, i ^ 1)
            self.functions[i] = fn
            return PciFunction(pci_cfg, fn)

        return make

    def _carry(self, to: int, frame: bytes) -> None:
        """The cable: a frame sent by one port arrives at its partner (which drops it if its link is down)."""
        peer = self.functions[to]
        if peer is not None:
            peer.receive(frame)

    def _from_tap(self, frame: bytes) -> None:
        fn = self.functions[self.tap_index] if self.tap_index is not None else None
        if fn is not None:
            fn.receive(frame)

    def function(self, index: int) -> Mlx5Function:
        if not 0 <= index < len(self.functions):
            raise ValueError(f"no function {index}: the card has {len(self.functions)}")
        fn = self.functions[index]
        if fn is None:
            raise ValueError(f"function {index} is not built yet")
        return fn

    def selected(self, index: int | None) -> list[Mlx5Function]:
        """One function, or all of them for None."""
        if index is None:
            return [self.function(i) for i in range(len(self.functions))]
        return [self.function(index)]

    def _firmware_event(self, record: dict[str, Any]) -> None:
        """Firmware events go into every built function's trace (they concern all of them)."""
        for fn in self.functions:
            if fn is not None:
                fn.trace.emit({**record, "function": fn.name})

    def status(self) -> list[dict[str, Any]]:
        rows = [self.function(i).status() for i in range(len(self.functions))]
        if self.tap is not None and self.tap_index is not None:
            rows[self.tap_index]["tap"] = self.tap.status()
        return rows

    def start(self) -> None:
        for server in self.servers:
            server.serve_in_thread(forever=True)

    def close(self) -> None:
        for server in self.servers:
            server.close()
        for fn in self.functions:
            if fn is not None:
                fn.close()
        if self.tap is not None:
            self.tap.close()
        self.firmware.close()

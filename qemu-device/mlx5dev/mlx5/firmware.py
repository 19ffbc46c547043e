"""The card's firmware: the state every function of one ConnectX shares.

On a ConnectX the functions are windows onto one firmware: a firmware assert shows in every function's
health buffer, a firmware reset resets them all, and a sync reset is negotiated with all of them. This
module holds that shared state; each :class:`~mlx5dev.mlx5.device.Mlx5Function` reads and acts through it.
Paths under ``drivers/net/ethernet/mellanox/mlx5/core/`` of Linux 6.1 name what the driver expects:

- Health (``health.c: mlx5_health_check_fatal_sensors``): fatal are a dead firmware (``fw_ver`` reads
  0xffffffff), ``nic_interface`` DISABLED or SW_RESET, and a syndrome with ``rfr`` set. Once fatal, the
  firmware is halted here: no command completes, no event or completion is written, doorbells are
  ignored (the driver fakes its completions: ``cmd.c: mlx5_cmd_flush``). A syndrome without ``rfr`` and a
  frozen health counter are only reported (``poll_health``: "FW syndrome reported", the miss counter).
- Firmware reset (``health.c: reset_fw_if_needed``): with ``initializing`` bit 30 (FW_RESET_SUPPORTED) set,
  the recovering driver writes ``nic_interface`` = SW_RESET and waits (``mlx5_error_sw_reset``, up to the
  PCI toggle timeout) for DISABLED. Here every function then reads SW_RESET, and after ``sw_reset_ms``
  the health buffer is clear, every function's state is gone and ``nic_interface`` reads DISABLED until the
  driver writes the command queue address again (``cmd.c: mlx5_cmd_enable``).
- Sync reset (``fw_reset.c``): MFRL (``mlx5_ifc.h: mfrl_reg_bits``) starts it; the firmware sends a
  GENERAL_EVENT / PCI_SYNC_FOR_FW_UPDATE with state REQUEST to every function that enabled
  ``pci_sync_for_fw_update_event`` (``main.c: handle_hca_cap``); each acks through MFRL
  (``mlx5_fw_reset_set_reset_sync_ack``); when all have, it sends NOW, each does a fast teardown and a PCI
  link toggle (``mlx5_sync_reset_now_event``). QEMU's root port ignores the toggle (it drops Link Disable
  writes), so the reset here happens when every function has disabled its NIC interface (the end of
  ``fw.c: mlx5_cmd_fast_teardown_hca``), or ``sync_reset_ms`` after NOW at the latest; ``initializing``
  bit 31 reads 1 meanwhile, so the driver's reload (``main.c: wait_fw_init``) waits for it.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("mlx5dev.firmware")


@dataclass
class HealthState:
    """The health buffer's fields the driver reads (``device.h: struct health_buffer``)."""

    synd: int = 0
    ext_synd: int = 0
    rfr: bool = False
    severity: int | None = None
    fw_ver_dead: bool = False  # the function reads all-ones: the driver's "PCI slot is unavailable"
    counter_frozen: bool = False

    @property
    def fatal(self) -> bool:
        """What ``mlx5_health_check_fatal_sensors`` calls fatal (nic_interface aside)."""
        return self.fw_ver_dead or (self.rfr and self.synd != 0)


class SyncState(enum.IntEnum):
    """MFRL ``reset_state`` (``mlx5_ifc.h``: MLX5_MFRL_REG_RESET_STATE_*)."""

    IDLE = 0
    IN_NEGOTIATION = 1
    RESET_IN_PROGRESS = 2
    TIMEOUT = 3
    NACK = 4


class SyncRstState(enum.IntEnum):
    """``sync_rst_state`` of the PCI_SYNC_FOR_FW_UPDATE event (``device.h: sync_rst_state_type``)."""

    REQUEST = 0
    NOW = 1
    ABORT = 2


class FunctionSide(Protocol):
    """What the firmware needs of each function (``Mlx5Function``)."""

    name: str

    def halt(self, why: str) -> None: ...

    def firmware_reset(self) -> None: ...

    def set_nic_interface(self, value: int) -> None: ...

    def post_sync_reset_event(self, state: SyncRstState) -> bool: ...

    def nic_interface(self) -> int: ...


NIC_DISABLED, NIC_SW_RESET = 1, 7  # mlx5_core.h: MLX5_NIC_IFC_DISABLED, MLX5_NIC_IFC_SW_RESET


class Firmware:
    """Device-wide firmware state: health, health counter, firmware reset, sync reset negotiation."""

    def __init__(self, fw_version: tuple[int, int, int], *, fw_reset_supported: bool = True,
                 sync_reset: bool = True, sw_reset_ms: float = 100.0, sync_reset_ms: float = 1000.0,
                 on_event: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.fw_version = fw_version
        self.fw_reset_supported = fw_reset_supported
        self.sync_reset_supported = sync_reset
        self.sw_reset_ms = sw_reset_ms
        self.sync_reset_ms = sync_reset_ms
        self.health = HealthState()
        self.health_counter = 0
        self.resetting = False  # initializing bit 31: a firmware reset is under way
        self.sync_state = SyncState.IDLE
        self.resets = 0
        # which negotiation the timers belong to: a timer of an earlier one (its negotiation timeout, its
        # reset deadline) must not end a later one that started before the timer fired
        self.negotiation = 0
        self._lock = threading.RLock()
        self._functions: list[FunctionSide] = []
        self._notified: set[str] = set()
        self._acked: set[str] = set()
        self._timers: list[threading.Timer] = []
        self._on_event = on_event or (lambda rec: None)

    # -- functions ------------------------------------------------------------------------------
    def attach(self, fn: FunctionSide) -> None:
        with self._lock:
            self._functions = [f for f in self._functions if f.name != fn.name] + [fn]

    @property
    def halted(self) -> bool:
        return self.health.fatal

    def _emit(self, detail: str, **extra: Any) -> None:
        log.info("firmware: %s", detail)
        self._on_event({"kind": "firmware", "detail": detail, **extra})

    # -- health -------------------------------------------------------------------------------------
    def read_health_counter(self) -> int:
        with self._lock:
            if not self.health.counter_frozen:
                self.health_counter = (self.health_counter + 1) & 0xFFFFFF  # 24 bits (initial_seg_bits)
            return self.health_counter

    def set_health(self, **changes: Any) -> None:
        """Change the health buffer; entering a fatal state halts every function."""
        with self._lock:
            was = self.halted
            for k, v in changes.items():
                if not hasattr(self.health, k):
                    raise AttributeError(f"no health field {k}")
                setattr(self.health, k, v)
            now = self.halted
            functions = list(self._functions)
        if now and not was:
            self._emit("fatal: firmware halted", health=vars(self.health).copy())
            for fn in functions:
                fn.halt("firmware fatal error")

    def clear_health(self) -> None:
        self.set_health(synd=0, ext_synd=0, rfr=False, severity=None, fw_ver_dead=False, counter_frozen=False)

    def revive_after(self, seconds: float) -> None:
        """A dead firmware comes back after ``seconds`` (as after a PCIe link loss): a firmware reset."""
        self._later(seconds, self._revive)

    def _revive(self) -> None:
        with self._lock:
            self.health.fw_ver_dead = False
        self._reset_all("firmware came back")

    # -- firmware reset ----------------------------------------------------------------------------
    def nic_interface_written(self, fn: FunctionSide, value: int) -> None:
        """The driver wrote ``nic_interface`` through ``cmdq_addr_l_sz`` of ``fn``."""
        if value == NIC_SW_RESET and self.fw_reset_supported:
            self._emit(f"{fn.name}: SW reset requested")
            with self._lock:
                functions = list(self._functions)
            for f in functions:
                f.set_nic_interface(NIC_SW_RESET)
                f.halt("firmware reset")
            self._later(self.sw_reset_ms / 1000, lambda: self._reset_all("SW reset"))
        elif value == NIC_DISABLED and self.sync_state is SyncState.RESET_IN_PROGRESS:
            with self._lock:
                if not all(f.nic_interface() == NIC_DISABLED for f in self._functions):
                    return
            self._reset_all("sync reset: every function disabled")

    def _reset_all(self, why: str) -> None:
        """The firmware resets: health clear, every function's state gone, NIC interface DISABLED."""
        with self._lock:
            if self.sync_state is SyncState.RESET_IN_PROGRESS:
                self.sync_state = SyncState.IDLE
            self.resetting = True
            self.health = HealthState()
            self.resets += 1
            functions = list(self._functions)
        for fn in functions:
            fn.firmware_reset()
            fn.set_nic_interface(NIC_DISABLED)
        with self._lock:
            self.resetting = False
        self._emit(f"reset ({why})", resets=self.resets)

    # -- sync reset (MFRL) --------------------------------------------------------------------------
    def mfrl_state(self) -> SyncState:
        return self.sync_state

    def sync_reset_request(self, requester: str | None) -> bool:
        """MFRL write with ``pci_sync_for_fw_update_start`` (or the control channel): start negotiating.

        False if sync reset is off or one is already under way (the driver reads ``reset_state`` then).
        """
        with self._lock:
            if not self.sync_reset_supported or self.sync_state in (SyncState.IN_NEGOTIATION,
                                                                    SyncState.RESET_IN_PROGRESS):
                return False
            self.sync_state = SyncState.IN_NEGOTIATION
            self.negotiation += 1
            negotiation = self.negotiation
            self._notified, self._acked = set(), set()
            functions = list(self._functions)
        self._emit(f"sync reset requested by {requester or 'the firmware'}")
        for fn in functions:
            if fn.post_sync_reset_event(SyncRstState.REQUEST):
                self._notified.add(fn.name)
        if not self._notified:
            with self._lock:
                self.sync_state = SyncState.TIMEOUT
            self._emit("sync reset: no function subscribed; nothing sent")
            return True
        self._later(self.sync_reset_ms / 1000 * 5, lambda: self._negotiation_timeout(negotiation))
        return True

    def sync_reset_response(self, fn: FunctionSide, ack: bool) -> None:
        """MFRL write with ``pci_sync_for_fw_update_resp``: 1 ack, 2 nack."""
        with self._lock:
            if self.sync_state is not SyncState.IN_NEGOTIATION:
                return
            if not ack:
                self.sync_state = SyncState.NACK
                functions = list(self._functions)
            else:
                self._acked.add(fn.name)
                if self._acked < self._notified:
                    return
                self.sync_state = SyncState.RESET_IN_PROGRESS
                functions = list(self._functions)
            negotiation = self.negotiation
        if not ack:
            self._emit(f"sync reset refused by {fn.name}")
            for f in functions:
                if f.name in self._notified:
                    f.post_sync_reset_event(SyncRstState.ABORT)
            return
        self._emit("sync reset: every function acked; NOW")
        for f in functions:
            if f.name in self._notified:
                f.post_sync_reset_event(SyncRstState.NOW)
        self._later(self.sync_reset_ms / 1000, lambda: self._sync_reset_deadline(negotiation))

    def _negotiation_timeout(self, negotiation: int) -> None:
        with self._lock:
            if self.sync_state is not SyncState.IN_NEGOTIATION or negotiation != self.negotiation:
                return
            self.sync_state = SyncState.TIMEOUT
            functions = [f for f in self._functions if f.name in self._notified]
        self._emit("sync reset: not every function acked in time; ABORT")
        for f in functions:
            f.post_sync_reset_event(SyncRstState.ABORT)

    def _sync_reset_deadline(self, negotiation: int) -> None:
        if self.sync_state is SyncState.RESET_IN_PROGRESS and negotiation == self.negotiation:
            self._reset_all("sync reset deadline")

    # -- timers ------------------------------------------------------------------------------------
    def _later(self, seconds: float, fn: Callable[[], None]) -> None:
        t = threading.Timer(max(0.0, seconds), fn)
        t.daemon = True
        with self._lock:
            self._timers = [x for x in self._timers if x.is_alive()] + [t]
        t.start()

    def cold_reset(self) -> None:
        """Power-on (QEMU's system reset of the card): nothing pending, health clear, no negotiation."""
        with self._lock:
            for t in self._timers:
                t.cancel()
            self._timers.clear()
            self.health = HealthState()
            self.sync_state = SyncState.IDLE
            self.resetting = False

    def close(self) -> None:
        with self._lock:
            for t in self._timers:
                t.cancel()
            self._timers.clear()

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"health": vars(self.health).copy(), "halted": self.halted, "resets": self.resets,
                    "sync_state": self.sync_state.name, "fw_reset_supported": self.fw_reset_supported,
                    "sync_reset_supported": self.sync_reset_supported}

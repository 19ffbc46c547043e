"""``Mlx5Function``: the device model behind BAR0, and the control API the orchestrator uses.

BAR0 map: pages 0..2 hold the init segment (0x2010 bytes); UAR page ``u`` (as returned by
ALLOC_UAR, from ``config.uar_base``) is at ``u * 4096``. In a UAR page the model decodes the EQ
doorbells (+0x40 arm, +0x48 no arm: ``eqn << 24 | ci``), the CQ arm doorbells (+0x20, 64-bit:
``sn << 28 | cmd | ci`` and the CQN) and treats 8-byte writes at +0x800.. (BlueFlame registers,
256-byte aligned) as SQ doorbells. Frames the SQs send leave through ``wire`` (the card's cable, set
by :class:`mlx5dev.card.Card`); frames for this port arrive through :meth:`Mlx5Function.receive`.

``mmio_read`` / ``mmio_write`` only touch registers and queue work; the worker thread does every
DMA and interrupt. All guest-triggered problems end up in the trace, never as exceptions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from ..interfaces import GuestMemory, InterruptSink
from . import handlers  # noqa: F401  (registers every command handler)
from .cmdq import CommandQueue
from .config import FunctionConfig
from .consts import Cap, Event, GeneralSubtype
from .datapath import rx, tx
from .datapath.events import cq_arm_doorbell
from .faults import Fault, FaultTable
from .firmware import Firmware, SyncRstState
from .ifc.caps import CMD_HCA_CAP
from .iseg import InitSegment, NicInterface
from .registers.timeouts import encode_timeout
from .state import DeviceState
from .trace import CommandTrace
from .worker import Worker

__all__ = ["FunctionConfig", "Mlx5Function"]

log = logging.getLogger("mlx5dev.mlx5")

PAGE = 4096
ISEG_PAGES = 3
EQ_DB_ARM, EQ_DB_NOARM, CQ_DB = 0x40, 0x48, 0x20
BF_FIRST = 0x800
RX_BACKLOG = 1024  # frames queued for this function's worker before the port drops (a full RX FIFO)


class Mlx5Function:
    """One emulated ConnectX PCI function (implements ``mlx5dev.interfaces.BarDevice``)."""

    def __init__(
        self,
        config: FunctionConfig,
        memory: GuestMemory,
        irq: InterruptSink,
        trace: CommandTrace | None = None,
        firmware: Firmware | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.memory = memory
        self.irq = irq
        self._own_trace = trace is None
        self.trace = trace if trace is not None else CommandTrace()
        self.faults = FaultTable()
        self._own_firmware = firmware is None
        self.firmware = firmware if firmware is not None else Firmware(
            config.fw_version, fw_reset_supported=config.fw_reset_supported, sync_reset=config.sync_reset)
        exec_to = encode_timeout(config.cmd_timeout_ms) if config.cmd_timeout_ms else 0
        init_to = encode_timeout(2000) if config.cmd_timeout_ms else 0
        self.iseg = InitSegment(self.firmware, self._cmd_doorbell, exec_to, init_to,
                                on_nic_interface=lambda value: self.firmware.nic_interface_written(self, value))
        self._sq_half: dict[int, bytes] = {}
        self._cq_half: bytes | None = None
        self.cq_doorbells = 0
        self.wire: Callable[[bytes], None] | None = None  # where sent frames go (the card's cable)
        self.rx_backlog_drops = 0
        self.ignored_while_halted = 0
        self._closed = False
        self._start()
        self.firmware.attach(self)

    def _start(self) -> None:
        self.state = DeviceState(self.config, self.memory, self.irq, self.trace, self.firmware, self)
        self.worker = Worker(f"mlx5-{self.config.name}")
        self.cmdq = CommandQueue(self.state, self.worker, self.faults, lambda: self.iseg.cmdq_addr)

    # -- BarDevice --------------------------------------------------------------------------
    def mmio_read(self, offset: int, size: int) -> bytes:
        if offset >= 0 and offset + size <= ISEG_PAGES * PAGE:
            return self.iseg.read(offset, size)
        return bytes(size)  # UAR pages are write-only doorbells; reads return 0

    def mmio_write(self, offset: int, data: bytes) -> None:
        if 0 <= offset < ISEG_PAGES * PAGE:
            reason = self.iseg.write(offset, bytes(data))
            if reason:
                self._reject(reason)
            return
        page, inner = divmod(offset, PAGE)
        if self.state.objects.uars.find(page) is None:
            self._reject(f"write to BAR0 {offset:#x} (page {page} is not an allocated UAR)", size=len(data))
            return
        self._uar_write(page, inner, bytes(data))

    def reset(self, function_only: bool = False) -> None:
        """A PCI reset: stop the worker (queued work is dropped), forget every object.

        ``function_only`` (a function-level reset through DEVCTL) leaves the card's firmware alone, as
        PCIe FLR does: the health buffer, the health counter and the other function are untouched, and the
        function's NIC interface reads DISABLED until the driver programs the command queue again, as after
        a firmware reset. A driver still bound (6.1 has no ``reset_prepare``/``reset_done`` handlers) thus
        notices it as it notices a torn-down function: ``health.c: poll_health`` reports sensor
        NIC_DISABLED and its health recovery reloads the function. Otherwise (QEMU's system or bus reset)
        the whole card starts from power-on.
        """
        if function_only:
            self._restart("function-level reset", NicInterface.DISABLED)
            return
        self.firmware.cold_reset()
        self._restart("function reset")

    def firmware_reset(self) -> None:
        """The firmware reset this function (:mod:`.firmware`): every object and pending command is gone."""
        self._restart("firmware reset")

    def _restart(self, why: str, nic_interface: int = NicInterface.FULL_DRIVER) -> None:
        self.worker.stop()
        self.iseg.reset(nic_interface)
        self._sq_half.clear()
        self.trace.emit({"kind": "info", "function": self.config.name, "detail": why})
        if not self._closed:
            self._start()

    def halt(self, why: str) -> None:
        """The firmware stopped: queued and delayed work is dropped, nothing is written to the guest."""
        dropped = self.worker.clear()
        self.trace.emit({"kind": "info", "function": self.config.name, "detail": f"halted: {why}",
                         "dropped_jobs": dropped, "pending_slots": self.cmdq.pending_slots()})

    def set_nic_interface(self, value: int) -> None:
        self.iseg.set_nic_interface(value)

    def nic_interface(self) -> int:
        return self.iseg.nic_interface

    def post_sync_reset_event(self, state: SyncRstState) -> bool:
        """Queue a PCI_SYNC_FOR_FW_UPDATE event with ``state``; False if the driver did not subscribe
        (``pci_sync_for_fw_update_event`` not set in SET_HCA_CAP, or no EQ for GENERAL_EVENT)."""
        st = self.state
        with st.lock:
            enabled = CMD_HCA_CAP.get(st.caps_cur[Cap.GENERAL], "pci_sync_for_fw_update_event")
            subscribed = any(eq.handles(Event.GENERAL_EVENT) for eq in st.objects.eqs.values())
        if not (enabled and subscribed):
            return False
        data = bytearray(0x1C)
        data[3] = int(state)  # device.h: struct mlx5_eqe_sync_fw_update, sync_rst_state

        def post() -> None:
            with st.lock:
                posted = st.post_event(Event.GENERAL_EVENT, GeneralSubtype.PCI_SYNC_FOR_FW_UPDATE, bytes(data))
                st.trace.emit({"kind": "event", "function": self.name, "posted": posted,
                               "detail": f"sync reset {state.name}"})

        self.worker.submit(post)
        return True

    def close(self) -> None:
        self._closed = True
        self.worker.stop()
        if self._own_firmware:
            self.firmware.close()
        if self._own_trace:
            self.trace.close()

    # -- doorbells (transport thread: cheap, no DMA) ---------------------------------------
    def _reject(self, detail: str, **extra: Any) -> None:
        self.worker.submit(partial(self.state.reject, detail, **extra))

    def _cmd_doorbell(self, mask: int) -> None:
        if self.firmware.halted:
            self.ignored_while_halted += 1
            self._reject(f"command doorbell {mask:#x} ignored: the firmware is halted")
            return
        if self.iseg.nic_interface != NicInterface.FULL_DRIVER:
            self._reject(f"command doorbell {mask:#x} while nic_interface is {self.iseg.nic_interface}")
            return
        self.cmdq.doorbell(mask)

    def _uar_write(self, page: int, inner: int, data: bytes) -> None:
        if self.firmware.halted:
            self.ignored_while_halted += 1  # a halted firmware reads no doorbell (counted, not traced)
            return
        if inner in (EQ_DB_ARM, EQ_DB_NOARM) and len(data) == 4:
            value = int.from_bytes(data, "big")
            eq = self.state.objects.eqs.find(value >> 24)
            if eq is None:
                self._reject(f"EQ doorbell for unknown eqn {value >> 24:#x}", page=page)
            else:
                eq.set_consumer(value & 0xFFFFFF, arm=inner == EQ_DB_ARM)
            return
        if inner in (CQ_DB, CQ_DB + 4):
            self._cq_doorbell_bytes(inner, data)
            return
        if inner >= BF_FIRST and inner % 0x100 in (0, 4):
            self._sq_doorbell_bytes(offset=page * PAGE + inner, data=data)
            return
        self._reject(f"UAR {page} write at +{inner:#x} size {len(data)} not understood")

    def _sq_doorbell_bytes(self, offset: int, data: bytes) -> None:
        """Assemble the 8-byte SQ doorbell (one 64-bit write, or two 32-bit halves in order)."""
        if offset % 0x100 == 0 and len(data) >= 8:
            self.worker.submit(partial(self._sq_doorbell, data[:8]))
        elif offset % 0x100 == 0 and len(data) == 4:
            self._sq_half[offset] = data
        elif offset % 0x100 == 4 and len(data) == 4 and (offset - 4) in self._sq_half:
            self.worker.submit(partial(self._sq_doorbell, self._sq_half.pop(offset - 4) + data))
        else:
            self._reject(f"SQ doorbell write at {offset:#x} size {len(data)} not understood")

    def _cq_doorbell_bytes(self, inner: int, data: bytes) -> None:
        """Assemble the 8-byte CQ arm doorbell (one 64-bit write, or two 32-bit halves in order)."""
        if inner == CQ_DB and len(data) >= 8:
            doorbell = data[:8]
        elif inner == CQ_DB and len(data) == 4:
            self._cq_half = data
            return
        elif inner == CQ_DB + 4 and len(data) == 4 and self._cq_half is not None:
            doorbell, self._cq_half = self._cq_half + data, None
        else:
            self._reject(f"CQ doorbell write at +{inner:#x} size {len(data)} not understood")
            return
        self.cq_doorbells += 1
        self.worker.submit(partial(cq_arm_doorbell, self.state, doorbell))

    def _sq_doorbell(self, doorbell: bytes) -> None:
        """Run one SQ doorbell's WQEs (on the worker) and put the frames on the wire."""
        result = tx.sq_doorbell(self.state, doorbell)
        for frame in result.frames:
            self.transmit(frame)

    def transmit(self, frame: bytes) -> None:
        """A frame leaves the port: to the cable if the link is up, else it is lost (counted)."""
        if frame[:6] == self.state.port.mac:  # the vport's own address: looped back (mlx5e selftest)
            self.receive(frame)
        elif not self.state.port.oper_up:
            self.state.traffic.drop("sent while the link was down")
        elif self.wire is None:
            self.state.traffic.drop("sent on a port with no cable")
        else:
            self.wire(frame)

    def receive(self, frame: bytes) -> None:
        """A frame arrives from the cable (any thread): queued for the worker, dropped if it is backed up."""
        if self._closed or self.worker.pending() >= RX_BACKLOG:
            self.rx_backlog_drops += 1
            return
        self.worker.submit(partial(rx.deliver, self.state, frame))

    # -- control API ------------------------------------------------------------------------
    def set_link(self, up: bool) -> None:
        """Plug / unplug the cable; posts a PORT_CHANGE event if the operational state changes."""
        old, new = self.state.port.set_link(up)
        if old != new:
            self.worker.submit(partial(self._post_port_change, new))

    def set_speed(self, mbps: int) -> None:
        """Change the negotiated speed; posts a PORT_CHANGE event with the current state."""
        self.state.port.set_speed(mbps)
        self.worker.submit(partial(self._post_port_change, None))

    def _post_port_change(self, up: bool | None) -> None:
        with self.state.lock:
            self.state.post_port_change(self.state.port.oper_up if up is None else up)

    def add_fault(
        self,
        opcode: int | None = None,
        *,
        register_id: int | None = None,
        delay_ms: float = 0.0,
        status: int | None = None,
        syndrome: int = 0xE50F0000,
        drop: bool = False,
        hold: bool = False,
        count: int | None = None,
        corrupt_field: str | None = None,
        corrupt_value: int = 0,
    ) -> int:
        """Add a fault rule (see :mod:`.faults`); returns its id for ``remove_fault``."""
        return self.faults.add(Fault(opcode, register_id, delay_ms, status, syndrome, drop, hold=hold,
                                     corrupt_field=corrupt_field, corrupt_value=corrupt_value, count=count))

    def release_held(self) -> int:
        """Complete the commands a ``hold`` fault parked; returns how many."""
        return self.cmdq.release_held()

    def remove_fault(self, fault_id: int) -> bool:
        return self.faults.remove(fault_id)

    def clear_faults(self) -> None:
        self.faults.clear()

    def set_health(
        self,
        synd: int | None = None,
        ext_synd: int | None = None,
        rfr: bool | None = None,
        severity: int | None = None,
        fw_ver_dead: bool | None = None,
        counter_frozen: bool | None = None,
    ) -> None:
        """Health-buffer fault injection: a syndrome (with ``rfr`` it is fatal for the driver),
        a dead ``fw_ver`` (reads 0xffffffff), or a frozen health counter (miss reports)."""
        changes = {k: v for k, v in locals().items() if k != "self" and v is not None}
        self.firmware.set_health(**changes)

    def clear_health(self) -> None:
        self.firmware.clear_health()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until the worker has nothing queued or running (delayed faults count as queued)."""
        return self.worker.idle(timeout)

    def status(self) -> dict[str, Any]:
        st = self.state
        with st.lock:
            hca, port = st.hca, st.port
            phase = "initialized" if hca.initialized else "enabled" if hca.enabled else "disabled"
            return {
                "function": self.config.name,
                "state": phase,
                "mode": "events" if st.cmd_eq() is not None else "polling",
                "nic_interface": self.iseg.nic_interface,
                "health_counter_reads": self.iseg.health_counter_reads,
                "cmdq_addr": self.iseg.cmdq_addr,
                "issi": hca.issi,
                "driver_version": hca.driver_version,
                "commands_executed": self.cmdq.executed,
                "delivery_errors": self.cmdq.delivery_errors,
                "pending_slots": self.cmdq.pending_slots(),
                "held_commands": self.cmdq.held(),
                "objects": st.objects.counts(),
                "events_posted": dict(st.events_posted),
                "link_up": port.link_up,
                "admin_up": port.admin_up,
                "oper_up": port.oper_up,
                "speed_mbps": port.speed_mbps,
                "mac": ":".join(f"{b:02x}" for b in port.mac),
                "mtu": st.vport.mtu,
                "caps": {
                    "log_max_eq": self.config.log_max_eq,
                    "num_msix": self.config.num_msix,
                    "fast_teardown": self.config.fast_teardown,
                    "force_teardown": self.config.force_teardown,
                    "sync_reset": self.config.sync_reset,
                    "fw_reset_supported": self.config.fw_reset_supported,
                },
                "given_pages": len(hca.given_pages),
                "health": vars(self.iseg.health).copy(),
                "firmware": self.firmware.status(),
                "ignored_while_halted": self.ignored_while_halted,
                "traffic": {**st.traffic.snapshot(), "rx_backlog_drops": self.rx_backlog_drops},
                "faults": self.faults.list(),
                "cap_types": sorted(Cap(t).name for t in st.caps_max),
            }

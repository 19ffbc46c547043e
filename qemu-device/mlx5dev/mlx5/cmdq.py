"""The command queue: 32 slots of 64 bytes in guest memory, rung through the iseg doorbell.

Life of a command. The driver's side is ``drivers/net/ethernet/mellanox/mlx5/core/cmd.c``:
``cmd_work_handler`` fills the entry, sets ``status_own`` to ``CMD_OWNER_HW``, and after a ``wmb()`` writes
``1 << slot`` to the iseg doorbell; in polling mode ``poll_timeout`` spins until the ownership bit clears;
``mlx5_cmd_comp_handler`` then copies the 16 inline output bytes and reads the delivery status
(``status_own >> 1``). Here:

1. ``doorbell()`` (transport thread): each bit marks its slot pending and queues a fetch job.
   A bit for a slot that is still pending is refused (traced); nothing else happens here.
2. fetch (worker): read the entry; a slot not owned by HW (``status_own`` bit 0 clear) is
   refused. Consume a matching fault. Read the input chain and validate the output chain;
   chain problems complete the command with a delivery error.
3. execute (worker, possibly later if a fault delays it): run the handler, write the output
   (blocks first, then the 16 inline bytes), release the slot, then write ``status_own`` with
   the ownership bit clear, and only then, in events mode, post the CMD EQE.

Events-mode rules enforced here: a slot is completed at most once and only while pending; a CMD
EQE is posted only if a cmd EQ existed before the command and still exists after it, and never for
the CREATE_EQ that creates it, the DESTROY_EQ that destroys it, or a TEARDOWN_HCA FORCE_CLOSE (all
three are polled by the driver). Why, in the 6.1 source: ``cmd.c: mlx5_cmd_comp_handler`` handles an
EQE for a slot that is no longer pending ("Command completion arrived after timeout") by dropping one
more reference on ``cmd->ent_arr[i]``, so a stray or repeated EQE frees, or uses after free, the
driver's command entry; ``eq.c: create_async_eqs`` creates the cmd EQ before ``mlx5_cmd_use_events``;
``eq.c: destroy_async_eqs`` calls ``mlx5_cmd_use_polling`` before destroying it; and
``fw.c: mlx5_cmd_force_teardown_hca`` uses ``mlx5_cmd_exec_polling``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from ..interfaces import DMAError
from . import dispatcher, mailbox
from .consts import Delivery, Op, Reg, Status, name_of
from .dispatcher import Reply, Request
from .faults import Fault, FaultTable
from .ifc.cmds import ACCESS_REGISTER_IN, CMD_IN, CMD_OUT, DESTROY_EQ_IN, TEARDOWN_HCA_IN
from .ifc.hw import CMD_LAYOUT
from .iseg import LOG_CMDQ_SIZE, LOG_CMDQ_STRIDE
from .state import DeviceState
from .worker import Worker

log = logging.getLogger("mlx5dev.mlx5")

SLOTS = 1 << LOG_CMDQ_SIZE
STRIDE = 1 << LOG_CMDQ_STRIDE
PCI_CMD_XPORT = 7
TEARDOWN_FORCE_CLOSE = 1
_OUT = CMD_LAYOUT.field("out").byte
_STATUS_OWN = CMD_LAYOUT.field("status_own").byte


def wants_cmd_eqe(dev: DeviceState, opcode: int, inp: bytes) -> bool:
    """Whether this command's completion goes through the cmd EQ (checked before it runs)."""
    cmd_eq = dev.cmd_eq()
    if cmd_eq is None:
        return False
    # (the CREATE_EQ that creates the cmd EQ is covered by the line above: no cmd EQ exists before it)
    if opcode == Op.DESTROY_EQ:
        return DESTROY_EQ_IN.get(inp, "eq_number") != cmd_eq.eqn
    if opcode == Op.TEARDOWN_HCA:
        return TEARDOWN_HCA_IN.get(inp, "profile") != TEARDOWN_FORCE_CLOSE
    return True


class CommandQueue:
    def __init__(
        self,
        dev: DeviceState,
        worker: Worker,
        faults: FaultTable,
        base: Callable[[], int],
    ) -> None:
        self.dev = dev
        self.worker = worker
        self.faults = faults
        self._base = base
        self._lock = threading.Lock()
        self._pending: dict[int, int] = {}  # slot -> doorbell time (monotonic ns)
        self._held: list[Callable[[], None]] = []  # commands a "hold" fault parked, in arrival order
        self.executed = 0
        self.delivery_errors = 0

    # -- transport thread -------------------------------------------------------------------
    def doorbell(self, mask: int) -> None:
        now = time.monotonic_ns()
        base = self._base()
        for slot in range(SLOTS):
            if not (mask >> slot) & 1:
                continue
            with self._lock:
                busy = slot in self._pending
                if not busy:
                    self._pending[slot] = now
            if busy:
                self.worker.submit(
                    partial(self.dev.reject, f"doorbell for slot {slot} still executing", slot=slot)
                )
            else:
                self.worker.submit(partial(self._fetch, slot, base, now))

    def release_held(self) -> int:
        """Execute and complete every held command now (in arrival order); returns how many."""
        with self._lock:
            held, self._held = self._held, []
        for job in held:
            self.worker.submit(job)
        return len(held)

    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def pending_slots(self) -> list[int]:
        with self._lock:
            return sorted(self._pending)

    def _release(self, slot: int) -> None:
        with self._lock:
            self._pending.pop(slot, None)

    # -- worker -----------------------------------------------------------------------------
    def _fetch(self, slot: int, base: int, t_db: int) -> None:
        dev = self.dev
        mem = dev.memory
        if base == 0:
            self._release(slot)
            dev.reject(f"doorbell for slot {slot} before the command queue address was set", slot=slot)
            return
        entry = base + slot * STRIDE
        try:
            raw = mem.read(entry, STRIDE)
        except DMAError as e:
            self._release(slot)
            dev.reject(f"slot {slot}: DMA error reading entry at {entry:#x}: {e}", slot=slot)
            return
        if not raw[_STATUS_OWN] & 1:
            self._release(slot)
            dev.reject(f"doorbell for idle slot {slot} (status_own {raw[_STATUS_OWN]:#x})", slot=slot)
            return
        inline = CMD_LAYOUT.get_bytes(raw, "in")
        inlen = CMD_LAYOUT.get(raw, "inlen")
        outlen = CMD_LAYOUT.get(raw, "outlen")
        opcode = CMD_IN.get(inline, "opcode")
        reg_id = ACCESS_REGISTER_IN.get(inline, "register_id") if opcode == Op.ACCESS_REG else None
        info: dict[str, Any] = {
            "slot": slot,
            "opcode": opcode,
            "op": name_of(Op, opcode),
            "op_mod": CMD_IN.get(inline, "op_mod"),
            "inlen": inlen,
            "outlen": outlen,
            "token": CMD_LAYOUT.get(raw, "token"),
            "t_doorbell_ns": t_db,
        }
        if reg_id is not None:
            info.update(reg_id=reg_id, reg=name_of(Reg, reg_id))
        fault = self.faults.take(opcode, reg_id)
        if fault is not None:
            info["fault"] = fault.describe()
        try:
            if CMD_LAYOUT.get(raw, "type") != PCI_CMD_XPORT:
                raise mailbox.ChainError(Delivery.CMD_DESCR_ERR, f"entry type {raw[0]} is not PCI_CMD_XPORT")
            inp = mailbox.read_input(mem, inline, CMD_LAYOUT.get(raw, "in_ptr"), inlen)
            blocks = mailbox.output_blocks(mem, CMD_LAYOUT.get(raw, "out_ptr"), outlen)
        except mailbox.ChainError as e:
            self._deliver_error(entry, slot, e.delivery, e.detail, inline, info)
            return
        req = Request(slot, opcode, info["op_mod"], inp, inlen, outlen)
        if fault is not None and fault.drop:
            dev.trace.emit(
                {"kind": "cmd", "function": dev.name, **info, "detail": "dropped by fault: never completed"}
            )
            return  # the slot stays pending: the driver times out, as with a hung firmware
        delay_ns = int(fault.delay_ms * 1e6) if fault is not None else 0
        job = partial(self._execute, entry, blocks, req, fault, info)
        if fault is not None and fault.hold:
            with self._lock:
                self._held.append(job)
            dev.trace.emit({"kind": "info", "function": dev.name, **info, "detail": "held by fault"})
            return
        if delay_ns:
            self.worker.submit(job, delay_ns)
        else:
            job()

    def _execute(
        self, entry: int, blocks: list[int], req: Request, fault: Fault | None, info: dict[str, Any]
    ) -> None:
        dev = self.dev
        with dev.lock:
            eqe = wants_cmd_eqe(dev, req.opcode, req.inp)
            if fault is not None and fault.status is not None:
                out = bytearray(max(req.outlen, CMD_OUT.size))
                reply = dispatcher.fail(out, fault.status & 0xFF, fault.syndrome, "failed by fault injection")
            else:
                reply = dispatcher.execute(dev, req)
                if fault is not None and fault.corrupt_field is not None and reply.status == Status.OK:
                    dispatcher.REGISTRY[req.opcode].out.set(reply.out, fault.corrupt_field, fault.corrupt_value)
                    reply.detail = f"{reply.detail}; {fault.corrupt_field} corrupted to {fault.corrupt_value:#x}"
            dev.commands += 1
            self.executed += 1
            self._complete(entry, blocks, req, reply, eqe and reply.eqe_allowed, info)

    def _complete(
        self, entry: int, blocks: list[int], req: Request, reply: Reply, eqe: bool, info: dict[str, Any]
    ) -> None:
        dev = self.dev
        mem = dev.memory
        out = bytes(reply.out[: req.outlen]).ljust(max(req.outlen, mailbox.INLINE), b"\0")
        delivery = Delivery.OK
        try:
            mailbox.write_output(mem, blocks, out)
            mem.write(entry + _OUT, out[: mailbox.INLINE])
        except DMAError as e:
            delivery = Delivery.OUT_PTR_ALIGN_ERR
            reply.detail = f"{reply.detail}; DMA error writing output: {e}".lstrip("; ")
        posted = self._hand_back(entry, req.slot, delivery, eqe, info)
        for fn in reply.after:
            try:
                fn()
            except Exception as e:  # a bug in a post-completion action must not lose the trace line
                log.exception("post-completion action of %s failed", info["op"])
                reply.detail = f"{reply.detail}; post-completion action failed: {e!r}".lstrip("; ")
        extra = {"reg_write": reply.extra["reg_write"]} if "reg_write" in reply.extra else {}
        self._trace(info, reply.status, reply.syndrome, delivery, posted, reply.detail, extra)

    def _deliver_error(
        self, entry: int, slot: int, delivery: Delivery, detail: str, inline: bytes, info: dict[str, Any]
    ) -> None:
        with self.dev.lock:
            eqe = wants_cmd_eqe(self.dev, info["opcode"], inline)
            self.delivery_errors += 1
            posted = self._hand_back(entry, slot, delivery, eqe, info)
            self._trace(info, None, None, delivery, posted, detail, {})

    def _hand_back(self, entry: int, slot: int, delivery: Delivery, eqe: bool, info: dict[str, Any]) -> bool:
        """Release the slot, give ownership back, then post the CMD EQE. Returns whether an EQE went out."""
        self._release(slot)  # before ownership flips: the driver may reuse the slot at once
        try:
            self.dev.memory.write(entry + _STATUS_OWN, bytes([(delivery << 1) & 0xFE]))
        except DMAError as e:
            info["detail_dma"] = f"DMA error writing status_own: {e}"
            return False
        return eqe and self.dev.post_cmd_completion(1 << slot)

    def _trace(
        self,
        info: dict[str, Any],
        status: int | None,
        syndrome: int | None,
        delivery: Delivery,
        eqe: bool,
        detail: str,
        extra: dict[str, Any],
    ) -> None:
        t_done = time.monotonic_ns()
        rec: dict[str, Any] = {"kind": "cmd", "function": self.dev.name, **info, **extra}
        if status is not None:
            rec.update(status=int(status), status_name=name_of(Status, status), syndrome=syndrome)
        rec.update(
            delivery=int(delivery),
            delivery_name=delivery.name,
            eqe=eqe,
            t_done_ns=t_done,
            latency_us=round((t_done - info["t_doorbell_ns"]) / 1000, 1),
        )
        if detail:
            rec["detail"] = detail
        self.dev.trace.emit(rec)

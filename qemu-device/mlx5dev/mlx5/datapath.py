"""The minimal data path (notes §3.4): every SQ doorbell is completed at once.

The doorbell (UAR + 0x800, 64-bit) is the first 8 bytes of the last posted WQE's control
segment: ``opmod_idx_opcode`` (BE32, wqe index << 8 | opcode) and ``qpn_ds`` (BE32, sqn << 8 | ds).
One requester CQE whose ``wqe_counter`` is that WQE index completes every WQE up to it (mlx5e
walks its SQ from its consumer counter to ``wqe_counter``), so nothing is read from the SQ buffer.
The CQE goes to the SQ's CQ, then a COMP EQE naming the CQ to the CQ's EQ, then its vector fires:
this is what schedules NAPI after the NOP mlx5e posts when a channel opens, and what keeps the
TX watchdog quiet if the guest sends packets (the packets themselves are dropped).
"""

from __future__ import annotations

from ..interfaces import DMAError
from .consts import Event, QueueState
from .ifc.hw import WQE_CTRL
from .state import DeviceState


def sq_doorbell(dev: DeviceState, doorbell: bytes) -> None:
    """Complete the WQEs announced by one SQ doorbell (runs on the worker)."""
    sqn = WQE_CTRL.get(doorbell, "qpn")
    wqe_index = WQE_CTRL.get(doorbell, "wqe_index")
    with dev.lock:
        sq = dev.objects.sqs.find(sqn)
        if sq is None:
            dev.reject(f"SQ doorbell for unknown sqn {sqn:#x}", doorbell=doorbell.hex())
            return
        if sq.state != QueueState.RDY:
            dev.reject(f"SQ doorbell for sqn {sqn:#x} in state {QueueState(sq.state).name}: ignored")
            return
        cq = dev.objects.cqs.find(sq.cqn)
        eq = dev.objects.eqs.find(cq.eqn) if cq else None
        if cq is None or eq is None:
            dev.reject(f"SQ {sqn:#x}: CQ {sq.cqn:#x} or its EQ is gone")
            return
        try:
            ok = cq.post(dev.memory, wqe_index, sqn)
        except DMAError as e:
            dev.reject(f"CQ {cq.cqn:#x}: DMA error writing CQE: {e}")
            return
        if not ok:
            dev.reject(f"CQ {cq.cqn:#x} full: completion of SQ {sqn:#x} wqe {wqe_index} dropped")
            return
        data = bytearray(0x1C)
        data[0x18:0x1C] = (cq.cqn & 0xFFFFFF).to_bytes(4, "big")  # data.comp.cqn at EQE 0x38
        dev.post_eqe(eq, Event.COMP, 0, bytes(data))

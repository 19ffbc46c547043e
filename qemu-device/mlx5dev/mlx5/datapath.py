"""The minimal data path: every SQ doorbell is completed at once.

The doorbell (UAR + 0x800, 64-bit) is the first 8 bytes of the last posted WQE's control
segment: ``opmod_idx_opcode`` (BE32, wqe index << 8 | opcode) and ``qpn_ds`` (BE32, sqn << 8 | ds).
One requester CQE whose ``wqe_counter`` is that WQE index completes every WQE up to it (mlx5e
walks its SQ from its consumer counter to ``wqe_counter``), so nothing is read from the SQ buffer.
The CQE goes to the SQ's CQ, then a COMP EQE naming the CQ to the CQ's EQ, then its vector fires:
this is what schedules NAPI after the NOP mlx5e posts when a channel opens, and what keeps the
TX watchdog quiet if the guest sends packets (the packets themselves are dropped).

The driver code this answers (under ``drivers/net/ethernet/mellanox/mlx5/core/``): the doorbell write is
``en/txrx.h: mlx5e_notify_hw`` (``mlx5_write64`` of the control segment to ``sq->uar_map``, the bfreg
at ``MLX5_BF_OFFSET`` 0x800 from ``uar.c: map_offset``); the CQE walk is ``en_tx.c: mlx5e_poll_tx_cq`` and
``en_rx.c: mlx5e_poll_ico_cq``; the COMP EQE is read by ``eq.c: mlx5_eq_comp_int`` (``data.comp.cqn``);
the NOP is ``en_txrx.c: mlx5e_trigger_irq``, posted by ``en_main.c: mlx5e_activate_channel`` through
``mlx5e_trigger_napi_icosq``. Without its completion, ``en_main.c: mlx5e_activate_priv_channels`` waits in
``mlx5e_wait_channels_min_rx_wqes`` for ``MLX5E_RQ_WQES_TIMEOUT`` (20 s) on every ifup, then carries on.
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

"""Completion events: the COMP EQE that tells the driver a CQ has new CQEs, when the CQ is armed."""

from __future__ import annotations

from ..consts import Event
from ..cq import CompletionQueue
from ..state import DeviceState


def notify(dev: DeviceState, cq: CompletionQueue) -> None:
    """Raise the CQ's completion event if it is armed (``eq.c: mlx5_eq_comp_int`` reads ``data.comp.cqn``)."""
    if not cq.take_event():
        return
    eq = dev.objects.eqs.find(cq.eqn)
    if eq is None:
        dev.reject(f"CQ {cq.cqn:#x}: its EQ {cq.eqn:#x} is gone, completion event not raised")
        return
    data = bytearray(0x1C)
    data[0x18:0x1C] = (cq.cqn & 0xFFFFFF).to_bytes(4, "big")  # data.comp.cqn at EQE 0x38
    dev.post_eqe(eq, Event.COMP, 0, bytes(data))


def cq_arm_doorbell(dev: DeviceState, doorbell: bytes) -> None:
    """The CQ arm doorbell (UAR + 0x20: ``sn << 28 | cmd | ci``, then the CQN; runs on the worker)."""
    word0, cqn = int.from_bytes(doorbell[:4], "big"), int.from_bytes(doorbell[4:8], "big") & 0xFFFFFF
    with dev.lock:
        cq = dev.objects.cqs.find(cqn)
        if cq is None:
            dev.reject(f"CQ arm doorbell for unknown cqn {cqn:#x}", doorbell=doorbell.hex())
            return
        if cq.arm(word0 & 0xFFFFFF):
            notify(dev, cq)

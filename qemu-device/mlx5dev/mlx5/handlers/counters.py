"""Queue counters (Q counters): ALLOC / DEALLOC / QUERY_Q_COUNTER. ``out_of_buffer`` counts frames
that found no posted receive WQE on an RQ naming the counter (``datapath/rx.py``)."""

from __future__ import annotations

from ..consts import Op
from ..dispatcher import Ctx, handler
from ..ifc import cmds as c
from ..objects import QCounter


@handler(Op.ALLOC_Q_COUNTER, c.CMD_IN, c.ALLOC_Q_COUNTER_OUT)
def alloc_q_counter(ctx: Ctx) -> None:
    ctx.put("counter_set_id", ctx.dev.objects.q_counters.add(QCounter()))


@handler(Op.DEALLOC_Q_COUNTER, c.DEALLOC_Q_COUNTER_IN, c.CMD_OUT)
def dealloc_q_counter(ctx: Ctx) -> None:
    ctx.dev.objects.q_counters.remove(ctx.get("counter_set_id"))


@handler(Op.QUERY_Q_COUNTER, c.QUERY_Q_COUNTER_IN, c.QUERY_Q_COUNTER_OUT)
def query_q_counter(ctx: Ctx) -> None:
    counter = ctx.dev.objects.q_counters.get(ctx.get("counter_set_id"))
    ctx.put("out_of_buffer", counter.out_of_buffer & 0xFFFFFFFF)

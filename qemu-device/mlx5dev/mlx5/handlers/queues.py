"""Transport objects: SQ, RQ (with RST/RDY/ERR state), TIS, TIR and RQT."""

from __future__ import annotations

from ..consts import Cap, Op, QueueState, Status
from ..datapath.wq import WqRing
from ..dispatcher import Ctx, handler
from ..eq import pages_for
from ..errors import CmdError, Synd, bad_param
from ..ifc import cmds as c
from ..ifc.caps import CMD_HCA_CAP
from ..ifc.contexts import RQC, SQC
from ..objects import Opaque, Rqt, Table, WorkQueue
from .eq import read_pas

WQ_TYPE_CYCLIC = 1  # mlx5_ifc.h MLX5_WQ_TYPE_CYCLIC: the only ring type the card implements (no striding_rq)
MODIFY_RQ_VSD = 1 << 1  # mlx5_ifc.h MLX5_MODIFY_RQ_IN_MODIFY_BITMASK_VSD
MODIFY_RQ_COUNTER_SET_ID = 1 << 3

STATES = {int(s) for s in QueueState}


def _create_wq(ctx: Ctx, table: Table[WorkQueue], layout_ctx: str, what: str) -> int:
    cqn = ctx.get(f"{layout_ctx}.cqn")
    state = ctx.get(f"{layout_ctx}.state")
    ctx.dev.objects.cqs.get(cqn)  # bad resource if the CQ does not exist
    if state != QueueState.RST:
        raise bad_param(f"{what} must be created in RST, not state {state}")
    off = ctx.spec.inp.off(layout_ctx) if ctx.spec.inp else 0
    size = (SQC if what == "SQ" else RQC).size
    wq = WorkQueue(cqn, QueueState.RST, ctx.inp[off : off + size], _ring(ctx, f"{layout_ctx}.wq", what))
    if what == "RQ":
        wq.vlan_strip = not ctx.get(f"{layout_ctx}.vsd")
        wq.counter_set_id = ctx.get(f"{layout_ctx}.counter_set_id")
    qn = table.add(wq)
    ctx.note(f"{what.lower()}n {qn:#x} cqn {cqn:#x} {wq.ring.size}x{wq.ring.stride}B")
    return qn


def _ring(ctx: Ctx, wq: str, what: str) -> WqRing:
    """The queue's ring from its ``wq`` context and the ``pas[]`` after it (``wq.c: mlx5_wq_cyc_create``)."""
    if ctx.get(f"{wq}.wq_type") != WQ_TYPE_CYCLIC:
        raise bad_param(f"{what} wq_type {ctx.get(f'{wq}.wq_type')}: only cyclic rings are implemented")
    gen = ctx.dev.caps_cur[Cap.GENERAL]
    log_stride, log_size = ctx.get(f"{wq}.log_wq_stride"), ctx.get(f"{wq}.log_wq_sz")
    lo, hi = (("log_min_stride_sz_sq", "log_max_stride_sz_sq") if what == "SQ"
              else ("log_min_stride_sz_rq", "log_max_stride_sz_rq"))
    # mlx5e's receive rings have 16-byte strides (one data segment: en/params.c: mlx5e_build_rq_param)
    lo_value = 4 if what == "RQ" else CMD_HCA_CAP.get(gen, lo)
    if not lo_value <= log_stride <= CMD_HCA_CAP.get(gen, hi):
        raise bad_param(f"{what} log_wq_stride {log_stride}")
    if log_size > CMD_HCA_CAP.get(gen, "log_max_wq_sz"):
        raise bad_param(f"{what} log_wq_sz {log_size} > log_max_wq_sz")
    log_page = ctx.get(f"{wq}.log_wq_pg_sz")
    if log_page > 16:
        raise bad_param(f"{what} log_wq_pg_sz {log_page}")
    assert ctx.spec.inp is not None
    count = pages_for((1 << log_stride) << log_size, 4096 << log_page)
    pas = read_pas(ctx, ctx.spec.inp.off(f"{wq}.pas"), count)
    return WqRing(log_stride, log_size, log_page, pas, ctx.get(f"{wq}.dbr_addr"))


def _modify_wq(ctx: Ctx, table: Table[WorkQueue], qn: int, cur: int, layout_ctx: str) -> None:
    wq = table.get(qn)
    nxt = ctx.get(f"{layout_ctx}.state")
    if cur != wq.state:
        raise CmdError(
            Status.BAD_RES_STATE,
            Synd.BAD_STATE | ctx.req.opcode,
            f"{table.kind} {qn:#x} is in state {wq.state}, not {cur}",
        )
    if nxt not in STATES:
        raise bad_param(f"next state {nxt}")
    ctx.note(f"{table.kind} {qn:#x} {QueueState(cur).name}->{QueueState(nxt).name}")
    wq.state = nxt
    if nxt == QueueState.RST:
        wq.ci = 0


def _query_wq(ctx: Ctx, wq: WorkQueue, out_ctx: str) -> None:
    off = ctx.spec.out.off(out_ctx) if ctx.spec.out else 0
    ctx.out[off : off + len(wq.context)] = wq.context
    ctx.put(f"{out_ctx}.state", wq.state)


@handler(Op.CREATE_SQ, c.CREATE_SQ_IN, c.CREATE_SQ_OUT)
def create_sq(ctx: Ctx) -> None:
    ctx.put("sqn", _create_wq(ctx, ctx.dev.objects.sqs, "ctx", "SQ"))


@handler(Op.MODIFY_SQ, c.MODIFY_SQ_IN, c.CMD_OUT)
def modify_sq(ctx: Ctx) -> None:
    _modify_wq(ctx, ctx.dev.objects.sqs, ctx.get("sqn"), ctx.get("sq_state"), "ctx")


@handler(Op.DESTROY_SQ, c.DESTROY_SQ_IN, c.CMD_OUT)
def destroy_sq(ctx: Ctx) -> None:
    ctx.dev.objects.sqs.remove(ctx.get("sqn"))


@handler(Op.QUERY_SQ, c.QUERY_SQ_IN, c.QUERY_SQ_OUT)
def query_sq(ctx: Ctx) -> None:
    _query_wq(ctx, ctx.dev.objects.sqs.get(ctx.get("sqn")), "sq_context")


@handler(Op.CREATE_RQ, c.CREATE_RQ_IN, c.CREATE_RQ_OUT)
def create_rq(ctx: Ctx) -> None:
    ctx.put("rqn", _create_wq(ctx, ctx.dev.objects.rqs, "ctx", "RQ"))


@handler(Op.MODIFY_RQ, c.MODIFY_RQ_IN, c.CMD_OUT)
def modify_rq(ctx: Ctx) -> None:
    _modify_wq(ctx, ctx.dev.objects.rqs, ctx.get("rqn"), ctx.get("rq_state"), "ctx")
    rq = ctx.dev.objects.rqs.get(ctx.get("rqn"))
    if ctx.get("modify_bitmask") & MODIFY_RQ_VSD:  # ethtool -K rxvlan (en_main.c: mlx5e_modify_rq_vsd)
        rq.vlan_strip = not ctx.get("ctx.vsd")
    if ctx.get("modify_bitmask") & MODIFY_RQ_COUNTER_SET_ID:
        rq.counter_set_id = ctx.get("ctx.counter_set_id")


@handler(Op.DESTROY_RQ, c.DESTROY_RQ_IN, c.CMD_OUT)
def destroy_rq(ctx: Ctx) -> None:
    objs = ctx.dev.objects
    rqn = ctx.get("rqn")
    objs.rqs.remove(rqn)
    users = [hex(n) for n, rqt in objs.rqts.items() if rqn in rqt.rqns]
    if users:
        ctx.note(f"RQTs still point at it: {users}")


@handler(Op.QUERY_RQ, c.QUERY_RQ_IN, c.QUERY_RQ_OUT)
def query_rq(ctx: Ctx) -> None:
    _query_wq(ctx, ctx.dev.objects.rqs.get(ctx.get("rqn")), "rq_context")


@handler(Op.CREATE_TIS, c.CREATE_TIS_IN, c.CREATE_TIS_OUT)
def create_tis(ctx: Ctx) -> None:
    ctx.put("tisn", ctx.dev.objects.tises.add(Opaque()))


@handler(Op.MODIFY_TIS, c.MODIFY_TIS_IN, c.CMD_OUT)
def modify_tis(ctx: Ctx) -> None:
    ctx.dev.objects.tises.get(ctx.get("tisn"))


@handler(Op.DESTROY_TIS, c.DESTROY_TIS_IN, c.CMD_OUT)
def destroy_tis(ctx: Ctx) -> None:
    ctx.dev.objects.tises.remove(ctx.get("tisn"))


@handler(Op.CREATE_TIR, c.CREATE_TIR_IN, c.CREATE_TIR_OUT)
def create_tir(ctx: Ctx) -> None:
    ctx.put("tirn", ctx.dev.objects.tirs.add(Opaque()))


@handler(Op.MODIFY_TIR, c.MODIFY_TIR_IN, c.CMD_OUT)
def modify_tir(ctx: Ctx) -> None:
    ctx.dev.objects.tirs.get(ctx.get("tirn"))


@handler(Op.DESTROY_TIR, c.DESTROY_TIR_IN, c.CMD_OUT)
def destroy_tir(ctx: Ctx) -> None:
    ctx.dev.objects.tirs.remove(ctx.get("tirn"))


def _rqt_entries(ctx: Ctx, ctx_name: str) -> Rqt:
    size = ctx.get(f"{ctx_name}.rqt_actual_size")
    max_size = ctx.get(f"{ctx_name}.rqt_max_size")
    if size > max(max_size, 1) and ctx.req.opcode == Op.CREATE_RQT:
        raise bad_param(f"rqt_actual_size {size} > rqt_max_size {max_size}")
    off = ctx.spec.inp.off(f"{ctx_name}.rq_num") if ctx.spec.inp else 0
    if off + 4 * size > ctx.req.inlen:
        raise CmdError(
            Status.BAD_INP_LEN, Synd.BAD_INPUT_LEN | ctx.req.opcode, f"{size} RQ numbers do not fit inlen"
        )
    rqns = [int.from_bytes(ctx.inp[off + 4 * i : off + 4 * i + 4], "big") & 0xFFFFFF for i in range(size)]
    missing = sorted({hex(n) for n in rqns if n not in ctx.dev.objects.rqs})
    if missing:
        raise CmdError(
            Status.BAD_RES, Synd.BAD_RESOURCE | ctx.req.opcode, f"RQT names unknown RQs {missing[:4]}"
        )
    return Rqt(size, rqns)


@handler(Op.CREATE_RQT, c.CREATE_RQT_IN, c.CREATE_RQT_OUT)
def create_rqt(ctx: Ctx) -> None:
    rqt = _rqt_entries(ctx, "rqt_context")
    ctx.put("rqtn", ctx.dev.objects.rqts.add(rqt))
    ctx.note(f"{rqt.actual_size} entries")


@handler(Op.MODIFY_RQT, c.MODIFY_RQT_IN, c.CMD_OUT)
def modify_rqt(ctx: Ctx) -> None:
    rqt = ctx.dev.objects.rqts.get(ctx.get("rqtn"))
    if ctx.get("bitmask") & 1:  # bitmask.rqn_list
        new = _rqt_entries(ctx, "ctx")
        rqt.rqns, rqt.actual_size = new.rqns, new.actual_size


@handler(Op.DESTROY_RQT, c.DESTROY_RQT_IN, c.CMD_OUT)
def destroy_rqt(ctx: Ctx) -> None:
    ctx.dev.objects.rqts.remove(ctx.get("rqtn"))

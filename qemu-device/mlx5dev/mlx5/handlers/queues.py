"""Transport objects: SQ, RQ (with RST/RDY/ERR state), TIS, TIR and RQT."""

from __future__ import annotations

from ..consts import Op, QueueState, Status
from ..dispatcher import Ctx, handler
from ..errors import CmdError, Synd, bad_param
from ..ifc import cmds as c
from ..ifc.contexts import RQC, SQC
from ..objects import Opaque, Rqt, Table, WorkQueue

STATES = {int(s) for s in QueueState}


def _create_wq(ctx: Ctx, table: Table[WorkQueue], layout_ctx: str, what: str) -> int:
    cqn = ctx.get(f"{layout_ctx}.cqn")
    state = ctx.get(f"{layout_ctx}.state")
    ctx.dev.objects.cqs.get(cqn)  # bad resource if the CQ does not exist
    if state != QueueState.RST:
        raise bad_param(f"{what} must be created in RST, not state {state}")
    off = ctx.spec.inp.off(layout_ctx) if ctx.spec.inp else 0
    size = (SQC if what == "SQ" else RQC).size
    qn = table.add(WorkQueue(cqn, QueueState.RST, ctx.inp[off : off + size]))
    ctx.note(f"{what.lower()}n {qn:#x} cqn {cqn:#x}")
    return qn


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

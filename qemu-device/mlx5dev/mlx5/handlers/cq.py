"""Completion queue commands: CREATE/DESTROY/MODIFY/QUERY_CQ."""

from __future__ import annotations

from ..consts import Cap, Op
from ..cq import CompletionQueue, cqe_stride
from ..dispatcher import Ctx, handler
from ..eq import ADAPTER_PAGE, pages_for
from ..errors import bad_param
from ..ifc import cmds as c
from ..ifc.caps import CMD_HCA_CAP
from .eq import read_pas

CQC = "cq_context."


@handler(Op.CREATE_CQ, c.CREATE_CQ_IN, c.CREATE_CQ_OUT)
def create_cq(ctx: Ctx) -> None:
    dev = ctx.dev
    log_size = ctx.get(CQC + "log_cq_size")
    log_page = ctx.get(CQC + "log_page_size")
    cqe_sz = ctx.get(CQC + "cqe_sz")
    eqn = ctx.get(CQC + "c_eqn_or_apu_element")
    if log_size > CMD_HCA_CAP.get(dev.caps_cur[Cap.GENERAL], "log_max_cq_sz"):
        raise bad_param(f"log_cq_size {log_size} too large")
    if cqe_sz > 2 or log_page > 16:
        raise bad_param(f"cqe_sz {cqe_sz} / log_page_size {log_page}")
    dev.objects.eqs.get(eqn)  # the completion EQ must exist (bad resource otherwise)
    pas = read_pas(
        ctx, c.CREATE_CQ_IN.off("pas"), pages_for(cqe_stride(cqe_sz) << log_size, ADAPTER_PAGE << log_page)
    )
    cq = CompletionQueue(0, log_size, cqe_sz, log_page, pas, eqn, ctx.get(CQC + "dbr_addr"))
    cq.cqn = dev.objects.cqs.add(cq)
    ctx.put("cqn", cq.cqn)
    ctx.note(f"cqn {cq.cqn:#x} eqn {eqn:#x} nent {cq.nent}")


@handler(Op.DESTROY_CQ, c.DESTROY_CQ_IN, c.CMD_OUT)
def destroy_cq(ctx: Ctx) -> None:
    objs = ctx.dev.objects
    cqn = ctx.get("cqn")
    objs.cqs.remove(cqn)
    users = [n for t in (objs.sqs, objs.rqs) for n, wq in t.items() if wq.cqn == cqn]
    if users:
        ctx.note(f"queues still attached: {[hex(u) for u in users]}")


@handler(Op.MODIFY_CQ, c.MODIFY_CQ_IN, c.CMD_OUT)
def modify_cq(ctx: Ctx) -> None:
    ctx.dev.objects.cqs.get(ctx.get("cqn"))  # moderation / resize settings are not modelled


@handler(Op.QUERY_CQ, c.QUERY_CQ_IN, c.QUERY_CQ_OUT)
def query_cq(ctx: Ctx) -> None:
    cq = ctx.dev.objects.cqs.get(ctx.get("cqn"))
    ctx.put(CQC + "log_cq_size", cq.log_size)
    ctx.put(CQC + "cqe_sz", cq.cqe_sz)
    ctx.put(CQC + "log_page_size", cq.log_page_size)
    ctx.put(CQC + "c_eqn_or_apu_element", cq.eqn)
    ctx.put(CQC + "producer_counter", cq.pi & 0xFFFFFF)
    ctx.put(CQC + "dbr_addr", cq.dbr_addr)

"""Event queue commands: CREATE_EQ, DESTROY_EQ, QUERY_EQ.

As the 6.1 driver issues them (``drivers/net/ethernet/mellanox/mlx5/core/eq.c``): ``create_map_eq`` builds
CREATE_EQ for the cmd, async and pages EQs (``create_async_eqs``, called from ``mlx5_load`` via
``mlx5_eq_table_create``) and for the completion EQs (``create_comp_eqs``); ``mlx5_cmd_destroy_eq`` sends
DESTROY_EQ; QUERY_EQ comes only from ``debugfs.c: eq_read_field``.
"""

from __future__ import annotations

from ..consts import Cap, Event, Op
from ..dispatcher import Ctx, handler
from ..eq import ADAPTER_PAGE, EQE_SIZE, EventQueue, pages_for
from ..errors import bad_param
from ..ifc import cmds as c
from ..ifc.caps import CMD_HCA_CAP

EQC = "eq_context_entry."
PAS_ENTRY = 8


def read_pas(ctx: Ctx, layout_off: int, count: int) -> list[int]:
    """``count`` page addresses from the input's pas[]; they must be present and page aligned."""
    if layout_off + count * PAS_ENTRY > ctx.req.inlen:
        raise bad_param(
            f"{count} pas entries needed, inlen {ctx.req.inlen:#x} has {(ctx.req.inlen - layout_off) // 8}"
        )
    pas = [int.from_bytes(ctx.inp[layout_off + 8 * i : layout_off + 8 * i + 8], "big") for i in range(count)]
    bad = [hex(p) for p in pas if p % ADAPTER_PAGE]
    if bad:
        raise bad_param(f"unaligned pas {bad[:4]}")
    return pas


@handler(Op.CREATE_EQ, c.CREATE_EQ_IN, c.CREATE_EQ_OUT)
def create_eq(ctx: Ctx) -> None:
    dev = ctx.dev
    log_size = ctx.get(EQC + "log_eq_size")
    log_page = ctx.get(EQC + "log_page_size")
    intr = ctx.get(EQC + "intr")
    uar = ctx.get(EQC + "uar_page")
    mask = ctx.get("event_bitmask")  # 4 BE64 words: word 0 (types 0..63) is the most significant
    mask = sum(((mask >> (64 * (3 - w))) & (2**64 - 1)) << (64 * w) for w in range(4))
    if log_size > CMD_HCA_CAP.get(dev.caps_cur[Cap.GENERAL], "log_max_eq_sz"):
        raise bad_param(f"log_eq_size {log_size} too large")
    if log_page > 16:
        raise bad_param(f"log_page_size {log_page}")
    if intr >= dev.config.num_msix:
        raise bad_param(f"intr {intr} >= {dev.config.num_msix} MSI-X vectors", intr)
    if uar not in dev.objects.uars:
        raise bad_param(f"uar_page {uar:#x} not allocated", uar)
    if (mask >> Event.CMD) & 1 and dev.cmd_eq() is not None:
        raise bad_param("a command EQ already exists")
    page_size = ADAPTER_PAGE << log_page
    pas = read_pas(ctx, c.CREATE_EQ_IN.off("pas"), pages_for(EQE_SIZE << log_size, page_size))
    eq = EventQueue(0, log_size, log_page, pas, intr, mask, uar)
    eq.eqn = dev.objects.eqs.add(eq)
    ctx.put("eq_number", eq.eqn)
    kinds = "cmd" if eq.handles(Event.CMD) else "async" if mask else "comp"
    ctx.note(f"eqn {eq.eqn:#x} {kinds} nent {eq.nent} intr {intr} mask {mask:#x}")


@handler(Op.DESTROY_EQ, c.DESTROY_EQ_IN, c.CMD_OUT)
def destroy_eq(ctx: Ctx) -> None:
    eqn = ctx.get("eq_number")
    eq = ctx.dev.objects.eqs.remove(eqn)
    users = [cq.cqn for cq in ctx.dev.objects.cqs.values() if cq.eqn == eqn]
    ctx.note(
        f"eqn {eqn:#x} posted {eq.posted} dropped {eq.dropped}"
        + (f"; CQs still attached {users}" if users else "")
    )


@handler(Op.QUERY_EQ, c.QUERY_EQ_IN, c.QUERY_EQ_OUT)
def query_eq(ctx: Ctx) -> None:
    eq = ctx.dev.objects.eqs.get(ctx.get("eq_number"))
    ctx.put(EQC + "log_eq_size", eq.log_size)
    ctx.put(EQC + "log_page_size", eq.log_page_size)
    ctx.put(EQC + "uar_page", eq.uar_page)
    ctx.put(EQC + "intr", eq.intr)
    ctx.put(EQC + "consumer_counter", eq.ci & 0xFFFFFF)
    ctx.put(EQC + "producer_counter", eq.pi & 0xFFFFFF)
    ctx.put("event_bitmask", eq.mask & (2**64 - 1))

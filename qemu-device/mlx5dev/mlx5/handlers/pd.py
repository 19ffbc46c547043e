"""Protection domains and transport domains."""

from __future__ import annotations

from ..consts import Op
from ..dispatcher import Ctx, handler
from ..ifc import cmds as c
from ..objects import Opaque


@handler(Op.ALLOC_PD, c.CMD_IN, c.ALLOC_PD_OUT)
def alloc_pd(ctx: Ctx) -> None:
    ctx.put("pd", ctx.dev.objects.pds.add(Opaque()))


@handler(Op.DEALLOC_PD, c.DEALLOC_PD_IN, c.CMD_OUT)
def dealloc_pd(ctx: Ctx) -> None:
    ctx.dev.objects.pds.remove(ctx.get("pd"))


@handler(Op.ALLOC_TRANSPORT_DOMAIN, c.CMD_IN, c.ALLOC_TRANSPORT_DOMAIN_OUT)
def alloc_transport_domain(ctx: Ctx) -> None:
    ctx.put("transport_domain", ctx.dev.objects.tds.add(Opaque()))


@handler(Op.DEALLOC_TRANSPORT_DOMAIN, c.DEALLOC_TRANSPORT_DOMAIN_IN, c.CMD_OUT)
def dealloc_transport_domain(ctx: Ctx) -> None:
    ctx.dev.objects.tds.remove(ctx.get("transport_domain"))

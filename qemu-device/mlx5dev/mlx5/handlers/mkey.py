"""Memory keys: CREATE_MKEY / DESTROY_MKEY (mlx5e's PA-mode mkey). Translation is not modelled."""

from __future__ import annotations

from ..consts import Op
from ..dispatcher import Ctx, handler
from ..ifc import cmds as c
from ..objects import Opaque


@handler(Op.CREATE_MKEY, c.CREATE_MKEY_IN, c.CREATE_MKEY_OUT)
def create_mkey(ctx: Ctx) -> None:
    ctx.put("mkey_index", ctx.dev.objects.mkeys.add(Opaque()))


@handler(Op.DESTROY_MKEY, c.DESTROY_MKEY_IN, c.CMD_OUT)
def destroy_mkey(ctx: Ctx) -> None:
    ctx.dev.objects.mkeys.remove(ctx.get("mkey_index"))

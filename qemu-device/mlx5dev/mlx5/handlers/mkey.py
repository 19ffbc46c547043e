"""Memory keys: CREATE_MKEY / DESTROY_MKEY. PA-mode keys (mlx5e's, ``en_common.c: mlx5e_create_mkey``)
translate data segment addresses in the data path; other access modes are kept but fault when used."""

from __future__ import annotations

from ..consts import Op
from ..datapath.wq import Mkey
from ..dispatcher import Ctx, handler
from ..ifc import cmds as c

MKC = "memory_key_mkey_entry."


@handler(Op.CREATE_MKEY, c.CREATE_MKEY_IN, c.CREATE_MKEY_OUT)
def create_mkey(ctx: Ctx) -> None:
    mkey = Mkey(
        index=0,
        key=ctx.get(MKC + "mkey_7_0"),
        pd=ctx.get(MKC + "pd"),
        access_mode=ctx.get(MKC + "access_mode_1_0"),
        start=ctx.get(MKC + "start_addr"),
        length=ctx.get(MKC + "len"),
        length64=bool(ctx.get(MKC + "length64")),
        local_read=bool(ctx.get(MKC + "lr")),
        local_write=bool(ctx.get(MKC + "lw")),
    )
    mkey.index = ctx.dev.objects.mkeys.add(mkey)
    ctx.put("mkey_index", mkey.index)
    ctx.note(f"lkey {mkey.lkey:#x} mode {mkey.access_mode}{' length64' if mkey.length64 else ''}")


@handler(Op.DESTROY_MKEY, c.DESTROY_MKEY_IN, c.CMD_OUT)
def destroy_mkey(ctx: Ctx) -> None:
    ctx.dev.objects.mkeys.remove(ctx.get("mkey_index"))

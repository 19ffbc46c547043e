"""ACCESS_REG (0x805): op_mod 0 writes, 1 reads a register; dispatch to ``mlx5/registers/``.

Unknown register ids fail with BAD_PARAM and syndrome ``Synd.BAD_REGISTER | register_id``.
The reply carries as much of the register as ``outlen`` has room for.
"""

from __future__ import annotations

from ..consts import Op, Reg, Status, name_of
from ..dispatcher import Ctx, Phase, handler
from ..errors import CmdError, Synd
from ..ifc import cmds as c
from ..registers import REGISTERS, RegCtx

REG_WRITE, REG_READ = 0, 1


@handler(Op.ACCESS_REG, c.ACCESS_REGISTER_IN, c.ACCESS_REGISTER_OUT, Phase.ENABLED)  # DTOR, HOST_ENDIANNESS
def access_reg(ctx: Ctx) -> None:
    reg_id = ctx.get("register_id")
    write = ctx.op_mod == REG_WRITE
    ctx.reply.extra["reg_write"] = write
    spec = REGISTERS.get(reg_id)
    if spec is None:
        raise CmdError(
            Status.BAD_PARAM, Synd.BAD_REGISTER | reg_id, f"register {name_of(Reg, reg_id)} not implemented"
        )
    if ctx.op_mod not in (REG_WRITE, REG_READ):
        raise CmdError(Status.BAD_PARAM, Synd.BAD_PARAM | reg_id, f"ACCESS_REG op_mod {ctx.op_mod}")
    off = c.ACCESS_REGISTER_IN.off("register_data")
    size = spec.layout.size
    data = ctx.inp[off : off + size].ljust(size, b"\0")
    rc = RegCtx(ctx.dev, spec.layout, data, bytearray(data), write, ctx.get("argument"))
    spec.fn(rc)
    out_off = c.ACCESS_REGISTER_OUT.off("register_data")
    room = max(0, ctx.req.outlen - out_off)
    ctx.out[out_off : out_off + min(room, size)] = rc.out[: min(room, size)]
    for fn in rc.after:
        ctx.after(fn)
    if rc.note:
        ctx.note(rc.note)

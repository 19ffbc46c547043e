"""HOST_ENDIANNESS (0x7004): written once at probe by a PF (main.c:768); failure is fatal."""

from __future__ import annotations

from ..consts import Reg
from ..ifc.regs import HOST_ENDIANNESS
from . import RegCtx, register


@register(Reg.HOST_ENDIANNESS, HOST_ENDIANNESS)
def host_endianness(rc: RegCtx) -> None:
    if rc.write:
        rc.dev.hca.host_endianness = rc.get("he")
    rc.put("he", rc.dev.hca.host_endianness)

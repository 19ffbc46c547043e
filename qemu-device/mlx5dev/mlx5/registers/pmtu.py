"""PMTU (0x5003): max / admin / oper MTU of the port (hardware MTU, L2 header included)."""

from __future__ import annotations

from ..consts import Reg
from ..errors import bad_param
from ..ifc.regs import PMTU
from . import RegCtx, register
from .ptys import check_port


@register(Reg.PMTU, PMTU)
def pmtu(rc: RegCtx) -> None:
    check_port(rc)
    port = rc.dev.port
    if rc.write:
        mtu = rc.get("admin_mtu")
        if not 64 <= mtu <= port.MAX_MTU:
            raise bad_param(f"admin_mtu {mtu} outside 64..{port.MAX_MTU}")
        port.admin_mtu = mtu
        rc.note = f"admin_mtu {mtu}"
    rc.put("max_mtu", port.MAX_MTU)
    rc.put("admin_mtu", port.admin_mtu)
    rc.put("oper_mtu", port.oper_mtu)

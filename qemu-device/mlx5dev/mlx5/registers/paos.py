"""PAOS (0x5006): port admin / oper status. A write with ``ase`` changes the admin state, and a
resulting change of the operational state posts a PORT_CHANGE event after the command completes."""

from __future__ import annotations

from ..consts import Reg
from ..errors import bad_param
from ..ifc.regs import PAOS
from ..port import PAOS_DOWN, PAOS_UP, PAOS_UP_ONCE
from . import RegCtx, register
from .ptys import check_port


@register(Reg.PAOS, PAOS)
def paos(rc: RegCtx) -> None:
    check_port(rc)
    port = rc.dev.port
    if rc.write and rc.get("ase"):
        status = rc.get("admin_status")
        if status not in (PAOS_UP, PAOS_DOWN, PAOS_UP_ONCE):
            raise bad_param(f"PAOS admin_status {status}")
        old, new = port.set_admin(status)
        rc.note = f"admin {'up' if port.admin_up else 'down'}"
        if old != new:
            rc.after.append(lambda: rc.dev.post_port_change(new))
    rc.put("admin_status", PAOS_UP if port.admin_up else PAOS_DOWN)
    rc.put("oper_status", PAOS_UP if port.oper_up else PAOS_DOWN)
    rc.put("ase", 0)

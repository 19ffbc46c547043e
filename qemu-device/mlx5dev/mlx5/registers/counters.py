"""Port counter and misc port registers answered generically: PPCNT (counters, always 0),
PFCC (pause / PFC, last written value), PPLM (FEC, last written value)."""

from __future__ import annotations

from ..consts import Reg
from ..ifc.regs import PFCC, PPCNT, PPLM
from . import RegCtx, register
from .ptys import check_port


@register(Reg.PPCNT, PPCNT)
def ppcnt(rc: RegCtx) -> None:
    check_port(rc)
    keep = {n: rc.get(n) for n in ("local_port", "pnat", "grp", "prio_tc")}
    rc.out[:] = bytes(len(rc.out))  # every counter group reads 0: no packets flow
    for n, v in keep.items():
        rc.put(n, v)


def _remembered(rc: RegCtx) -> None:
    """Reads return the last write (initially all zero but ``local_port``)."""
    check_port(rc)
    store = rc.dev.port.registers
    if rc.write:
        store[rc.layout.name] = bytes(rc.data)
    rc.out[:] = store.get(rc.layout.name, bytes(len(rc.out)))
    rc.put("local_port", 1)


register(Reg.PFCC, PFCC)(_remembered)
register(Reg.PPLM, PPLM)(_remembered)

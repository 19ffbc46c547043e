"""PCAM / MCAM / QCAM capability-mask registers: all features absent (the caps that gate them are 0)."""

from __future__ import annotations

from ..consts import Reg
from ..ifc.regs import MCAM, PCAM, QCAM
from . import RegCtx, register


def _no_features(rc: RegCtx) -> None:
    group = rc.get("feature_group"), rc.get("access_reg_group")
    rc.out[:] = bytes(len(rc.out))
    rc.put("feature_group", group[0])
    rc.put("access_reg_group", group[1])


register(Reg.PCAM, PCAM)(_no_features)
register(Reg.MCAM, MCAM)(_no_features)
register(Reg.QCAM, QCAM)(_no_features)

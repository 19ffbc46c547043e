"""MFRL (0x9028): management firmware reset level, the driver's side of a sync reset.

``fw_reset.c`` reads it (``mlx5_reg_mfrl_query``: which reset levels and types the firmware offers, and
the negotiation's ``reset_state``) and writes it three ways: ``pci_sync_for_fw_update_start`` with
reset level 3 to request a sync reset (``mlx5_fw_reset_set_reset_sync``, from ``devlink dev reload action
fw_activate``), and ``pci_sync_for_fw_update_resp`` 1 or 2 to ack or refuse a requested one
(``mlx5_fw_reset_set_reset_sync_ack`` / ``_nack``). The negotiation itself is the card's
(:mod:`mlx5dev.mlx5.firmware`).
"""

from __future__ import annotations

from ..consts import Reg
from ..errors import bad_param, bad_state
from ..ifc.regs import MFRL
from . import RegCtx, register

LEVEL_LIVE_PATCH, LEVEL_SYNC_PCI = 1 << 0, 1 << 3  # MLX5_MFRL_REG_RESET_LEVEL0 / LEVEL3
TYPE_FULL_CHIP = 1 << 0  # MLX5_MFRL_REG_RESET_TYPE_FULL_CHIP
RESP_ACK, RESP_NACK = 1, 2


@register(Reg.MFRL, MFRL)
def mfrl(rc: RegCtx) -> None:
    fw, fn = rc.dev.firmware, rc.dev.owner
    if rc.write:
        if fn is None:
            raise bad_state("MFRL write on a function without a card")
        level = rc.get("reset_level")
        if rc.get("pci_sync_for_fw_update_start"):
            if not level & LEVEL_SYNC_PCI:
                raise bad_param(f"MFRL sync reset start with reset level {level:#x}")
            if not fw.sync_reset_request(fn.name):
                raise bad_state(f"sync reset not possible now (state {fw.mfrl_state().name})")
            rc.note = "sync reset requested"
        elif (resp := rc.get("pci_sync_for_fw_update_resp")) in (RESP_ACK, RESP_NACK):
            ack = resp == RESP_ACK
            rc.after.append(lambda: fw.sync_reset_response(fn, ack))
            rc.note = "sync reset ack" if ack else "sync reset nack"
        elif level & LEVEL_LIVE_PATCH:
            raise bad_param("MFRL live patch (reset level 0): not offered by this firmware")
        else:
            raise bad_param(f"MFRL write without a request (level {level:#x})")
    rc.out[:] = bytes(len(rc.out))
    rc.put("reset_level", LEVEL_SYNC_PCI if fw.sync_reset_supported else 0)
    rc.put("reset_type", TYPE_FULL_CHIP)
    rc.put("reset_state", int(fw.mfrl_state()))

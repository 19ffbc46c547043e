"""DTOR (0xC00E): default timeouts. Only read when iseg ``cmd_q_init_to`` is non-zero, i.e. when
``FunctionConfig.cmd_timeout_ms`` is set; every field must be filled (0 would mean 0 ms)."""

from __future__ import annotations

from ..consts import Reg
from ..ifc.regs import DTOR
from . import RegCtx, register

# driver defaults (lib/tout.c tout_def_sw_val), in ms, but for pcie_toggle_to: fw_reset.c:
# mlx5_pci_link_toggle polls the bridge's LNKSTA for Data Link Layer Link Active until pcie_toggle_to
# runs out, and QEMU's pcie-root-port never reports DLLLA for a cold-plugged device (hw/pci/pcie.c sets
# it only in its hot-plug callback), so every link toggle of a sync reset waits the whole timeout, one
# function after the other (pci_cfg_access_lock of the whole bus). Against the initiator's budget of
# pci_sync_update_to + tear_down_to (8 s; devlink.c: mlx5_devlink_reload_fw_activate ->
# fw_reset.c: mlx5_fw_reset_wait_reset_done) two functions' 2 s toggles under TCG do not fit; the
# emulated link is back at once, so the card advertises 500 ms.
DEFAULTS_MS = {
    "pcie_toggle_to": 500,
    "health_poll_to": 2000,
    "full_crdump_to": 60000,
    "fw_reset_to": 60000,
    "flush_on_err_to": 2000,
    "pci_sync_update_to": 5000,
    "tear_down_to": 3000,
    "fsm_reactivate_to": 5000,
    "reclaim_pages_to": 5000,
    "reclaim_vfs_pages_to": 120000,
}


def encode_timeout(ms: int) -> int:
    """``default_timeout`` / iseg encoding: bits 31:29 unit (0 ms, 1 s, 2 min, 3 h), bits 19:0 value."""
    for unit, scale in ((0, 1), (1, 1000), (2, 60000), (3, 3600000)):
        if ms % scale == 0 and ms // scale < 1 << 20 or unit == 3:
            return (unit << 29) | min(ms // scale, (1 << 20) - 1)
    raise AssertionError("unreachable")


@register(Reg.DTOR, DTOR)
def dtor(rc: RegCtx) -> None:
    rc.out[:] = bytes(len(rc.out))
    for name, ms in DEFAULTS_MS.items():
        rc.put(name, encode_timeout(ms))

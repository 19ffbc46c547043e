"""The Variant B edits that turn Debian's mlx5_core into the positive control.

The stock 6.1 driver cannot hit the seed's use-after-free (a ``speed`` read during ``reboot -f``
allocating from the freed command ``dma_pool``) because of four guards, named G1-G4 in the edits'
comments (paths under ``drivers/net/ethernet/mellanox/mlx5/core/`` unless given):

- G1, pool lifetime: ``cmd.c: mlx5_cmd_init`` creates ``dev->cmd.pool`` at probe and only
  ``cmd.c: mlx5_cmd_cleanup`` (from ``main.c: mlx5_mdev_uninit``: remove or probe error) destroys it;
  shutdown never frees it.
- G2, netdev unregistered first: ``main.c: shutdown`` runs ``mlx5_unload_one(dev, false)``, whose
  ``dev.c: mlx5_detach_device`` deletes the eth auxiliary device, so ``en_main.c: mlx5e_remove`` calls
  ``unregister_netdev`` (removing the sysfs files) before ``mlx5_unload`` and ``mlx5_function_teardown``.
- G3, device present: ``en_main.c: mlx5e_nic_disable`` calls ``netif_device_detach``, and
  ``net/ethtool/ioctl.c: __ethtool_get_link_ksettings`` returns -ENODEV for a detached netdev.
- G4, command interface state: ``cmd.c: cmd_exec`` returns -ENXIO if ``mlx5_cmd_is_down`` (state DOWN
  after ``main.c: mlx5_function_disable``, INTERNAL_ERROR after a fast teardown) before ``alloc_msg``
  touches the pool.

Variant B undoes all four in the ``mlx5_core`` module alone, so it runs on Debian's own kernel (no
KASAN): ``cmd_exec`` keeps only the ``opcode_allowed`` check (G4; ``cmd_work_handler`` still refuses to
ring the doorbell of a down interface); a new helper after ``mlx5_cmd_cleanup`` runs
``destroy_msg_cache`` and ``dma_pool_destroy`` under ``rtnl_lock`` as 3.10's unload did, then (unless
``CONFIG_KASAN``, which reports the use-after-free itself) poisons ``dev->cmd.pool`` with a non-canonical
pointer, so the next ``dma_pool_alloc`` takes a general protection fault (G1);
``shutdown`` calls ``mlx5_unload_one(dev, true)`` (``mlx5e_suspend``: detach only, the netdev stays
registered, as in 3.10) then the helper and ``msleep(2000)`` so readers run on the freed pool before the
restart (G2); ``mlx5e_nic_disable`` no longer calls ``netif_device_detach`` (G3).

Each edit is an anchored text replacement: the anchor must occur exactly once in the file, else the
build stops naming the edit, so a changed upstream source can never be patched in the wrong place.
Paths are relative to the extracted ``drivers/net/ethernet/mellanox`` directory.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ImageError

# Bump when the way edits are applied (not their text) changes, to force a rebuild of cached modules.
RECIPE_VERSION = 1

CMD_C = "mlx5/core/cmd.c"
CORE_H = "mlx5/core/mlx5_core.h"
MAIN_C = "mlx5/core/main.c"
EN_MAIN_C = "mlx5/core/en_main.c"

HELPER = "mlx5lab_cmd_destroy_pool"
POISON = "0xdead000000006b00UL"


@dataclass(frozen=True)
class TextEdit:
    """Replace the one occurrence of ``anchor`` in ``file`` by ``replacement``."""

    name: str
    file: str
    anchor: str
    replacement: str
    summary: str  # one line for VulnerableModule.patch_summary


_HELPER_BODY = f"""
/* mlx5lab Variant B (positive control, undoes G1): free the command pool at shutdown as the 3.10
 * unload did, and leave a non-canonical pointer behind so the next dma_pool_alloc() takes a #GP.
 * Under RTNL, which speed/duplex readers hold across their whole command: no reader is mid-command,
 * so the cache lists are not walked concurrently and the first touch of the freed pool is the
 * seed's dma_pool_alloc() from the next reader.
 */
void {HELPER}(struct mlx5_core_dev *dev)
{{
\trtnl_lock();
\tdestroy_msg_cache(dev);
\tdma_pool_destroy(dev->cmd.pool);
#ifndef CONFIG_KASAN
\tdev->cmd.pool = (struct dma_pool *){POISON};
#endif
\trtnl_unlock();
\tmlx5_core_warn(dev, "mlx5lab: command dma_pool destroyed at shutdown (positive control)\\n");
}}
"""

VARIANT_B: tuple[TextEdit, ...] = (
    TextEdit(
        name="a/cmd_exec-guard",
        file=CMD_C,
        anchor="\tif (mlx5_cmd_is_down(dev) || !opcode_allowed(&dev->cmd, opcode))\n\t\treturn -ENXIO;\n",
        replacement=("\t/* mlx5lab Variant B: no mlx5_cmd_is_down() check before alloc_msg (undoes G4) */\n"
                     "\tif (!opcode_allowed(&dev->cmd, opcode))\n\t\treturn -ENXIO;\n"),
        summary="cmd.c cmd_exec(): guard before alloc_msg is now only !opcode_allowed() "
                "(mlx5_cmd_is_down() dropped; undoes G4)",
    ),
    TextEdit(
        name="b/helper",
        file=CMD_C,
        # the tail of mlx5_cmd_cleanup(); the probe error path spells these lines differently
        anchor="\tdestroy_msg_cache(dev);\n\tfree_cmd_page(dev, cmd);\n\tdma_pool_destroy(cmd->pool);\n}\n",
        replacement="\tdestroy_msg_cache(dev);\n\tfree_cmd_page(dev, cmd);\n\tdma_pool_destroy(cmd->pool);\n}\n"
                    + _HELPER_BODY,
        summary=f"cmd.c: new {HELPER}() after mlx5_cmd_cleanup(): under rtnl_lock(), destroy_msg_cache(), "
                f"dma_pool_destroy(dev->cmd.pool), then dev->cmd.pool = {POISON} unless CONFIG_KASAN "
                "(undoes G1)",
    ),
    TextEdit(
        name="b/include",
        file=CMD_C,
        anchor='#include "mlx5_core.h"\n',
        replacement='#include <linux/rtnetlink.h> /* mlx5lab Variant B: rtnl_lock() in the helper */\n'
                    '#include "mlx5_core.h"\n',
        summary="cmd.c: #include <linux/rtnetlink.h> for the helper's rtnl_lock()",
    ),
    TextEdit(
        name="b/declaration",
        file=CORE_H,
        anchor="void mlx5_cmd_cleanup(struct mlx5_core_dev *dev);\n",
        replacement="void mlx5_cmd_cleanup(struct mlx5_core_dev *dev);\n"
                    f"void {HELPER}(struct mlx5_core_dev *dev); /* mlx5lab Variant B */\n",
        summary=f"mlx5_core.h: declare {HELPER}() after mlx5_cmd_cleanup()",
    ),
    TextEdit(
        name="c/shutdown",
        file=MAIN_C,
        anchor=("\terr = mlx5_try_fast_unload(dev);\n\tif (err)\n\t\tmlx5_unload_one(dev, false);\n"
                "\tmlx5_pci_disable_device(dev);\n"),
        replacement=("\terr = mlx5_try_fast_unload(dev);\n"
                     "\t/* mlx5lab Variant B: detach only, the netdev stays registered (undoes G2) */\n"
                     "\tif (err)\n\t\tmlx5_unload_one(dev, true);\n"
                     f"\t{HELPER}(dev);\n"
                     "\tmsleep(2000); /* mlx5lab: keep readers running on the freed pool before restart */\n"
                     "\tmlx5_pci_disable_device(dev);\n"),
        summary=f"main.c shutdown(): mlx5_unload_one(dev, true) instead of (dev, false), then {HELPER}(dev) "
                "and msleep(2000), before mlx5_pci_disable_device() (undoes G2)",
    ),
    TextEdit(
        name="d/nic_disable-detach",
        file=EN_MAIN_C,
        anchor="\t\tmlx5e_close(priv->netdev);\n\tnetif_device_detach(priv->netdev);\n\trtnl_unlock();\n",
        replacement=("\t\tmlx5e_close(priv->netdev);\n"
                     "\t/* mlx5lab Variant B: no netif_device_detach(), the netdev stays present (undoes G3) */\n"
                     "\trtnl_unlock();\n"),
        summary="en_main.c mlx5e_nic_disable(): netif_device_detach() removed, the netdev stays present "
                "(undoes G3)",
    ),
)


_HELPER_BODY_NOPOISON = f"""
/* mlx5lab Variant B without poisoning (positive control, undoes G1): free the command pool at
 * shutdown as the 3.10 unload did and leave dev->cmd.pool pointing at the freed struct dma_pool, so
 * the next dma_pool_alloc() reads freed memory (KASAN reports it; without KASAN it goes unnoticed).
 * Under RTNL, as in the poisoning helper.
 */
void {HELPER}(struct mlx5_core_dev *dev)
{{
\trtnl_lock();
\tdestroy_msg_cache(dev);
\tdma_pool_destroy(dev->cmd.pool);
\trtnl_unlock();
\tmlx5_core_warn(dev, "mlx5lab: command dma_pool destroyed at shutdown (positive control, not poisoned)\\n");
}}
"""


def _without_poison(edit: TextEdit) -> TextEdit:
    if edit.name != "b/helper":
        return edit
    replacement = edit.replacement.replace(_HELPER_BODY, _HELPER_BODY_NOPOISON)
    assert replacement != edit.replacement
    return TextEdit(edit.name, edit.file, edit.anchor, replacement,
                    f"cmd.c: new {HELPER}() after mlx5_cmd_cleanup(): under rtnl_lock(), destroy_msg_cache(), "
                    "dma_pool_destroy(dev->cmd.pool), the stale pointer kept (undoes G1)")


# Variant B with G1's helper leaving the stale pool pointer in place on every kernel. Variant B itself
# already skips the poisoning when CONFIG_KASAN is set (the #ifndef in _HELPER_BODY); this one states it
# in the module's source, so the same use-after-free is silent on Debian's kernel and a KASAN report on
# the debug kernel (mlx5image.debugkernel).
VARIANT_B_NOPOISON: tuple[TextEdit, ...] = tuple(_without_poison(e) for e in VARIANT_B)


def recipe_digest(edits: Sequence[TextEdit], *extra: str) -> str:
    """A digest of everything that decides the built module besides the kernel package itself."""
    h = hashlib.sha256(f"recipe {RECIPE_VERSION}\0".encode())
    for e in edits:
        for part in (e.name, e.file, e.anchor, e.replacement):
            h.update(part.encode() + b"\0")
    for part in extra:
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def apply_to_text(text: str, edit: TextEdit) -> str:
    """``text`` with ``edit`` applied; ImageError naming the edit unless the anchor occurs exactly once."""
    count = text.count(edit.anchor)
    if count != 1:
        where = "does not occur" if count == 0 else f"occurs {count} times"
        raise ImageError(f"Variant B edit '{edit.name}': its anchor {where} in {edit.file}; the mlx5 source "
                         "is not the one the recipe was written for, so update the edit in "
                         "mlx5image/vulnerable/edits.py.")
    return text.replace(edit.anchor, edit.replacement)


def apply_edits(root: Path, edits: Iterable[TextEdit]) -> str:
    """Apply ``edits`` to the tree at ``root`` in order; return a unified diff of the changes.

    Every edit is checked before any file is written, so a failure leaves the tree untouched.
    """
    original: dict[str, str] = {}
    patched: dict[str, str] = {}
    for edit in edits:
        if edit.file not in patched:
            path = root / edit.file
            if not path.is_file():
                raise ImageError(f"Variant B edit '{edit.name}': {edit.file} is missing from the extracted "
                                 "source; check the linux-source package.")
            original[edit.file] = patched[edit.file] = path.read_text()
        patched[edit.file] = apply_to_text(patched[edit.file], edit)
    diff: list[str] = []
    for name, text in patched.items():
        (root / name).write_text(text)
        diff.extend(difflib.unified_diff(original[name].splitlines(keepends=True),
                                         text.splitlines(keepends=True), f"a/{name}", f"b/{name}"))
    return "".join(diff)

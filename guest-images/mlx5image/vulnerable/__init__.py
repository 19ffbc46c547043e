"""``build_vulnerable_module``: Debian's mlx5_core with the Variant B edits (``edits.py``), the positive control.

The stock 6.1 driver survives ``reboot -f`` under concurrent ``speed`` reads (guards G1-G4, see
``edits.py``); this build re-opens the seed's window: shutdown frees the command dma_pool while the
netdev stays registered and present and cmd_exec no longer checks that the command interface is down.
The freed pool pointer is poisoned, so the first read that reaches ``dma_pool_alloc`` takes a general
protection fault.

It is one recipe of the driver builder (:mod:`mlx5image.driver`: base ``vulnerable``, no patches), cached
in ``cache_dir()/modules/<release>/vulnerable-<recipe digest>/`` and rebuilt only when the edits, the
build recipe or the kernel's package version change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the driver builder imports this package's debs, edits and kbuild modules
    from ..driver import BuiltModule

__all__ = ["MANIFEST", "build_vulnerable_module"]

MANIFEST = "vulnerable.json"


def build_vulnerable_module(kernel_release: str, *, progress: Callable[[str], None] = print) -> BuiltModule:
    """Return the Variant B ``mlx5_core`` for ``kernel_release`` (e.g. ``6.1.0-56-amd64``), building it once."""
    from ..driver import Recipe, build_module

    return build_module(kernel_release, Recipe("vulnerable"), progress=progress)

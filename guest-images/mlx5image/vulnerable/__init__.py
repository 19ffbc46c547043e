"""``build_vulnerable_module``: Debian's mlx5_core with the Variant B edits (``edits.py``), the positive control.

The stock 6.1 driver survives ``reboot -f`` under concurrent ``speed`` reads (guards G1-G4, see
``edits.py``); this build re-opens the seed's window: shutdown frees the command dma_pool while the
netdev stays registered and present and cmd_exec no longer checks that the command interface is down.
The freed pool pointer is poisoned, so the first read that reaches ``dma_pool_alloc`` takes a general
protection fault.

Cached in ``cache_dir()/modules/<release>/vulnerable-<recipe digest>/``: rebuilt only when the edits, the
build recipe or the kernel's package version change. A folder without a valid manifest (a failed or
killed build, whose build.log stays there for reading) is wiped by the next call; a lock makes
concurrent callers wait for one build.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cache import cache_dir, cache_lock
from ..debpkg import resolve_kernel, sha256_file
from ..errors import ImageError
from .debs import ensure_headers, extract_mlx5_tree, fetch_source
from .edits import VARIANT_B, apply_edits, recipe_digest
from .kbuild import MAKE_VARS, STRIP_ARGS, kbuild, modinfo, strip_copy

__all__ = ["VulnerableModule", "build_vulnerable_module"]

MANIFEST = "vulnerable.json"
MODULE = "mlx5_core"
_SCHEMA = 1


@dataclass(frozen=True)
class VulnerableModule:
    """A built positive-control module: ``ko`` goes into the guest, ``ko_debug`` is for triage."""

    ko: Path  # debug info stripped (modinfo and symbols intact)
    ko_debug: Path  # same module with DWARF, for addr2line/gdb/crash on the oops
    patch_summary: list[str]  # one line per applied edit
    source_sha256: str  # of the linux-source .deb the module was built from
    vermagic: str
    build_log: Path


def _digest() -> str:
    return recipe_digest(VARIANT_B, *MAKE_VARS, *STRIP_ARGS)[:16]



def _from_manifest(folder: Path, digest: str, version: str) -> VulnerableModule | None:
    """The module cached in ``folder`` if it was built by this recipe from this kernel version."""
    try:
        data = json.loads((folder / MANIFEST).read_text())
        if data["schema"] != _SCHEMA or data["recipe"] != digest or data["kernel_version"] != version:
            return None
        mod = VulnerableModule(ko=folder / data["ko"], ko_debug=folder / data["ko_debug"],
                               patch_summary=list(data["patch_summary"]),
                               source_sha256=data["source"]["sha256"], vermagic=data["vermagic"],
                               build_log=folder / data["build_log"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return mod if mod.ko.is_file() and mod.ko_debug.is_file() else None


def _remove_objects(tree: Path) -> None:
    """Drop the build's object files (~1 GB with debug info); sources, logs and the .ko copies stay."""
    for path in tree.rglob("*"):
        if path.is_file() and path.suffix in (".o", ".ko"):
            path.unlink()


def _build(release: str, version: str, digest: str, out: Path, log: Path,
           progress: Callable[[str], None]) -> dict[str, Any]:
    """Build into the empty folder ``out``; return the manifest fields."""
    started = time.monotonic()
    headers = ensure_headers(release, version, progress)
    src = fetch_source(release, version, cache_dir() / "debs", progress)
    mellanox = extract_mlx5_tree(src.path, out / "src", progress)
    diff = apply_edits(mellanox, VARIANT_B)
    (out / "variant-b.diff").write_text(diff)
    progress(f"applied {len(VARIANT_B)} Variant B edits (diff: {out / 'variant-b.diff'})")
    built = kbuild(headers, mellanox / "mlx5" / "core", MODULE, log, progress)
    vermagic = modinfo(built, "vermagic")
    if vermagic.split()[:1] != [release]:
        raise ImageError(f"the built {MODULE}.ko has vermagic '{vermagic}', not for {release}; check that "
                         f"{headers} belongs to the guest kernel.")
    ko_debug = out / f"{MODULE}.debug.ko"
    os.replace(built, ko_debug)
    ko = strip_copy(ko_debug, out / f"{MODULE}.ko")
    _remove_objects(out / "src")
    return {
        "schema": _SCHEMA, "recipe": digest, "kernel_release": release, "kernel_version": version,
        "source": {"package": src.package, "version": src.version, "deb": src.path.name, "sha256": src.sha256},
        "headers": str(headers), "vermagic": vermagic, "depends": modinfo(ko, "depends"),
        "patch_summary": [e.summary for e in VARIANT_B],
        "ko": ko.name, "ko_sha256": sha256_file(ko), "ko_debug": ko_debug.name, "build_log": log.name,
        "build_seconds": round(time.monotonic() - started, 1),
    }


def build_vulnerable_module(kernel_release: str, *, progress: Callable[[str], None] = print) -> VulnerableModule:
    """Return the Variant B ``mlx5_core`` for ``kernel_release`` (e.g. ``6.1.0-56-amd64``), building it once.

    Needs root the first time if ``linux-headers-<release>`` is not installed (it is apt-get installed
    at the guest kernel's exact package version). Raises :class:`ImageError` with what to do otherwise.
    """
    root = cache_dir()
    version = resolve_kernel(kernel_release, progress, root / "apt-memo.json").version
    digest = _digest()
    base = root / "modules" / kernel_release
    base.mkdir(parents=True, exist_ok=True)
    folder = base / f"vulnerable-{digest}"
    with cache_lock(base / ".vulnerable.lock"):
        cached = _from_manifest(folder, digest, version)
        if cached is not None:
            return cached
        # Built in place, not renamed afterwards, so the debug module's DWARF paths name the sources
        # that stay here; the manifest, written last, marks the folder complete.
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        progress(f"building the Variant B {MODULE} for {kernel_release} ({version}) in {folder}")
        data = _build(kernel_release, version, digest, folder, folder / "build.log", progress)
        manifest = folder / MANIFEST
        tmp = manifest.with_name(f".{MANIFEST}.{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, manifest)
        module = _from_manifest(folder, digest, version)
    if module is None:
        raise ImageError(f"the module built in {folder} is incomplete; delete that folder and retry.")
    progress(f"Variant B {MODULE}: {module.ko} (vermagic {module.vermagic})")
    return module

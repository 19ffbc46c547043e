"""Build (once) the debug kernel from Debian's ``linux-source-<major.minor>`` and keep it in the cache.

Steps, all in ``cache_dir()/debug-kernels/<source version>-<fragment digest>/``:

1. ``src/``: the source tarball of the linux-source .deb, unpacked;
2. ``build/`` (``make O=build``): ``x86_64_defconfig``, ``kvm_guest.config``, the fragment of
   :mod:`.symbols` appended (kconfig lets a later assignment override an earlier one,
   scripts/kconfig/confdata.c: conf_read_simple), ``olddefconfig``, then a check that every wanted symbol
   stuck (:func:`.kconfig.unstuck`);
3. ``make vmlinux modules``; ``modules_install`` with ``INSTALL_MOD_STRIP=1`` into ``staging/``;
   ``vmlinux.pvh``: vmlinux without debug sections, its PVH note kept (the image checks the note but
   boots the bzImage, made on first use by :func:`ensure_bzimage`: see ``image.PVH_REASON``);
4. ``manifest.json``, written last: a folder without it is a failed or killed build, wiped by the next call
   (its ``build.log`` is read first, the error names it).

``build/`` stays: it is the "headers" the variants build ``mlx5_core`` against (``make -C build M=...``),
and holds ``vmlinux`` and the unstripped ``.ko`` files the triage reads.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..cache import cache_dir, cache_lock
from ..errors import ImageError
from ..hosttools import require_tool
from ..vulnerable.debs import fetch_source
from .kconfig import fragment, fragment_digest, parse_config, unstuck
from .symbols import LOCALVERSION, WANTED

NAME_PREFIX = "debug-"
# Debian source versions a debug kernel is built from, by upstream version (the name's tail). 6.1.192-3 is
# the source of the default guest kernel 6.1.0-57-amd64 (its linux-image .deb's Source: field).
SOURCES: dict[str, str] = {"6.1.192": "6.1.192-3"}
MANIFEST = "manifest.json"
_SCHEMA = 1
# Host packages this recipe needs beyond the image builder's: gelf.h for objtool (libelf-dev), pahole is
# not needed (no DEBUG_INFO_BTF); bc, flex, bison and libssl-dev for the kernel build itself.
BUILD_TOOLS = ("make", "gcc", "bc", "flex", "bison", "objcopy", "tar", "dpkg-deb")


@dataclass(frozen=True)
class DebugKernel:
    """A finished debug kernel build."""

    name: str  # debug-<upstream version>
    folder: Path
    release: str  # uname -r
    source_version: str  # Debian version of linux-source
    build_seconds: float

    @property
    def build_dir(self) -> Path:
        return self.folder / "build"

    @property
    def vmlinux(self) -> Path:
        """With DWARF: the triage's debug info."""
        return self.build_dir / "vmlinux"

    @property
    def boot_kernel(self) -> Path:
        return self.folder / "vmlinux.pvh"

    @property
    def system_map(self) -> Path:
        return self.build_dir / "System.map"

    @property
    def module_root(self) -> Path:
        """Root of the installed modules: ``lib/modules/<release>`` below it."""
        return self.folder / "staging"


def is_debug_name(spec: str | None) -> bool:
    return spec is not None and spec.startswith(NAME_PREFIX)


def upstream_of(name: str) -> str:
    """'debug-6.1.192' -> '6.1.192'; ImageError for a version without a known source."""
    upstream = name[len(NAME_PREFIX):]
    if upstream not in SOURCES:
        known = ", ".join(NAME_PREFIX + v for v in SOURCES)
        raise ImageError(f"no debug kernel recipe for {name!r}; known: {known}")
    return upstream


def release_of(upstream: str) -> str:
    return upstream + LOCALVERSION


def folder_for(upstream: str) -> Path:
    digest = fragment_digest(fragment(WANTED))
    return cache_dir() / "debug-kernels" / f"{SOURCES[upstream]}-{digest}"


def load(folder: Path) -> DebugKernel | None:
    """The finished build in ``folder``, or None if there is none (no or an unreadable manifest)."""
    try:
        data = json.loads((folder / MANIFEST).read_text())
        if data.get("schema") != _SCHEMA:
            return None
        dk = DebugKernel(data["name"], folder, data["release"], data["source_version"], data["build_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    needed = (dk.vmlinux, dk.boot_kernel, dk.system_map, dk.module_root / "lib" / "modules" / dk.release)
    return dk if all(p.exists() for p in needed) else None


def find(name: str) -> DebugKernel | None:
    """The cached build for ``name`` (``debug-6.1.192``), without building."""
    return load(folder_for(upstream_of(name)))


def ensure(name: str, *, progress: Callable[[str], None] = print, jobs: int | None = None) -> DebugKernel:
    """The debug kernel ``name``, built first if not cached (20-40 minutes on two cores)."""
    upstream = upstream_of(name)
    folder = folder_for(upstream)
    with cache_lock(folder.with_name(f".{folder.name}.lock")):
        dk = load(folder)
        if dk is not None:
            return dk
        if folder.exists():
            progress(f"removing the unfinished build in {folder}")
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        return _build(name, upstream, folder, progress, jobs or os.cpu_count() or 2)


def _build(name: str, upstream: str, folder: Path, progress: Callable[[str], None], jobs: int) -> DebugKernel:
    for tool in BUILD_TOOLS:
        require_tool(tool)
    version = SOURCES[upstream]
    log = folder / "build.log"
    start = time.monotonic()
    deb = fetch_source(upstream, version, cache_dir() / "debs", progress).path
    src, build = folder / "src", folder / "build"
    src.mkdir()
    build.mkdir()
    progress(f"unpacking {deb.name} into {src}")
    tarball = f"./usr/src/linux-source-{'.'.join(upstream.split('.')[:2])}.tar.xz"
    _sh(f"dpkg-deb --fsys-tarfile {_q(deb)} | tar -xO {_q(tarball)} | tar -xJ --strip-components=1 -C {_q(src)}",
        log, "unpacking the kernel source")
    make = [str(require_tool("make")), "-C", str(src), f"O={build}"]
    for target in ("x86_64_defconfig", "kvm_guest.config"):
        _run([*make, target], log, f"make {target}")
    text = fragment(WANTED)
    (build / "mlx5lab.config").write_text(text)
    with open(build / ".config", "a") as cfg:
        cfg.write(text)
    _run([*make, "olddefconfig"], log, "make olddefconfig")
    bad = unstuck(WANTED, parse_config((build / ".config").read_text()))
    if bad:
        raise ImageError(f"the debug kernel's configuration in {build}/.config lost wanted symbols: "
                         + "; ".join(map(str, bad)))
    progress(f"building vmlinux and modules with -j{jobs} (20-40 minutes on two cores); log: {log}")
    _run([*make, f"-j{jobs}", "vmlinux", "modules"], log, "make vmlinux modules")
    _run([*make, "modules_install", f"INSTALL_MOD_PATH={folder / 'staging'}", "INSTALL_MOD_STRIP=1"], log,
         "make modules_install")
    release = (build / "include" / "config" / "kernel.release").read_text().strip()
    if release != release_of(upstream):
        raise ImageError(f"the debug kernel built as {release}, not {release_of(upstream)}; see {log}")
    _run([str(require_tool("objcopy")), "--strip-debug", str(build / "vmlinux"), str(folder / "vmlinux.pvh")],
         log, "objcopy --strip-debug vmlinux")
    seconds = round(time.monotonic() - start, 1)
    manifest = {"schema": _SCHEMA, "name": name, "release": release, "source_version": version,
                "source_deb": deb.name, "fragment": text, "build_seconds": seconds, "jobs": jobs,
                "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    dk = load(folder)
    if dk is None:
        raise ImageError(f"the debug kernel build in {folder} finished without its files; see {log}")
    progress(f"built debug kernel {release} in {seconds / 60:.1f} min ({folder})")
    return dk


def ensure_bzimage(dk: DebugKernel, progress: Callable[[str], None] = print) -> Path:
    """The kernel's bzImage, made on first use (``make bzImage`` after ``vmlinux``: compression and
    linking of the boot stub, about a minute). The guest boots the PVH ``vmlinux.pvh``; the image keeps a
    bzImage for firmware that cannot load an ELF, as it does for Debian's kernels."""
    bzimage = dk.build_dir / "arch" / "x86" / "boot" / "bzImage"
    with cache_lock(dk.folder.with_name(f".{dk.folder.name}.lock")):
        if not bzimage.is_file():
            progress(f"making the bzImage of {dk.release}")
            _run([str(require_tool("make")), "-C", str(dk.folder / "src"), f"O={dk.build_dir}",
                  f"-j{os.cpu_count() or 2}", "bzImage"], dk.folder / "bzimage.log", "make bzImage")
    return bzimage


def by_release(release: str) -> DebugKernel | None:
    """The finished debug kernel whose ``uname -r`` is ``release``; None for any other release."""
    if not release.endswith(LOCALVERSION):
        return None
    upstream = release.removesuffix(LOCALVERSION)
    return load(folder_for(upstream)) if upstream in SOURCES else None


def _q(path: Path | str) -> str:
    s = str(path)
    if not re.fullmatch(r"[\w./+-]+", s):
        raise ImageError(f"unexpected characters in path {s!r}")
    return s


def _sh(command: str, log: Path, what: str) -> None:
    _run(["bash", "-o", "pipefail", "-c", command], log, what)


def _run(argv: list[str], log: Path, what: str) -> None:
    """Run ``argv`` with its output appended to ``log``; ImageError quoting the log's tail on failure."""
    with open(log, "a") as out:
        out.write("$ " + " ".join(argv) + "\n")
        out.flush()
        rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, LC_ALL="C")).returncode
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-12:]
        raise ImageError(f"{what} failed (exit status {rc}); see {log}; last lines:\n" + "\n".join(tail))

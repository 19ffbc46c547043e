"""Debug info for vmcore triage: the Debian ``-dbg`` vmlinux and the few module .ko files triage reads.

The ``linux-image-<release>-dbg`` package is ~860 MB (5.4 GB unpacked). Triage needs only the unstripped
vmlinux (633 MB) and the debug objects of the modules that show up in mlx5 crash stacks, so those are
pulled out of the package once into ``cache_dir()/debuginfo/<release>/`` and the .deb is deleted. A
``complete.json`` stamp, written last, marks a finished extraction; a folder without it is redone.

The vulnerable variant's mlx5_core is not Debian's: its debug object is the variant's own
(``identity.variant_manifest.module_debug`` in result.json) and replaces Debian's in :func:`debug_files`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlx5image import debpkg, debugkernel
from mlx5image.cache import cache_dir, cache_lock
from mlx5image.debpkg import KernelPackage, parse_stanza
from mlx5image.errors import ImageError

from .. import Mlx5LabError

STAMP = "complete.json"
# Module debug objects kept from the package: what appears in the stacks of an mlx5 teardown crash,
# plus the drivers on the panic path (pvpanic) and the guest's only other NIC (virtio_net).
MODULE_PATTERNS = ("*/mlx5_core.ko", "*/mlxfw.ko", "*/psample.ko", "*/pvpanic*.ko", "*/virtio_net.ko")
# Room the extraction needs beyond the .deb itself (vmlinux 633 MB + modules ~116 MB, and slack).
EXTRACT_BYTES = 900 * 1024 * 1024

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DebugInfo:
    """Debug files for one kernel release (and, for a variant, its own mlx5_core)."""

    release: str
    vmlinux: Path
    modules: dict[str, Path] = field(default_factory=dict)  # module name (mlx5_core, pvpanic_pci) -> .ko

    def files(self) -> list[Path]:
        return [self.vmlinux, *self.modules.values()]


def package_name(release: str) -> str:
    return f"linux-image-{release}-dbg"


def debuginfo_root() -> Path:
    return cache_dir() / "debuginfo"


def debuginfo_dir(release: str) -> Path:
    return debuginfo_root() / release


def _module_name(ko: Path) -> str:
    return ko.name.removesuffix(".ko").replace("-", "_")


def debug_kernel_debuginfo(release: str) -> DebugInfo | None:
    """A debug kernel's own debug info (mlx5image.debugkernel): the build tree's vmlinux, which has DWARF,
    and its unstripped modules; None when ``release`` is not a built debug kernel's."""
    dk = debugkernel.by_release(release)
    if dk is None:
        return None
    modules = {}
    for pattern in MODULE_PATTERNS:
        for ko in sorted(dk.build_dir.glob(f"drivers/**/{pattern.removeprefix('*/')}")):
            modules[_module_name(ko)] = ko
    return DebugInfo(release=release, vmlinux=dk.vmlinux, modules=modules)


def find_debuginfo(release: str) -> DebugInfo | None:
    """The cached debug info for ``release``, or None when it was never (completely) extracted.

    A debug kernel needs no extraction: its build tree is its debug info."""
    if release.endswith(debugkernel.LOCALVERSION):
        return debug_kernel_debuginfo(release)
    folder = debuginfo_dir(release)
    vmlinux = folder / f"vmlinux-{release}"
    if not (folder / STAMP).is_file() or not vmlinux.is_file():
        return None
    modules = {_module_name(ko): ko for ko in sorted((folder / "modules").glob("*.ko"))}
    return DebugInfo(release=release, vmlinux=vmlinux, modules=modules)


def variant_module_debug(identity: dict[str, Any]) -> Path | None:
    """The variant's own debug mlx5_core.ko named in a result.json identity, if any."""
    manifest = identity.get("variant_manifest") or {}
    path = manifest.get("module_debug") if isinstance(manifest, dict) else None
    return Path(path) if path else None


def debug_files(info: DebugInfo, identity: dict[str, Any]) -> tuple[list[Path], list[str]]:
    """Files to load for a crash of ``identity``'s kernel, and warnings about what is missing.

    For a variant with its own mlx5_core the variant's debug .ko is used instead of Debian's: Debian's would
    load (same name) but give wrong frames and types for a module that was built from edited source.
    """
    modules = dict(info.modules)
    warnings: list[str] = []
    own = variant_module_debug(identity)
    if own is not None:
        if own.is_file():
            modules["mlx5_core"] = own
        else:
            modules.pop("mlx5_core", None)
            warnings.append(f"the {identity.get('variant')} variant's debug mlx5_core.ko {own} is missing: "
                            "mlx5_core frames are not symbolized (rebuild the variant)")
    elif identity.get("variant") not in (None, "stock"):
        warnings.append(f"result.json names no debug mlx5_core.ko for variant {identity.get('variant')!r}; "
                        "Debian's is used and may not match")
    return [info.vmlinux, *modules.values()], warnings


# -- fetching ------------------------------------------------------------------------------------------



def _apt_show(package: str) -> dict[str, str]:
    proc = subprocess.run(["apt-cache", "show", "--no-all-versions", package], capture_output=True, text=True,
                          env=dict(os.environ, LC_ALL="C"))
    return parse_stanza(proc.stdout)


def _image_package_version(release: str) -> str | None:
    """The package version of the guest image built for ``release``, if one is cached."""
    try:
        return json.loads((cache_dir() / "images" / release / "manifest.json").read_text())["kernel"]["version"]
    except (OSError, ValueError, KeyError):
        return None


def _package_info(release: str, progress: Progress) -> dict[str, str]:
    package = package_name(release)
    info = _apt_show(package)
    if not info:
        progress(f"apt knows no {package}; running apt-get update once")
        subprocess.run(["apt-get", "update"], capture_output=True, text=True)
        info = _apt_show(package)
    if not info:
        raise Mlx5LabError(
            f"the debug package {package} is not known to apt. It is in Debian's main archive (and "
            "bookworm-security for security updates): check /etc/apt/sources.list, run 'apt-get update' and retry. "
            f"A kernel that Debian does not ship has no -dbg package; put its vmlinux in {debuginfo_dir(release)} "
            f"(vmlinux-{release}, modules/*.ko, and an empty {STAMP}) by hand.")
    return info


def _check_space(where: Path, need: int) -> None:
    free = shutil.disk_usage(where).free
    if free < need:
        raise Mlx5LabError(f"not enough disk space in {where} for the kernel debug info: it needs "
                           f"{need / 2**30:.1f} GiB free (the .deb plus ~0.9 GiB extracted), "
                           f"{free / 2**30:.1f} GiB are free. Free some space (or set MLX5LAB_CACHE) and retry.")


def _poll_size(stop: threading.Event, measure: Callable[[], int], label: str, total: int | None,
               progress: Progress, every: float = 5.0) -> None:
    t0 = time.monotonic()
    while not stop.wait(every):
        done = measure()
        of = f" of {total / 1e6:.0f} MB" if total else ""
        progress(f"{label}: {done / 1e6:.0f} MB{of} after {time.monotonic() - t0:.0f} s")


def _tree_size(folder: Path) -> int:
    total = 0
    for p in folder.rglob("*"):
        with contextlib.suppress(OSError):
            if p.is_file():
                total += p.stat().st_size
    return total


def _download(release: str, info: dict[str, str], progress: Progress) -> Path:
    """The -dbg .deb, checked against apt's SHA256 (debpkg.fetch), with progress while it downloads."""
    package, version = package_name(release), info.get("Version", "")
    image_version = _image_package_version(release)
    if image_version and version and image_version != version:
        raise Mlx5LabError(f"apt offers {package} {version}, but the guest image runs {image_version}: the debug "
                           "info would not match the vmcore. Rebuild the image (`mlx5lab image`) or fetch the "
                           "matching -dbg package by hand.")
    debs = cache_dir() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    size = int(info.get("Size", "0") or 0)
    _check_space(debs, size + EXTRACT_BYTES)
    progress(f"downloading {package} {version} ({size / 1e6:.0f} MB, apt-get download)")
    stop = threading.Event()

    def measure() -> int:
        return sum(p.stat().st_size for p in debs.rglob(f"{package}_*") if p.is_file())

    poller = threading.Thread(target=_poll_size, args=(stop, measure, "downloaded", size, progress), daemon=True)
    poller.start()
    try:
        pkg = KernelPackage(package, version, release, expected_sha256=info.get("SHA256"))
        return debpkg.fetch(pkg, debs, lambda _msg: None)  # the line above and the poller report
    except ImageError as exc:
        raise Mlx5LabError(str(exc)) from exc
    finally:
        stop.set()


def _extract(deb: Path, release: str, folder: Path, progress: Progress) -> None:
    """Stream the package's data tarball through tar, keeping only the files triage reads (~70 s)."""
    patterns = [f"./usr/lib/debug/boot/vmlinux-{release}", *MODULE_PATTERNS]
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=folder.parent))
    progress(f"extracting vmlinux-{release} and {len(MODULE_PATTERNS)} module patterns from {deb.name} (~70 s)")
    stop = threading.Event()
    poller = threading.Thread(target=_poll_size, args=(stop, lambda: _tree_size(tmp), "extracted", None, progress),
                              daemon=True)
    poller.start()
    try:
        dpkg = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert dpkg.stdout is not None
        tar = subprocess.run(["tar", "-x", "-C", str(tmp), "--wildcards", *patterns], stdin=dpkg.stdout,
                             capture_output=True, text=True)
        dpkg.stdout.close()
        dpkg_err = dpkg.stderr.read().decode(errors="replace") if dpkg.stderr else ""
        dpkg.wait()
        # A module pattern that matches nothing (a kernel built without it) is not fatal; anything else is.
        tar_errors = [x for x in tar.stderr.splitlines() if x.strip() and "Not found in archive" not in x
                      and "Exiting with failure status" not in x]
        for line in tar.stderr.splitlines():
            if "Not found in archive" in line:
                progress(f"note: {line.strip()}")
        if dpkg.returncode != 0 or (tar.returncode != 0 and tar_errors):
            detail = (dpkg_err + "\n".join(tar_errors)).strip().splitlines()
            raise Mlx5LabError(f"extracting {deb} failed: {detail[-1] if detail else 'unknown error'} "
                               "(a truncated download? delete it and retry)")
        vmlinux = tmp / "usr/lib/debug/boot" / f"vmlinux-{release}"
        if not vmlinux.is_file():
            raise Mlx5LabError(f"{deb} holds no usr/lib/debug/boot/vmlinux-{release}")
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "modules").mkdir(parents=True)
        os.replace(vmlinux, folder / vmlinux.name)
        for ko in (tmp / "usr/lib/debug/lib/modules").rglob("*.ko"):
            os.replace(ko, folder / "modules" / ko.name)
    finally:
        stop.set()
        shutil.rmtree(tmp, ignore_errors=True)


def fetch_debuginfo(release: str, *, progress: Progress = print, keep_deb: bool = False) -> DebugInfo:
    """Return the debug info for ``release``, downloading and extracting it first if it is not cached.

    Safe against a concurrent fetch of the same release (a file lock); the .deb is deleted afterwards.
    """
    cached = find_debuginfo(release)
    if cached is not None:
        return cached
    if release.endswith(debugkernel.LOCALVERSION):
        raise Mlx5LabError(f"{release} is a debug kernel that is not built (its build tree is its debug "
                           "info; there is no -dbg package); run 'make debug-kernel'.")
    root = debuginfo_root()
    with cache_lock(root / f".{release}.lock"):
        cached = find_debuginfo(release)
        if cached is not None:
            return cached
        t0 = time.monotonic()
        info = _package_info(release, progress)
        _check_space(root, EXTRACT_BYTES)
        deb = _download(release, info, progress)
        t_dl = time.monotonic() - t0
        folder = debuginfo_dir(release)
        _extract(deb, release, folder, progress)
        t_ex = time.monotonic() - t0 - t_dl
        files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
        stamp = {"package": package_name(release), "version": info.get("Version"), "deb_size": deb.stat().st_size,
                 "download_s": round(t_dl, 1), "extract_s": round(t_ex, 1), "files": files,
                 "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (folder / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        if not keep_deb:
            deb.unlink(missing_ok=True)
        progress(f"debug info for {release} in {folder} ({sum(files.values()) / 1e6:.0f} MB; "
                 f"download {t_dl:.0f} s, extract {t_ex:.0f} s)")
    result = find_debuginfo(release)
    assert result is not None
    return result

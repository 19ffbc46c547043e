"""The guest image of a debug kernel: its PVH vmlinux, its bzImage and config, its installed modules."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..assemble import assemble_tree
from ..debpkg import KernelPackage, sha256_file
from ..elf import has_pvh_note
from ..errors import ImageError
from ..keys import Keys
from ..kmod import ModuleTree
from .recipe import NAME_PREFIX, DebugKernel, by_release, ensure_bzimage, find, is_debug_name
from .symbols import LOCALVERSION

# kasan.fault=panic: the first KASAN report panics (mm/kasan/report.c: early_kasan_fault, end_report), so
# pvpanic tells the orchestrator and the vmcore is taken while the freed object is still in KASAN's
# quarantine; by default KASAN reports and the kernel runs on. i8042.nokbd i8042.noaux
# (drivers/input/serio/i8042.c): x86_64_defconfig builds the PS/2 drivers in, and atkbd_probe's
# ps2_command waits held boot up (kernel_init in async_synchronize_full, a hung-task report) on a loaded
# TCG host; the guest has no keyboard to probe.
CMDLINE = "kasan.fault=panic i8042.nokbd i8042.noaux"


def is_debug_kernel(spec: str | None) -> bool:
    """``spec`` names a debug kernel: ``debug-6.1.192``, or its release ``6.1.192-mlx5lab-debug`` (what a
    campaign records, ``campaign.runner.pinned_kernel``)."""
    return is_debug_name(spec) or (spec is not None and spec.endswith(LOCALVERSION))


# Booted through the PVH entry (QEMU -kernel with the ELF, qboot), this KASAN build prints nothing, not even
# with earlyprintk=serial, while its bzImage boots; the PVH entry runs C code before KASAN's early shadow
# is set up (arch/x86/platform/pvh/head.S -> enlighten.c: xen_prepare_pvh, built with KASAN
# instrumentation; x86_64_start_kernel -> kasan_early_init comes later). So the image boots the bzImage.
PVH_REASON = "the KASAN debug kernel does not boot through its PVH entry (no output); the bzImage is booted"


def require(name: str) -> DebugKernel:
    """The built debug kernel ``name`` (or release); ImageError saying how to build it when it is not (a
    build takes 20-40 minutes, too long to start implicitly from a boot or a campaign)."""
    dk = by_release(name) if name.endswith(LOCALVERSION) else find(name)
    if dk is None:
        raise ImageError(f"debug kernel {name} is not built; build it with 'make debug-kernel' "
                         f"(python -m mlx5image.debugkernel {name}; 20-40 minutes on two cores) and retry.")
    return dk


def package_of(dk: DebugKernel) -> KernelPackage:
    """The debug kernel in the image builder's terms; its version names the recipe's cache folder
    (source version and configuration digest), so a rebuilt kernel gets a new image."""
    return KernelPackage(package=dk.name, version=dk.folder.name, release=dk.release)


def assemble_debug(dk: DebugKernel, out: Path, keys: Keys, fingerprint: str,
                   progress: Callable[[str], None]) -> None:
    """Write the debug kernel's guest image to ``out`` (the counterpart of :func:`assemble.assemble`)."""
    started = time.monotonic()
    release = dk.release
    if not has_pvh_note(dk.boot_kernel.read_bytes()):
        raise ImageError(f"{dk.boot_kernel} has no PVH note (XEN_ELFNOTE_PHYS32_ENTRY); rebuild the debug "
                         "kernel with CONFIG_PVH=y.")
    vmlinuz = out / f"vmlinuz-{release}"
    shutil.copyfile(ensure_bzimage(dk, progress), vmlinuz)
    shutil.copyfile(dk.build_dir / ".config", out / f"config-{release}")
    pkg = package_of(dk)
    kernel: dict[str, Any] = {
        "pvh": False, "pvh_reason": PVH_REASON, "compression": "gzip",
        "file": vmlinuz.name, "sha256": sha256_file(vmlinuz),
        "vmlinuz": vmlinuz.name, "vmlinuz_sha256": sha256_file(vmlinuz),
        "config": f"config-{release}",
        "package": pkg.package, "version": pkg.version, "deb": "", "deb_sha256": "",
        "debug_kernel": str(dk.folder),
    }
    try:
        assemble_tree(ModuleTree(dk.module_root, release), kernel, out, keys, fingerprint, progress, started,
                      extra_cmdline=CMDLINE)
    finally:
        shutil.rmtree(out / "work", ignore_errors=True)


__all__ = ["NAME_PREFIX", "assemble_debug", "is_debug_kernel", "package_of", "require"]

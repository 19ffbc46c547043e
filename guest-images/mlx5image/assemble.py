"""Assemble one guest image into an (empty, temporary) folder from a linux-image package."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .debpkg import KernelPackage, extract, fetch, sha256_file
from .hosttools import package_version
from .image import cmdline_for
from .initramfs import ModuleSelection, select_modules, write_initramfs
from .keys import Keys
from .kmod import ModuleTree, depmod
from .manifest import MANIFEST_NAME, initramfs_listing, write_manifest
from .rootfs import RootfsSpec, populate
from .vmlinux import extract_vmlinux

INITRD_NAME = "initramfs.cpio.gz"


def init_script() -> bytes:
    """The guest's /init, shipped as package data next to this module."""
    return (Path(__file__).parent / "init").read_bytes()


def kernel_config(text: str) -> dict[str, str]:
    """CONFIG_X=value lines of a kernel .config (``is not set`` lines are simply absent)."""
    out = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            key, _, value = line.partition("=")
            out[key] = value
    return out


def _kernel_files(boot: Path, release: str, out: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    """Copy config and bzImage; add the PVH ELF vmlinux when the kernel supports it. Manifest fields."""
    shutil.copyfile(boot / f"config-{release}", out / f"config-{release}")
    vmlinuz = out / f"vmlinuz-{release}"
    shutil.copyfile(boot / f"vmlinuz-{release}", vmlinuz)
    config = kernel_config((boot / f"config-{release}").read_text())

    kernel_file, pvh, compression, reason = vmlinuz, False, "", "CONFIG_PVH is not set in the kernel config"
    if config.get("CONFIG_PVH") == "y":
        progress("extracting the PVH-bootable vmlinux from the bzImage")
        result = extract_vmlinux(vmlinuz.read_bytes())
        compression, reason = result.compression, result.reason
        if result.elf is not None:
            kernel_file, pvh = out / f"vmlinux-{release}", True
            kernel_file.write_bytes(result.elf)
    if not pvh:
        progress(f"PVH boot not possible ({reason}); the bzImage will be booted")
    return {
        "pvh": pvh, "pvh_reason": reason, "compression": compression,
        "file": kernel_file.name, "sha256": sha256_file(kernel_file),
        "vmlinuz": vmlinuz.name, "vmlinuz_sha256": sha256_file(vmlinuz),
        "config": f"config-{release}",
    }


def assemble(pkg: KernelPackage, out: Path, debs_dir: Path, keys: Keys, fingerprint: str,
             progress: Callable[[str], None]) -> None:
    """Fetch and unpack ``pkg``, then write kernel, initramfs, modules copy and manifest.json to ``out``.

    The manifest is written last: its presence marks a complete image.
    """
    started = time.monotonic()
    release = pkg.release
    deb = fetch(pkg, debs_dir, progress)
    deb_sha = sha256_file(deb)
    work = out / "work"
    progress(f"unpacking {deb.name}")
    unpacked = extract(deb, work / "deb", release)
    kernel = _kernel_files(unpacked / "boot", release, out, progress)

    tree = ModuleTree(unpacked, release)
    if not (tree.moddir / "modules.dep").is_file():
        depmod(unpacked, release)
    selection = select_modules(tree)

    progress(f"assembling the initramfs ({len(selection.shipped)} modules)")
    staging = work / "initramfs"
    staging.mkdir()
    populate(staging, RootfsSpec(
        release=release, init_script=init_script(), module_root=tree.moddir,
        modules=[selection.paths[m] for m in selection.shipped], boot_modules=selection.boot,
        host_key=keys.host_private, authorized_key=keys.client_public,
    ))
    initrd = out / INITRD_NAME
    entries = write_initramfs(staging, initrd)
    modules_rel = f"modules/{release}"
    shutil.copytree(staging / "lib" / "modules" / release, out / modules_rel, symlinks=True)

    write_manifest(out / MANIFEST_NAME, {
        "builder_fingerprint": fingerprint,
        "build_time": datetime.now(UTC).isoformat(timespec="seconds"),
        "build_seconds": round(time.monotonic() - started, 2),
        "kernel": {"release": release, "package": pkg.package, "version": pkg.version,
                   "deb": deb.name, "deb_sha256": deb_sha, **kernel},
        "initrd": {"file": INITRD_NAME, "sha256": sha256_file(initrd), "size": initrd.stat().st_size,
                   "uncompressed_size": sum(len(e.data) for e in entries)},
        "cmdline": cmdline_for(kernel["pvh"]),
        "cmdline_bzimage": cmdline_for(False),
        "ssh": {"user": "root", "client_public_key": keys.client_public, "host_public_key": keys.host_public},
        "host_packages": {p: package_version(p) for p in ("busybox-static", "dropbear-bin", "ethtool")},
        "modules_dir": modules_rel,
        "boot_modules": selection.boot,
        "modules": _module_records(tree, selection),
        "initramfs_files": initramfs_listing(entries),
    })
    shutil.rmtree(work)


def _module_records(tree: ModuleTree, selection: ModuleSelection) -> list[dict[str, Any]]:
    records = []
    for name in selection.order:
        if name not in selection.paths:
            records.append({"name": name, "builtin": True})
            continue
        records.append({
            "name": name,
            "path": selection.paths[name],
            "size": (tree.moddir / selection.paths[name]).stat().st_size,
            "vermagic": tree.field(name, "vermagic"),
            "depends": tree.depends(name),
        })
    return records

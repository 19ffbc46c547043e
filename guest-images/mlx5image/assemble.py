"""Assemble one guest image into an (empty, temporary) folder from a linux-image package."""

from __future__ import annotations

import dataclasses
import gzip
import lzma
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .debpkg import KernelFiles, KernelPackage, extract, fetch, fetch_parts, sha256_file
from .errors import ImageError
from .hosttools import find_tool, package_version, run
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


def _kernel_files(files: KernelFiles, release: str, out: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    """Copy config and bzImage; add the PVH ELF vmlinux when the kernel supports it. Manifest fields."""
    shutil.copyfile(files.config, out / f"config-{release}")
    vmlinuz = out / f"vmlinuz-{release}"
    shutil.copyfile(files.vmlinuz, vmlinuz)
    config = kernel_config(files.config.read_text())

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
    parts = fetch_parts(pkg, debs_dir, progress)
    deb_sha = sha256_file(deb)
    work = out / "work"
    progress(f"unpacking {', '.join(d.name for d in [deb, *parts])}")
    files = extract([deb, *parts], work / "deb", release)
    unpacked = files.root
    kernel = _kernel_files(files, release, out, progress)
    kernel.update({"package": pkg.package, "version": pkg.version, "deb": deb.name, "deb_sha256": deb_sha,
                   **({"suite": pkg.suite} if pkg.suite else {}),
                   **({"parts": [{"package": p.package, "version": pkg_part_version(p.package, d),
                                  "deb": d.name, "sha256": sha256_file(d)} for p, d in zip(pkg.parts, parts,
                                                                                          strict=True)]}
                      if pkg.parts else {})})
    assemble_tree(ModuleTree(unpacked, release), kernel, out, keys, fingerprint, progress, started)
    shutil.rmtree(work)


def assemble_tree(tree: ModuleTree, kernel: dict[str, Any], out: Path, keys: Keys, fingerprint: str,
                  progress: Callable[[str], None], started: float, extra_cmdline: str = "") -> None:
    """Write initramfs, modules copy and manifest.json to ``out`` for a kernel whose files are already
    there (``kernel``: the manifest's kernel fields, :func:`_kernel_files` plus the package's identity) and
    whose modules are in ``tree``. ``extra_cmdline`` is appended to both recommended command lines.
    Scratch files go to ``out/work``, which the caller removes."""
    release = tree.release
    work = out / "work"
    if not (tree.moddir / "modules.dep").is_file():
        depmod(tree.root, release)
    selection = decompress_modules(tree, select_modules(tree))

    progress(f"assembling the initramfs ({len(selection.shipped)} modules)")
    staging = work / "initramfs"
    staging.mkdir(parents=True)
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
        "kernel": {"release": release, **kernel},
        "initrd": {"file": INITRD_NAME, "sha256": sha256_file(initrd), "size": initrd.stat().st_size,
                   "uncompressed_size": sum(len(e.data) for e in entries)},
        "cmdline": " ".join(filter(None, [cmdline_for(kernel["pvh"]), extra_cmdline])),
        "cmdline_bzimage": " ".join(filter(None, [cmdline_for(False), extra_cmdline])),
        "ssh": {"user": "root", "client_public_key": keys.client_public, "host_public_key": keys.host_public},
        "host_packages": {p: package_version(p) for p in ("busybox-static", "dropbear-bin", "ethtool")},
        "modules_dir": modules_rel,
        "boot_modules": selection.boot,
        "modules": _module_records(tree, selection),
        "initramfs_files": initramfs_listing(entries),
    })


def pkg_part_version(package: str, deb: Path) -> str:
    return run(["dpkg-deb", "-f", deb, "Version"], what=f"reading {deb.name}").stdout.strip()


# Module compression suffixes Debian has used (CONFIG_MODULE_COMPRESS_XZ since its 6.x kernels).
_COMPRESSED = (".ko.xz", ".ko.gz", ".ko.zst")


def _decompress(src: Path) -> bytes:
    data = src.read_bytes()
    if src.name.endswith(".xz"):
        return lzma.decompress(data)
    if src.name.endswith(".gz"):
        return gzip.decompress(data)
    zstd = find_tool("zstd")
    if zstd is None:
        raise ImageError(f"{src.name} is zstd-compressed: install zstd ('apt-get install -y zstd') and retry.")
    return subprocess.run([str(zstd), "-dc", str(src)], check=True, capture_output=True).stdout


def decompress_modules(tree: ModuleTree, selection: ModuleSelection) -> ModuleSelection:
    """Ship plain .ko files: the guest's busybox modprobe reads modules itself and passes them to
    init_module(2), which takes an uncompressed image (only finit_module(2) with
    MODULE_INIT_COMPRESSED_FILE decompresses in the kernel, kernel/module/main.c); the initramfs is
    gzip-compressed as a whole anyway. Each compressed module of the selection is written uncompressed
    next to itself (same path without the suffix); the selection then names those."""
    paths = dict(selection.paths)
    for name, rel in selection.paths.items():
        suffix = next((s for s in _COMPRESSED if rel.endswith(s)), None)
        if suffix is None:
            continue
        plain = rel[: -len(suffix)] + ".ko"
        (tree.moddir / plain).write_bytes(_decompress(tree.moddir / rel))
        paths[name] = plain
    return dataclasses.replace(selection, paths=paths)


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

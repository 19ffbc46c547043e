"""``ensure_image``: build (once) and return the guest image for a Debian kernel.

An image lives in ``cache_dir()/images/<kernel-release>/``. It is built in a temporary sibling directory
and renamed into place, so an interrupted build never leaves a half image; a per-release lock makes
concurrent callers wait for one build instead of racing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .cache import cache_dir
from .debpkg import KernelPackage, extract, fetch, resolve_kernel, sha256_file
from .errors import ImageError
from .hosttools import package_version
from .initramfs import ModuleSelection, select_modules, write_initramfs
from .keys import Keys, ensure_keys
from .kmod import ModuleTree, depmod
from .manifest import MANIFEST_NAME, initramfs_listing, load_manifest, write_manifest
from .rootfs import RootfsSpec, populate
from .vmlinux import extract_vmlinux

# Bump to force a rebuild of every cached image (e.g. when a host tool's output format changes).
BUILDER_VERSION = 1

# console=ttyS0: kernel log and init markers on the serial port the orchestrator reads.
# net.ifnames=0 / ipv6.disable=1: plain eth0, no IPv6 noise. rcupdate.rcu_cpu_stall_timeout=300: TCG is
# slow enough to trip the default 21 s. panic=0: never auto-reboot after a panic, so the state can be
# dumped. printk.devkmsg=on: tests may write markers to /dev/kmsg without being rate-limited.
# (The kernel only knows the parameter as rcupdate.*; plain rcu_cpu_stall_timeout= is passed to /init.)
CMDLINE = ("console=ttyS0 net.ifnames=0 ipv6.disable=1 modprobe.blacklist=mlx5_ib "
           "rcupdate.rcu_cpu_stall_timeout=300 panic=0 printk.devkmsg=on")
# KASLR lives in the bzImage decompressor, so a PVH boot never randomises (and the kernel proper calls
# "nokaslr" unknown); bzImage boots get nokaslr so addresses in triage are the same either way.
BZIMAGE_EXTRA = " nokaslr"


def cmdline_for(pvh: bool) -> str:
    """Recommended kernel command line for the PVH vmlinux (True) or the bzImage (False)."""
    return CMDLINE if pvh else CMDLINE + BZIMAGE_EXTRA


INITRD_NAME = "initramfs.cpio.gz"


@dataclass(frozen=True)
class GuestImage:
    """A bootable guest: give QEMU ``kernel``, ``initrd`` and ``cmdline``; log in as root with ``ssh_key``."""

    kernel_release: str
    package_version: str
    kernel: Path  # the file for -kernel: the PVH ELF vmlinux if pvh, else the bzImage
    pvh: bool
    initrd: Path
    ssh_key: Path  # OpenSSH ed25519 private key (paramiko reads it)
    manifest: Path
    modules_dir: Path  # host copy of the guest's /lib/modules/<release>
    cmdline: str
    vmlinuz: Path  # the bzImage, always present (for firmware that cannot load an ELF)
    directory: Path  # the image folder


def init_script() -> bytes:
    """The guest's /init, shipped as package data next to this module."""
    return (Path(__file__).parent / "init").read_bytes()


def builder_fingerprint(keys: Keys) -> str:
    """Changes whenever a rebuild is needed for reasons other than the kernel package.

    Covers the builder's own source (so a changed /init or layout never hides behind a cached image),
    including the command line, and both SSH keys.
    """
    h = hashlib.sha256()
    for part in (str(BUILDER_VERSION), keys.client_public, keys.host_public):
        h.update(part.encode() + b"\0")
    package = Path(__file__).parent
    for src in sorted([*package.glob("*.py"), package / "init"]):
        h.update(src.name.encode() + b"\0" + src.read_bytes() + b"\0")
    return h.hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _from_manifest(folder: Path, data: dict[str, Any], keys: Keys) -> GuestImage:
    k = data["kernel"]
    return GuestImage(
        kernel_release=k["release"],
        package_version=k["version"],
        kernel=folder / k["file"],
        pvh=bool(k["pvh"]),
        initrd=folder / data["initrd"]["file"],
        ssh_key=keys.client_private,
        manifest=folder / MANIFEST_NAME,
        modules_dir=folder / data["modules_dir"],
        cmdline=data["cmdline"],
        vmlinuz=folder / k["vmlinuz"],
        directory=folder,
    )


def _cached(folder: Path, pkg: KernelPackage, fingerprint: str, keys: Keys) -> GuestImage | None:
    """The image in ``folder`` if it is complete and built from the same package and builder inputs."""
    data = load_manifest(folder / MANIFEST_NAME)
    if data is None or data.get("builder_fingerprint") != fingerprint:
        return None
    try:
        k = data["kernel"]
        if k["package"] != pkg.package or k["version"] != pkg.version:
            return None
        if pkg.deb is not None and k["deb_sha256"] != sha256_file(pkg.deb):
            return None
        if pkg.expected_sha256 and k["deb_sha256"] != pkg.expected_sha256:
            return None
        image = _from_manifest(folder, data, keys)
    except (KeyError, TypeError):
        return None
    needed = (image.kernel, image.vmlinuz, image.initrd, image.modules_dir)
    return image if all(p.exists() for p in needed) else None


def ensure_image(kernel: str | None = None, *, progress: Callable[[str], None] = print) -> GuestImage:
    """Return the guest image for ``kernel``, building it first if it is not cached.

    ``kernel``: None for the kernel Debian's linux-image-amd64 depends on, a release such as
    ``6.1.0-56-amd64``, or a path to a linux-image .deb. Raises :class:`ImageError` (one sentence saying
    what to do) when a package, file or host tool is missing.
    """
    root = cache_dir()
    pkg = resolve_kernel(kernel, progress, root / "apt-memo.json")
    keys = ensure_keys(root / "keys")
    fingerprint = builder_fingerprint(keys)
    images = root / "images"
    images.mkdir(exist_ok=True)
    folder = images / pkg.release
    with _locked(images / f".{pkg.release}.lock"):
        image = _cached(folder, pkg, fingerprint, keys)
        if image is not None:
            return image
        for stale in images.glob(f".*-{pkg.release}-*"):  # left by a killed build
            shutil.rmtree(stale, ignore_errors=True)
        progress(f"building guest image for {pkg.package} {pkg.version} in {folder}")
        tmp = Path(tempfile.mkdtemp(dir=images, prefix=f".tmp-{pkg.release}-"))
        tmp.chmod(0o755)
        try:
            _build(pkg, tmp, root, keys, fingerprint, progress)
            _swap_into_place(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        image = _cached(folder, pkg, fingerprint, keys)
    if image is None:
        raise ImageError(f"the image built in {folder} is incomplete; delete that folder and retry.")
    return image


def _swap_into_place(tmp: Path, folder: Path) -> None:
    """Replace ``folder`` by ``tmp`` with renames only (readers see the old or the new image)."""
    old = None
    if folder.exists():
        old = folder.with_name(f".old-{folder.name}-{os.getpid()}")
        os.replace(folder, old)
    os.replace(tmp, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def kernel_config(text: str) -> dict[str, str]:
    """CONFIG_X=value lines of a kernel .config (``is not set`` lines are simply absent)."""
    out = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            key, _, value = line.partition("=")
            out[key] = value
    return out


def _build(pkg: KernelPackage, out: Path, root: Path, keys: Keys, fingerprint: str,
           progress: Callable[[str], None]) -> None:
    started = time.monotonic()
    release = pkg.release
    deb = fetch(pkg, root / "debs", progress)
    deb_sha = sha256_file(deb)
    work = out / "work"
    progress(f"unpacking {deb.name}")
    unpacked = extract(deb, work / "deb", release)

    boot = unpacked / "boot"
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
        "kernel": {
            "release": release, "package": pkg.package, "version": pkg.version,
            "deb": deb.name, "deb_sha256": deb_sha,
            "pvh": pvh, "pvh_reason": reason, "compression": compression,
            "file": kernel_file.name, "sha256": sha256_file(kernel_file),
            "vmlinuz": vmlinuz.name, "vmlinuz_sha256": sha256_file(vmlinuz),
            "config": f"config-{release}",
        },
        "initrd": {"file": INITRD_NAME, "sha256": sha256_file(initrd), "size": initrd.stat().st_size,
                   "uncompressed_size": sum(len(e.data) for e in entries)},
        "cmdline": cmdline_for(pvh),
        "cmdline_bzimage": cmdline_for(False),
        "ssh": {"user": "root", "client_public_key": keys.client_public, "host_public_key": keys.host_public},
        "host_packages": {p: package_version(p) for p in ("busybox-static", "dropbear-bin")},
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

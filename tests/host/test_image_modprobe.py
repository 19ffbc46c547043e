"""Checks on the built guest image: busybox modprobe in the initramfs reads depmod's output.

Runs the image's own busybox in a chroot of its unpacked initramfs: as root, or as another user inside a
user namespace (``unshare -r``). Needs no network and takes well under a second.
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mlx5image.build import GuestImage
from mlx5image.cpio import read_archive
from mlx5image.hosttools import find_tool

if TYPE_CHECKING:
    from .conftest import Unavailable

GuestRoot = tuple[Path, dict[str, Any]]


def _unpack(initrd: Path, dest: Path) -> None:
    for entry in read_archive(gzip.decompress(initrd.read_bytes())):
        path = dest / entry.path
        if entry.kind == "dir":
            path.mkdir(exist_ok=True)
            path.chmod(stat.S_IMODE(entry.mode))
        elif entry.kind == "symlink":
            path.symlink_to(entry.data.decode())
        elif entry.kind == "file":
            path.write_bytes(entry.data)
            path.chmod(stat.S_IMODE(entry.mode))


@pytest.fixture(scope="module")
def chroot(unavailable: Unavailable) -> list[str]:
    """The command prefix that runs a program chrooted: chroot itself as root, else in a user namespace."""
    tool = find_tool("chroot")
    if tool is None:
        unavailable("chroot is not installed (coreutils)")
    if os.geteuid() == 0:
        return [str(tool)]
    unshare = find_tool("unshare")
    if unshare is None or subprocess.run([str(unshare), "-r", "true"], capture_output=True).returncode != 0:
        unavailable("chroot needs root or unprivileged user namespaces (unshare -r)")
    return [str(unshare), "-r", str(tool)]


@pytest.fixture(scope="module")
def guest_root(image: GuestImage, tmp_path_factory: pytest.TempPathFactory) -> GuestRoot:
    manifest = json.loads(image.manifest.read_text())
    assert manifest["kernel"]["release"] == image.kernel_release
    root = tmp_path_factory.mktemp("guestroot")
    _unpack(image.initrd, root)
    host_release = os.uname().release
    if host_release != image.kernel_release:  # busybox modprobe looks in /lib/modules/$(uname -r)
        (root / "lib" / "modules" / host_release).symlink_to(image.kernel_release)
    return root, manifest


def _modprobe(chroot: list[str], root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*chroot, str(root), "/bin/busybox", "modprobe", *args], capture_output=True,
                          text=True)


def test_busybox_modprobe_resolves_mlx5_core_from_modules_dep(chroot: list[str], guest_root: GuestRoot) -> None:
    root, manifest = guest_root
    proc = _modprobe(chroot, root, "-D", "mlx5_core")
    assert proc.returncode == 0, proc.stderr
    loaded = [Path(line.split()[1]).name for line in proc.stdout.splitlines() if line.startswith("insmod ")]
    assert loaded[-1] == "mlx5_core.ko"
    expected = {Path(m["path"]).name for m in manifest["modules"] if m["name"] in ("psample", "mlxfw")}
    assert expected and expected <= set(loaded[:-1])


def test_every_shipped_module_is_loadable_by_name(chroot: list[str], guest_root: GuestRoot) -> None:
    root, manifest = guest_root
    for module in manifest["modules"]:
        if not module.get("builtin"):
            proc = _modprobe(chroot, root, "-D", module["name"])
            assert proc.returncode == 0 and module["path"] in proc.stdout, (module["name"], proc.stderr)


def test_mlx5_ib_is_not_shipped(chroot: list[str], guest_root: GuestRoot) -> None:
    root, manifest = guest_root
    assert not list(root.rglob("mlx5_ib.ko"))
    assert _modprobe(chroot, root, "-D", "mlx5_ib").returncode != 0
    assert "blacklist mlx5_ib" in (root / "etc/modprobe.d/mlx5lab.conf").read_text()

"""Checks on an already built guest image: busybox modprobe in the initramfs reads depmod's output.

Skipped unless an image exists in the cache (``python -m mlx5image`` builds one) and we may chroot.
Needs no network and takes well under a second.
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from mlx5image.cache import cache_dir
from mlx5image.cpio import read_archive


def _built_images() -> list[Path]:
    images = cache_dir() / "images"
    return sorted(p.parent for p in images.glob("*/manifest.json")) if images.is_dir() else []


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root"),
    pytest.mark.skipif(not _built_images(), reason="no guest image built yet (python -m mlx5image)"),
]


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
def guest_root(tmp_path_factory) -> tuple[Path, dict]:
    folder = _built_images()[0]
    manifest = json.loads((folder / "manifest.json").read_text())
    root = tmp_path_factory.mktemp("guestroot")
    _unpack(folder / manifest["initrd"]["file"], root)
    release = manifest["kernel"]["release"]
    host_release = os.uname().release
    if host_release != release:  # busybox modprobe looks in /lib/modules/$(uname -r)
        (root / "lib" / "modules" / host_release).symlink_to(release)
    return root, manifest


def _modprobe(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", str(root), "/bin/busybox", "modprobe", *args], capture_output=True,
                          text=True)


def test_busybox_modprobe_resolves_mlx5_core_from_modules_dep(guest_root):
    root, manifest = guest_root
    proc = _modprobe(root, "-D", "mlx5_core")
    assert proc.returncode == 0, proc.stderr
    loaded = [Path(line.split()[1]).name for line in proc.stdout.splitlines() if line.startswith("insmod ")]
    assert loaded[-1] == "mlx5_core.ko"
    expected = {Path(m["path"]).name for m in manifest["modules"] if m["name"] in ("psample", "mlxfw")}
    assert expected and expected <= set(loaded[:-1])


def test_every_shipped_module_is_loadable_by_name(guest_root):
    root, manifest = guest_root
    for module in manifest["modules"]:
        if not module.get("builtin"):
            proc = _modprobe(root, "-D", module["name"])
            assert proc.returncode == 0 and module["path"] in proc.stdout, (module["name"], proc.stderr)


def test_mlx5_ib_is_not_shipped(guest_root):
    root, manifest = guest_root
    assert not list(root.rglob("mlx5_ib.ko"))
    assert _modprobe(root, "-D", "mlx5_ib").returncode != 0
    assert "blacklist mlx5_ib" in (root / "etc/modprobe.d/mlx5lab.conf").read_text()

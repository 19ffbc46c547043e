"""Debug info cache: extraction from a (tiny, made-up) -dbg package, the stamp, variant overrides, errors."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mlx5lab import Mlx5LabError
from mlx5lab.triage import debuginfo
from mlx5lab.triage.debuginfo import debug_files, fetch_debuginfo, find_debuginfo

RELEASE = "6.1.0-99-amd64"  # made up: nothing of the host, the cache or the archive is read

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")


def _fake_dbg_deb(tmp: Path, with_psample: bool = True) -> Path:
    """A -dbg .deb with the layout of Debian's, and one file that must not be extracted."""
    root = tmp / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: linux-image-{RELEASE}-dbg\nVersion: 1\nArchitecture: amd64\nMaintainer: t <t@t>\n"
        "Description: test\n")
    boot = root / "usr/lib/debug/boot"
    boot.mkdir(parents=True)
    (boot / f"vmlinux-{RELEASE}").write_bytes(b"\x7fELF vmlinux")
    mods = root / f"usr/lib/debug/lib/modules/{RELEASE}/kernel/drivers"
    names = ["net/ethernet/mellanox/mlx5/core/mlx5_core.ko", "net/ethernet/mellanox/mlxfw/mlxfw.ko",
             "misc/pvpanic/pvpanic.ko", "misc/pvpanic/pvpanic-pci.ko", "net/virtio_net.ko", "net/e1000/e1000.ko"]
    if with_psample:
        names.append("../net/psample/psample.ko")
    for name in names:
        p = mods / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"ko " + name.encode())
    deb = tmp / f"linux-image-{RELEASE}-dbg_1_amd64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)], check=True,
                   capture_output=True)
    return deb


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLX5LAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _offer(monkeypatch: pytest.MonkeyPatch, deb: Path, cache: Path) -> None:
    """Pretend apt knows the package and that it was downloaded already."""
    (cache / "debs").mkdir(parents=True, exist_ok=True)
    shutil.copy(deb, cache / "debs" / deb.name)
    info = {"Package": f"linux-image-{RELEASE}-dbg", "Version": "1", "Size": str(deb.stat().st_size)}
    monkeypatch.setattr(debuginfo, "_apt_show", lambda package: info)


@pytest.mark.parametrize("with_psample", [True, False])
def test_fetch_extracts_only_what_triage_reads(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch,
                                               with_psample: bool) -> None:
    _offer(monkeypatch, _fake_dbg_deb(tmp_path, with_psample), cache)
    assert find_debuginfo(RELEASE) is None
    messages: list[str] = []
    info = fetch_debuginfo(RELEASE, progress=messages.append)
    assert info.vmlinux.read_bytes() == b"\x7fELF vmlinux"
    expected = {"mlx5_core", "mlxfw", "pvpanic", "pvpanic_pci", "virtio_net"} | ({"psample"} if with_psample else set())
    assert set(info.modules) == expected  # e1000 is not extracted
    assert (cache / "debuginfo" / RELEASE / "complete.json").is_file()
    assert not list((cache / "debs").glob("*.deb"))  # the .deb is deleted
    assert find_debuginfo(RELEASE) == info
    assert fetch_debuginfo(RELEASE, progress=messages.append) == info  # cached: no second extraction
    assert any("extracting" in m for m in messages)


def test_unknown_package_is_a_clear_error(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(debuginfo, "_apt_show", lambda package: {})
    monkeypatch.setattr(debuginfo.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, "", ""))
    with pytest.raises(Mlx5LabError, match="not known to apt"):
        fetch_debuginfo(RELEASE, progress=lambda m: None)


def test_not_enough_disk_space(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(debuginfo, "_apt_show", lambda package: {"Version": "1", "Size": "858383044"})
    monkeypatch.setattr(debuginfo.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 5, 5))
    with pytest.raises(Mlx5LabError, match="not enough disk space"):
        fetch_debuginfo(RELEASE, progress=lambda m: None)


def test_variant_module_replaces_debians(tmp_path: Path) -> None:
    info = debuginfo.DebugInfo(RELEASE, tmp_path / "vmlinux", {"mlx5_core": tmp_path / "deb-mlx5_core.ko",
                                                                "mlxfw": tmp_path / "mlxfw.ko"})
    own = tmp_path / "mlx5_core.debug.ko"
    own.write_bytes(b"ko")
    ident = {"variant": "vulnerable", "variant_manifest": {"module_debug": str(own)}}
    files, warnings = debug_files(info, ident)
    assert own in files and tmp_path / "deb-mlx5_core.ko" not in files and not warnings
    own.unlink()
    files, warnings = debug_files(info, ident)
    assert all("mlx5_core" not in p.name for p in files) and "missing" in warnings[0]
    files, warnings = debug_files(info, {"variant": "stock"})
    assert tmp_path / "deb-mlx5_core.ko" in files and not warnings

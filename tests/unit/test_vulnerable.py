"""The Variant B positive-control build: edits, package checks, extraction, kbuild wrapper, cache.

Nothing here compiles a kernel module, touches apt or reads the cache: host tools are faked where needed.
The edits are checked against the guest kernel's real Debian source in tests/host/test_vulnerable_source.py.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mlx5image import driver, vulnerable
from mlx5image.errors import ImageError
from mlx5image.hosttools import find_tool
from mlx5image.vulnerable import debs as vuln_debs
from mlx5image.vulnerable.edits import VARIANT_B, TextEdit, apply_edits, apply_to_text, recipe_digest
from mlx5image.vulnerable.kbuild import kbuild

RELEASE = "6.1.0-56-amd64"  # data for the fakes below: no package of this release is needed
VERSION = "6.1.192-2"

# -- edits ------------------------------------------------------------------------------------------


def _edit(anchor: str = "old();\n", replacement: str = "new();\n") -> TextEdit:
    return TextEdit("x/test", "mlx5/core/f.c", anchor, replacement, "f.c: old -> new")


def test_edit_applies_once() -> None:
    assert apply_to_text("a\nold();\nb\n", _edit()) == "a\nnew();\nb\n"


@pytest.mark.parametrize(("text", "words"), [("nothing here\n", "does not occur"),
                                              ("old();\nold();\n", "occurs 2 times")])
def test_edit_anchor_must_match_exactly_once(text: str, words: str) -> None:
    with pytest.raises(ImageError, match=f"'x/test'.*{words}.*mlx5/core/f.c"):
        apply_to_text(text, _edit())


def test_failed_edit_leaves_tree_untouched(tmp_path: Path) -> None:
    f = tmp_path / "mlx5" / "core" / "f.c"
    f.parent.mkdir(parents=True)
    f.write_text("old();\n")
    bad = TextEdit("y/missing", "mlx5/core/f.c", "absent();\n", "", "")
    with pytest.raises(ImageError, match="y/missing"):
        apply_edits(tmp_path, [_edit(), bad])
    assert f.read_text() == "old();\n"
    with pytest.raises(ImageError, match="g.c is missing"):
        apply_edits(tmp_path, [TextEdit("z", "mlx5/core/g.c", "a", "b", "")])


def test_edits_compose_and_diff(tmp_path: Path) -> None:
    f = tmp_path / "mlx5" / "core" / "f.c"
    f.parent.mkdir(parents=True)
    f.write_text("one();\nold();\n")
    second = TextEdit("x/2", "mlx5/core/f.c", "new();\n", "newer();\n", "")
    diff = apply_edits(tmp_path, [_edit(), second])
    assert f.read_text() == "one();\nnewer();\n"
    assert "-old();" in diff and "+newer();" in diff and "a/mlx5/core/f.c" in diff


def test_recipe_digest_tracks_every_edit_field() -> None:
    base = recipe_digest([_edit()], "CONFIG_MLX5_CORE=m")
    assert base == recipe_digest([_edit()], "CONFIG_MLX5_CORE=m")
    assert base != recipe_digest([_edit(replacement="other();\n")], "CONFIG_MLX5_CORE=m")
    assert base != recipe_digest([_edit(anchor="older();\n")], "CONFIG_MLX5_CORE=m")
    assert base != recipe_digest([_edit()], "CONFIG_MLX5_CORE=y")


def test_variant_b_covers_the_four_changes() -> None:
    files = [e.file for e in VARIANT_B]
    assert files.count("mlx5/core/cmd.c") == 3  # guard, helper, include
    assert {"mlx5/core/main.c", "mlx5/core/en_main.c", "mlx5/core/mlx5_core.h"} <= set(files)
    assert len({e.name for e in VARIANT_B}) == len(VARIANT_B)
    assert all(e.summary for e in VARIANT_B)


# -- packages ---------------------------------------------------------------------------------------


def test_source_package_name() -> None:
    assert vuln_debs.source_package(RELEASE) == "linux-source-6.1"
    assert vuln_debs.source_package("5.10.0-30-amd64") == "linux-source-5.10"
    with pytest.raises(ImageError):
        vuln_debs.source_package("linux")


def _fake_run(answers: dict[str, tuple[int, str]]) -> Any:
    def run(argv: list[Any], **_kw: Any) -> SimpleNamespace:
        key = " ".join(str(a) for a in argv[:2])
        rc, out = answers.get(key, (1, ""))
        return SimpleNamespace(returncode=rc, stdout=out, stderr="")
    return run


POLICY = """linux-source-6.1:
  Installed: (none)
  Candidate: 6.1.192-1
  Version table:
     6.1.192-1 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
 *** 6.1.190-1 100
        100 /var/lib/dpkg/status
"""


def test_fetch_source_refuses_another_version(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(vuln_debs, "run", _fake_run({"apt-cache show": (100, ""),
                                                     "apt-cache policy": (0, POLICY)}))
    with pytest.raises(ImageError, match=r"no linux-source-6.1 6.1.192-2 .*apt knows: 6.1.192-1, 6.1.190-1"):
        vuln_debs.fetch_source(RELEASE, VERSION, tmp_path, lambda _m: None)


def test_fetch_source_uses_the_checked_cached_deb(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    deb = tmp_path / f"linux-source-6.1_{VERSION}_all.deb"
    deb.write_bytes(b"payload")
    digest = vuln_debs.sha256_file(deb)
    show = f"Package: linux-source-6.1\nVersion: {VERSION}\nArchitecture: all\nSHA256: {digest}\n"
    monkeypatch.setattr(vuln_debs, "run", _fake_run({"apt-cache show": (0, show)}))
    got = vuln_debs.fetch_source(RELEASE, VERSION, tmp_path, lambda _m: pytest.fail("downloaded"))
    assert got.path == deb and got.sha256 == digest and got.version == VERSION


def test_headers_version_must_match(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vuln_debs, "installed_version", lambda _p: "6.1.190-1")
    with pytest.raises(ImageError, match="installed at version 6.1.190-1 but the guest kernel is 6.1.192-2"):
        vuln_debs.ensure_headers(RELEASE, VERSION, lambda _m: None)


def test_headers_install_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vuln_debs, "installed_version", lambda _p: None)
    monkeypatch.setattr(vuln_debs.os, "geteuid", lambda: 1000)
    with pytest.raises(ImageError, match=f"needs root.*apt-get install linux-headers-{RELEASE}={VERSION}"):
        vuln_debs.ensure_headers(RELEASE, VERSION, lambda _m: None)


def _tar_bytes(files: dict[str, bytes], mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _fake_source_deb(tmp_path: Path, skip: str = "") -> Path:
    top = "linux-source-9.9/"
    mel = top + "drivers/net/ethernet/mellanox/"
    names = [top + "Makefile", mel + "Kconfig", mel + "mlx4/main.c", *(mel + f for f in vuln_debs.REQUIRED_FILES),
             mel + "mlx5/core/en/params.c", mel + "mlxsw/core.c", top + "drivers/net/ethernet/realtek/r8169.c"]
    files = {n: n.encode() for n in names if not n.endswith(skip) or not skip}
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text("Package: linux-source-9.9\nVersion: 1\nArchitecture: all\n"
                                             "Maintainer: t <t@example.org>\nDescription: test\n")
    (root / "usr/src").mkdir(parents=True)
    (root / "usr/src/linux-source-9.9.tar.xz").write_bytes(_tar_bytes(files, "w:xz"))
    deb = tmp_path / "linux-source-9.9_1_all.deb"
    subprocess.run(["dpkg-deb", "-Zgzip", "-b", str(root), str(deb)], check=True, capture_output=True)
    return deb


@pytest.mark.skipif(find_tool("dpkg-deb") is None, reason="dpkg-deb is not installed")
def test_extract_takes_only_mlx5_core_and_mlxfw(tmp_path: Path) -> None:
    out = vuln_debs.extract_mlx5_tree(_fake_source_deb(tmp_path), tmp_path / "x", lambda _m: None)
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert got == sorted([*vuln_debs.REQUIRED_FILES, "mlx5/core/en/params.c"])


@pytest.mark.skipif(find_tool("dpkg-deb") is None, reason="dpkg-deb is not installed")
def test_extract_reports_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="lacks mlxfw/mlxfw.h"):
        vuln_debs.extract_mlx5_tree(_fake_source_deb(tmp_path, skip="mlxfw.h"), tmp_path / "x", lambda _m: None)


# -- kbuild wrapper ---------------------------------------------------------------------------------


def _fake_make(tmp_path: Path, body: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    make = bindir / "make"
    make.write_text("#!/bin/sh\n" + body)
    make.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")


def test_kbuild_logs_and_returns_the_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = tmp_path / "mod"
    mod.mkdir()
    _fake_make(tmp_path, 'for a; do case "$a" in M=*) d=${a#M=};; esac; done\n'
                         'echo "  CC [M]  $d/a.o"; echo "  CC [M]  $d/b.o"; echo ko > "$d/m.ko"\n', monkeypatch)
    lines: list[str] = []
    ko = kbuild(tmp_path, mod, "m", tmp_path / "build.log", lines.append, jobs=1)
    assert ko == mod / "m.ko"
    log = (tmp_path / "build.log").read_text()
    assert f"M={mod}" in log and "CONFIG_MLX5_CORE=m" in log and "b.o" in log
    assert "2 objects" in lines[-1]


def test_kbuild_failure_names_log_and_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_make(tmp_path, 'echo "cmd.c:1: error: boom" >&2; exit 2\n', monkeypatch)
    with pytest.raises(ImageError, match=r"exit status 2\); see .*build.log; last lines: .*error: boom"):
        kbuild(tmp_path, tmp_path, "m", tmp_path / "build.log", lambda _m: None)


# -- cache --------------------------------------------------------------------------------------------


def _fake_build(calls: list[str]) -> Any:
    def build(pkg: Any, recipe: Any, digest: str, out: Path, log: Path, progress: Any) -> dict[str, Any]:
        release, version = pkg.release, pkg.version
        calls.append(version)
        for name in ("mlx5_core.ko", "mlx5_core.debug.ko"):
            (out / name).write_bytes(b"\x7fELF")
        log.write_text("built\n")
        return {"schema": 1, "recipe": digest, "kernel_release": release, "kernel_version": version,
                "source": {"sha256": "ab" * 32}, "vermagic": f"{release} SMP", "patch_summary": ["x"],
                "ko": "mlx5_core.ko", "ko_debug": "mlx5_core.debug.ko", "build_log": log.name}
    return build


def test_cache_hit_and_version_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLX5LAB_CACHE", str(tmp_path))
    version = [VERSION]
    monkeypatch.setattr(driver, "resolve_kernel",
                        lambda *_a: SimpleNamespace(version=version[0], release=RELEASE))
    calls: list[str] = []
    monkeypatch.setattr(driver, "build", _fake_build(calls))
    first = vulnerable.build_vulnerable_module(RELEASE, progress=lambda _m: None)
    assert first.ko.parent.name.startswith("vulnerable-") and first.ko.parent.parent.name == RELEASE
    assert first.vermagic == f"{RELEASE} SMP" and first.build_log.read_text() == "built\n"
    assert vulnerable.build_vulnerable_module(RELEASE, progress=lambda _m: None) == first
    assert calls == [VERSION]
    version[0] = "6.1.192-3"
    vulnerable.build_vulnerable_module(RELEASE, progress=lambda _m: None)
    assert calls == [VERSION, "6.1.192-3"]
    data = json.loads((first.ko.parent / vulnerable.MANIFEST).read_text())
    assert data["kernel_version"] == "6.1.192-3"


def test_failed_build_keeps_its_log_and_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLX5LAB_CACHE", str(tmp_path))
    monkeypatch.setattr(driver, "resolve_kernel", lambda *_a: SimpleNamespace(version=VERSION, release=RELEASE))

    def broken(pkg: Any, recipe: Any, digest: str, out: Path, log: Path, progress: Any) -> dict[str, Any]:
        log.write_text("error: boom\n")
        raise ImageError(f"build failed; see {log}")

    monkeypatch.setattr(driver, "build", broken)
    with pytest.raises(ImageError, match="see .*build.log") as info:
        vulnerable.build_vulnerable_module(RELEASE, progress=lambda _m: None)
    log = Path(str(info.value).split("see ")[1])
    assert log.read_text() == "error: boom\n"
    calls: list[str] = []
    monkeypatch.setattr(driver, "build", _fake_build(calls))
    mod = vulnerable.build_vulnerable_module(RELEASE, progress=lambda _m: None)
    assert calls == [VERSION] and mod.ko.is_file()
    shutil.rmtree(mod.ko.parent)

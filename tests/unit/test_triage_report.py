"""triage.json / triage.md for iteration and campaign folders, the CLI, and the background worker (no vmcore)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from mlx5lab import Mlx5LabError
from mlx5lab.cli import triage as triagecmd
from mlx5lab.triage.background import BackgroundTriage
from mlx5lab.triage.report import crash_folders, kernel_release, triage_iteration, triage_path
from mlx5lab.triage.result import TriageResult

DATA = Path(__file__).parent.parent / "data" / "oops"
IDENTITY = {"kernel_release": "6.1.0-56-amd64", "package_version": "6.1.192-2", "variant": "vulnerable",
            "variant_manifest": {"module_debug": "/nonexistent/mlx5_core.debug.ko"}}


@pytest.fixture(autouse=True)
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No debug info is cached, whatever this machine has."""
    monkeypatch.setenv("MLX5LAB_CACHE", str(tmp_path / "cache"))


def _iteration(folder: Path, *, crash: bool = True, vmcore: bool = False) -> Path:
    folder.mkdir(parents=True)
    result = {"iteration": int(folder.name.split("-")[-1]), "outcome": "panic" if crash else "clean",
              "identity": IDENTITY}
    (folder / "result.json").write_text(json.dumps(result))
    (folder / "console.log").write_text("[    0.000000] Linux version 6.1.0-56-amd64 (x)\nSSH-READY 2.0\n")
    if crash:
        shutil.copy(DATA / "vulnerable-gpf.oops.txt", folder / "oops.txt")
    if vmcore:
        (folder / "vmcore.kdump").write_bytes(b"KDUMP   not really")
    return folder


def test_console_only_iteration(tmp_path: Path) -> None:
    it = _iteration(tmp_path / "iter-0001")
    r = triage_iteration(it)
    assert r.title == "general protection fault in dma_pool_alloc"
    assert r.verdict_source == "console" and r.verdict.startswith("likely use-after-free")
    assert r.vmcore_skipped == "no vmcore in this folder"
    assert r.identity == {"kernel_release": "6.1.0-56-amd64", "package_version": "6.1.192-2",
                             "variant": "vulnerable"}
    saved = json.loads((it / "triage.json").read_text())
    assert saved["signature"] == r.signature
    md = (it / "triage.md").read_text()
    assert md.startswith("# Triage: general protection fault in dma_pool_alloc")
    assert "**Verdict** (from the console)" in md and "mlx5_alloc_cmd_msg [mlx5_core]" in md


def test_vmcore_without_debug_info_says_how_to_get_it(tmp_path: Path) -> None:
    r = triage_iteration(_iteration(tmp_path / "iter-0001", vmcore=True))
    assert r.vmcore is None
    assert "not cached" in r.vmcore_skipped and "--fetch-debuginfo" in r.vmcore_skipped
    assert "linux-image-6.1.0-56-amd64-dbg" in r.vmcore_skipped
    r = triage_iteration(tmp_path / "iter-0001", vmcore=False)
    assert "--no-vmcore" in r.vmcore_skipped


def test_campaign_folder(tmp_path: Path) -> None:
    camp = tmp_path / "camp"
    _iteration(camp / "iter-0001", crash=False)
    _iteration(camp / "iter-0002")
    _iteration(camp / "iter-0003")
    assert [p.name for p in crash_folders(camp)] == ["iter-0002", "iter-0003"]
    results = triage_path(camp)
    assert len(results) == 2 and not (camp / "iter-0001" / "triage.json").exists()
    summary = json.loads((camp / "triage-summary.json").read_text())
    assert summary["crashes"] == 2 and summary["groups"][0]["count"] == 2
    assert summary["groups"][0]["iterations"] == ["iter-0002", "iter-0003"]


def test_folder_with_nothing_to_triage(tmp_path: Path) -> None:
    with pytest.raises(Mlx5LabError, match="no crash to triage"):
        crash_folders(tmp_path)
    with pytest.raises(Mlx5LabError, match="not a folder"):
        crash_folders(tmp_path / "missing")


def test_kernel_release_fallbacks(tmp_path: Path) -> None:
    assert kernel_release(tmp_path, {"kernel_release": "X"}, None) == "X"
    (tmp_path / "console.log").write_text("[    0.0] Linux version 6.1.0-7-amd64 (debian)\n")
    assert kernel_release(tmp_path, {}, None) == "6.1.0-7-amd64"
    (tmp_path / "console.log").unlink()
    oops = (DATA / "vulnerable-gpf.oops.txt").read_text()
    assert kernel_release(tmp_path, {}, oops) == "6.1.0-56-amd64"


def test_sysrq_console_log_as_the_only_evidence(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(DATA / "sysrq-crash.console.log", folder / "console.log")
    r = triage_path(folder)[0]
    assert r.console_source == "console.log" and r.kind == "deliberate crash from sysrq"
    assert r.verdict == ("deliberate crash from sysrq (echo c > /proc/sysrq-trigger) by `sh` (pid 119); "
                            "not an mlx5 race.")


def _cli(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mlx5lab")
    triagecmd.add_parser(p.add_subparsers(dest="command", required=True))
    return p.parse_args(argv)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    camp = tmp_path / "camp"
    _iteration(camp / "iter-0001")
    _iteration(camp / "iter-0002", vmcore=True)
    args = _cli(["triage", str(camp), "--no-vmcore"])
    assert args.no_vmcore and not args.fetch_debuginfo
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "iter-0001: general protection fault in dma_pool_alloc" in out
    assert "2 x general protection fault in dma_pool_alloc" in out
    assert "--no-vmcore" in out
    with pytest.raises(Mlx5LabError):
        args = _cli(["triage", str(tmp_path / "nothing-here")])
        args.func(args)


def test_background_worker(tmp_path: Path) -> None:
    done: list[Path] = []
    worker = BackgroundTriage(lambda folder, result: done.append(folder))
    folders = [_iteration(tmp_path / f"iter-000{i}") for i in (1, 2)]
    for f in folders:
        worker.submit(f)
    worker.submit(tmp_path / "missing")  # a bad folder does not stop the worker
    worker.close(timeout=30)
    assert done == folders and all((f / "triage.md").exists() for f in folders)


def test_triage_json_is_the_typed_result(tmp_path: Path) -> None:
    it = _iteration(tmp_path / "iter-0001")
    r = triage_iteration(it)
    saved = json.loads((it / "triage.json").read_text())
    assert set(saved) == {"schema", "folder", "iteration", "outcome", "identity", "title", "kind", "signature",
                          "console_source", "console", "vmcore", "vmcore_skipped", "verdict", "verdict_source",
                          "timings"}  # the keys of triage.json before it had a type
    assert TriageResult.from_json(saved) == r

"""Triage on real vmcores: a deliberate sysrq crash, and the positive control's use-after-free."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mlx5dev.card import CardConfig
from mlx5image.build import GuestImage
from mlx5lab.campaign.evidence import dump_vmcore
from mlx5lab.triage.debuginfo import fetch_debuginfo
from mlx5lab.triage.report import triage_iteration
from mlx5lab.vm.machine import Machine, MachineConfig

from .test_race import journal, race


@pytest.fixture(scope="module")
def debuginfo(image: GuestImage) -> None:
    """The stock kernel's debug info: fetched into the cache once (about 860 MB, a minute)."""
    fetch_debuginfo(image.kernel_release, progress=lambda m: None)


def test_sysrq_vmcore_is_a_deliberate_crash_not_a_race(image: GuestImage, debuginfo: None,
                                                        tmp_path: Path) -> None:
    run = tmp_path / "sysrq"
    with Machine(MachineConfig(image=image, card=CardConfig(), workdir=run)) as m:
        m.wait_ssh(timeout=120)
        since = m.event_index()
        m.start_command("echo c > /proc/sysrq-trigger")
        assert m.wait_panic(timeout=10, since=since) is not None
        dump_vmcore(m, run / "vmcore.kdump")
    t0 = time.monotonic()
    report = triage_iteration(run)
    elapsed = time.monotonic() - t0
    assert report["vmcore"] is not None, report["vmcore_skipped"]
    assert "deliberate crash from sysrq" in report["verdict"]
    assert "not an mlx5 race" in report["verdict"]
    assert (run / "triage.md").read_text().startswith("# Triage")
    assert elapsed < 60  # generous: the target (10 s) is measured by hand, not asserted


def test_positive_control_crashes_share_a_signature_and_name_the_race(debuginfo: None, tmp_path: Path) -> None:
    out = tmp_path / "vulnerable"
    res = race("--variant", "vulnerable", "--iterations", "2", "--seed", "3", "--out", str(out))
    assert res.returncode == 1, res.stderr
    crashes = [out / e["dir"] for e in journal(out) if e["outcome"] == "panic"]
    assert crashes
    signatures = set()
    for folder in crashes:
        report = json.loads((folder / "triage.json").read_text())
        verdict = report["verdict"]
        assert verdict.startswith("use-after-free"), verdict
        assert "mlx5-reader" in verdict and "eth" in verdict and "0000:01:00." in verdict
        assert "poisoned" in verdict or "freed" in verdict
        assert "shutting down 0000:01:00." in verdict
        assert (folder / "triage.md").is_file()
        signatures.add(report["signature"])
    assert len(signatures) == 1

"""Triage end to end on real vmcores: a deliberate sysrq crash, and the positive control's use-after-free
as a race campaign triages it in the background. The dumps are the session's samples (tests/vm/conftest.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mlx5lab.triage.report import triage_iteration

if TYPE_CHECKING:
    from .conftest import Campaign

pytestmark = pytest.mark.usefixtures("debuginfo")  # the guest kernel's, cached by `make setup`


def test_sysrq_vmcore_is_a_deliberate_crash_not_a_race(sysrq_sample: Path,
                                                        sample_copy: Callable[[Path], Path]) -> None:
    run = sample_copy(sysrq_sample)
    t0 = time.monotonic()
    report = triage_iteration(run)
    elapsed = time.monotonic() - t0
    assert report.vmcore is not None, report.vmcore_skipped
    assert "deliberate crash from sysrq" in report.verdict
    assert "not an mlx5 race" in report.verdict
    assert json.loads((run / "triage.json").read_text())["verdict"] == report.verdict
    assert (run / "triage.md").read_text().startswith("# Triage")
    assert elapsed < 60  # generous: the target (10 s) is measured by hand, not asserted


def test_positive_control_crashes_share_a_signature_and_name_the_race(vulnerable_campaign: Campaign) -> None:
    res = vulnerable_campaign
    assert res.returncode == 1, res.stderr
    crashes = res.crashes()
    assert crashes
    signatures = set()
    for folder in crashes:
        report = json.loads((folder / "triage.json").read_text())
        verdict = report["verdict"]
        assert verdict.startswith("use-after-free"), verdict
        assert "mlx5lab-read" in verdict and "eth" in verdict and "0000:01:00." in verdict
        assert "poisoned" in verdict or "freed" in verdict
        assert "shutting down 0000:01:00." in verdict
        assert (folder / "triage.md").is_file()
        signatures.add(report["signature"])
    assert len(signatures) == 1

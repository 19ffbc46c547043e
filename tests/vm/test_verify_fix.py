"""``mlx5lab verify-fix`` on the positive control with the two example fixes of ``guest-images/fixes/``.

The seed's conclusion, in small numbers: the vendor-style fix (the netdev marked gone in mlx5e_remove only)
still panics on reboot, the seed write-up's proposal (detached on the way down, PTYS refused) is clean.
Each run is two module builds the first time (a few minutes each on 2 shared cores) and 5 race iterations
(15 to 30 s each), so the test is marked ``verifyfix`` (``make test-verify-fix``), not part of ``make test``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import run_cli

pytestmark = pytest.mark.verifyfix

FIXES = Path(__file__).parents[2] / "guest-images" / "fixes"


def verify_fix(release: str, fix: str, out: Path) -> tuple[int, str, dict[str, Any]]:
    res = run_cli("verify-fix", "--kernel", release, "--patch", str(FIXES / fix), "--base-iterations", "2",
                  "--iterations", "3", "--out", str(out), timeout=1700)
    assert res.returncode in (0, 1), res.stderr[-3000:]
    data = json.loads((out / "verdict.json").read_text())
    # stdout: each campaign's table, then the verdict and where the evidence is
    lines = res.stdout.splitlines()
    assert lines[-2] == data["verdict"] and lines[-1].startswith("evidence: "), res.stdout
    assert "verify-fix: base campaign, 2 iterations" in res.stderr  # progress lines while it runs
    return res.returncode, lines[-2], data


@pytest.mark.timeout(1800)
def test_vendor_style_fix_still_panics(release: str, tmp_path: Path) -> None:
    rc, out, data = verify_fix(release, "vendor-style.patch", tmp_path)
    assert rc == 1, out
    assert data["base"]["panic"] == 2 and data["base"]["n"] == 2, data
    assert data["fix"]["panic"] >= 1 and data["fix"]["infra"] == 0, data
    assert "not verified: the fix still panics" in out
    # the evidence of both campaigns is kept: a vmcore per panic, on each side
    for side in ("base", "fix"):
        assert list((tmp_path / side).glob("iter-*/vmcore.kdump")), side


@pytest.mark.timeout(1800)
def test_seed_proposal_is_clean(release: str, tmp_path: Path) -> None:
    rc, out, data = verify_fix(release, "seed-proposal.patch", tmp_path)
    assert rc == 0, out
    assert (data["base"]["panic"], data["fix"]["clean"], data["fix"]["n"]) == (2, 3, 3), data
    assert out == ("base: 2/2 panics; with the fix: 0/3 clean; at 95% confidence the fixed panic rate "
                   "is below 63.2%; fix verified"), out
    # the fix's iterations ran the race: the positive control's shutdown destroyed the pool under the readers
    console = (tmp_path / "fix" / "iter-0001" / "console.log").read_text(errors="replace")
    assert "command dma_pool destroyed at shutdown" in console

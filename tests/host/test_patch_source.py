"""A patch that does not apply to the guest kernel's Debian mlx5 source stops the build, showing its rejects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PATCHES = Path(__file__).parents[1] / "data" / "patches"


def test_rejected_patch_is_shown(release: str, linux_source_deb: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "mlx5lab", "image", "--kernel", release, "--patch",
                          str(PATCHES / "does-not-apply.patch")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 2, res.stderr
    assert "does-not-apply" not in res.stdout
    err = res.stderr
    assert "does not apply to the kernel's mlx5 source" in err and "1 out of 1 hunk FAILED" in err, err
    assert "rejected hunks:\n--- mlx5/core/main.c.rej" in err and "dev->pdev = NULL;" in err, err


def test_verify_fix_with_a_rejected_fix_stops_before_any_guest(release: str, linux_source_deb: Path,
                                                               tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "mlx5lab", "verify-fix", "--kernel", release, "--patch",
                          str(PATCHES / "does-not-apply.patch"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 2, res.stderr
    assert "does not apply to the kernel's mlx5 source" in res.stderr and "rejected hunks:" in res.stderr, res.stderr
    assert not (tmp_path / "base").exists() and not (tmp_path / "verdict.json").exists()

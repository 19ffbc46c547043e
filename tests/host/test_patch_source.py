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

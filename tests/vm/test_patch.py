"""A developer's patch to mlx5_core: built against the guest kernel's Debian source and headers, booted, seen.

``tests/data/patches/probe-pr-info.patch`` adds one pr_info() to ``main.c: probe_one``; ``mlx5lab boot --patch``
applies it to the kernel's own mlx5 source, builds the module out of tree (the first time: about 2 minutes
on 2 cores), and the guest's kernel log has the line once per PCI function.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlx5image.build import GuestImage
from mlx5image.driver import Recipe, build_module

from .conftest import run_cli

PATCHES = Path(__file__).parents[1] / "data" / "patches"


@pytest.mark.timeout(1200)
def test_patched_driver_prints_at_probe(release: str, image: GuestImage) -> None:
    patch = PATCHES / "probe-pr-info.patch"
    res = run_cli("boot", "--kernel", release, "--patch", str(patch), "--timeout", "300",
                  "--run", "dmesg | grep mlx5lab-patch; cat /sys/module/mlx5_core/taint", timeout=1100)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [line for line in res.stdout.splitlines() if "mlx5lab-patch: probe_one" in line]
    assert [line.split()[-1] for line in lines] == ["0000:01:00.0", "0000:01:00.1"], res.stdout
    assert "O" in res.stdout.splitlines()[-1], res.stdout  # the kernel marks an out-of-tree module: taint O
    module = build_module(release, Recipe("stock", (patch,)), progress=lambda _m: None)  # the cached build
    assert module.ko_debug.is_file() and module.vermagic.split()[0] == release
    data = json.loads((module.ko.parent / "stock.json").read_text())
    assert data["kernel_release"] == release and data["patch_summary"][0].startswith("patch ")

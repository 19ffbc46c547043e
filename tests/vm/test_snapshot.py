"""Snapshot boots end to end: an iteration restored from a template, with the card hot-plugged into the root
port, gives the verdicts of a classic boot on both controls, and its functions shut down in the classic order
(the order in the kernel's devices_kset, which the hot-plug probe builds anew)."""

from __future__ import annotations

import re
from pathlib import Path

from mlx5lab.vm.snapshot import ram_dir

from .test_boot import qemu_processes_mentioning
from .test_race import journal, race

SHUTDOWN = re.compile(r"mlx5_core (\S+): Shutdown was called")


def shutdown_order(iteration_dir: Path) -> list[str]:
    """The BDFs in the order main.c: shutdown ran for them, in this iteration's part of the console."""
    return SHUTDOWN.findall((iteration_dir / "console.log").read_text(errors="replace"))


def test_snapshot_stock_is_clean_and_shuts_down_in_the_classic_order(tmp_path: Path) -> None:
    classic, snapshot = tmp_path / "classic", tmp_path / "snapshot"
    ram_copies = set(ram_dir().glob("mlx5lab-ram-*"))
    res = race("--variant", "stock", "-n", "1", "--boot", "classic", "--out", str(classic))
    assert res.returncode == 0, res.stderr[-3000:]
    res = race("--variant", "stock", "-n", "2", "--boot", "snapshot", "--out", str(snapshot))
    assert res.returncode == 0, res.stderr[-3000:]
    assert [e["outcome"] for e in journal(snapshot)] == ["clean", "clean"]
    want = shutdown_order(classic / "iter-0001")
    assert sorted(want) == ["0000:01:00.0", "0000:01:00.1"], want
    for e in journal(snapshot):
        d = snapshot / e["dir"]
        assert shutdown_order(d) == want, d  # the template's console holds no shutdown: one per function
        assert "MLX5LAB-PORTS" in (d / "console.log").read_text()
    assert set(ram_dir().glob("mlx5lab-ram-*")) <= ram_copies, "an iteration's RAM copy was left behind"
    assert not qemu_processes_mentioning(str(tmp_path))


def test_snapshot_vulnerable_panics_with_a_vmcore(tmp_path: Path) -> None:
    out = tmp_path / "vulnerable"
    res = race("--variant", "vulnerable", "-n", "2", "--seed", "3", "--boot", "snapshot", "--out", str(out))
    assert res.returncode == 1, res.stderr[-3000:]  # a kernel finding
    panics = [e for e in journal(out) if e["outcome"] == "panic"]
    assert panics, journal(out)
    for e in panics:
        d = out / e["dir"]
        assert (d / "vmcore.kdump").stat().st_size > 0
        assert "dma_pool_alloc" in (d / "console.log").read_text(errors="replace")

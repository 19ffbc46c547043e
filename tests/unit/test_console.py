"""Cutting the oops out of a console log, on real logs captured from the guest (tests/data/oops/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx5lab.vm.console import SSH_MARKER, count_markers, extract_oops, oops_title

DATA = Path(__file__).parent.parent / "data" / "oops"


def test_no_crash_means_no_oops() -> None:
    assert extract_oops("[    0.000000] Linux version 6.1.0\nMLX5LAB-INIT 1.0\nSSH-READY 2.1\n") is None


def test_markers_are_counted_per_line() -> None:
    text = "SSH-READY 2.0\nnoise\n[  1.0] x SSH-READY 3.0\nSSH-READYX\n"
    assert count_markers(text, SSH_MARKER) == 3


@pytest.mark.parametrize("log", sorted(DATA.glob("*.console.log")), ids=lambda p: p.name)
def test_real_console_logs(log: Path) -> None:
    expected_title = log.with_name(log.name.replace(".console.log", ".title")).read_text().strip()
    oops = extract_oops(log.read_text())
    assert oops is not None
    assert oops_title(oops) == expected_title
    assert "Kernel panic - not syncing" in oops
    assert "Linux version" not in oops  # nothing of the boot before the crash


def test_only_the_last_boots_crash_is_taken() -> None:
    first = "[ 0.0] Linux version 6.1\n[ 5.0] BUG: kernel NULL pointer dereference\n" \
            "[ 5.1] Kernel panic - not syncing: Fatal exception\n"
    second = "[ 0.0] Linux version 6.1\n[ 2.0] sysrq: Trigger a crash\n" \
             "[ 2.1] Kernel panic - not syncing: sysrq triggered crash\n"
    oops = extract_oops(first + second)
    assert oops is not None
    assert oops_title(oops) == "sysrq: Trigger a crash"
    assert "NULL pointer" not in oops

"""The console log: boot markers (mlx5lab.vm.console), and cutting the oops out of real guest logs (mlx5lab.crash)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx5lab.crash import crash_report, extract_oops, strip_timestamp
from mlx5lab.vm.console import SSH_MARKER, count_markers

DATA = Path(__file__).parent.parent / "data" / "oops"


def test_no_crash_means_no_oops() -> None:
    text = "[    0.000000] Linux version 6.1.0\nMLX5LAB-INIT 1.0\nSSH-READY 2.1\n"
    assert extract_oops(text) is None
    assert crash_report(text) is None


def test_markers_are_counted_per_line() -> None:
    text = "SSH-READY 2.0\nnoise\n[  1.0] x SSH-READY 3.0\nSSH-READYX\n"
    assert count_markers(text, SSH_MARKER) == 3


@pytest.mark.parametrize("log", sorted(DATA.glob("*.console.log")), ids=lambda p: p.name)
def test_console_logs(log: Path) -> None:
    expected_title = log.with_name(log.name.replace(".console.log", ".title")).read_text().strip()
    oops = extract_oops(log.read_text())
    assert oops is not None
    report = crash_report(log.read_text())
    assert report is not None and report.oops == oops
    assert report.title == expected_title
    assert ("Kernel panic - not syncing" in oops) is report.is_panic
    assert "Linux version" not in oops  # nothing of the boot before the crash


# The two logs captured from real guests, with the line each crash report opens at.
@pytest.mark.parametrize(("log", "first_line"), [
    ("sysrq-crash.console.log", "sysrq: Trigger a crash"),
    ("vulnerable-reboot.console.log",
     "general protection fault, probably for non-canonical address 0xdead000000006b10: 0000 [#1] PREEMPT SMP NOPTI"),
])
def test_real_console_logs_are_cut_at_their_first_report_line(log: str, first_line: str) -> None:
    text = (DATA / log).read_text()
    oops = extract_oops(text)
    assert oops is not None
    assert strip_timestamp(oops.splitlines()[0]) == first_line
    report = crash_report(text)
    assert report is not None and report.first_line == first_line and report.is_panic


def test_only_the_last_boots_crash_is_taken() -> None:
    first = "[ 0.0] Linux version 6.1\n[ 5.0] BUG: kernel NULL pointer dereference\n" \
            "[ 5.1] Kernel panic - not syncing: Fatal exception\n"
    second = "[ 0.0] Linux version 6.1\n[ 2.0] sysrq: Trigger a crash\n" \
             "[ 2.1] Kernel panic - not syncing: sysrq triggered crash\n"
    oops = extract_oops(first + second)
    assert oops is not None
    assert "NULL pointer" not in oops
    report = crash_report(first + second)
    assert report is not None
    assert report.first_line == "sysrq: Trigger a crash"
    assert report.title == "deliberate crash from sysrq"  # no call trace, so no guilty function


def test_a_warn_message_before_its_warning_line_is_kept() -> None:
    oops = extract_oops((DATA / "warning-mlx5.console.log").read_text())
    assert oops is not None
    lines = [strip_timestamp(x) for x in oops.splitlines()]
    assert lines[:2] == ["------------[ cut here ]------------", "FW pages counter is 8 after reclaiming all pages"]
    assert "reboot: Restarting system" in lines  # no panic: the cut runs to the end of the log

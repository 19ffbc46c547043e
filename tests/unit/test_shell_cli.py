"""``mlx5lab shell`` without a guest: its options, the printed control command, the refusal of a
non-terminal stdin, and the guest watch against a stand-in machine."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mlx5lab.cli import build_parser, common
from mlx5lab.cli.shell import EXIT_BROKEN, EXIT_PANIC, control_hint, mlx5lab_invocation, report_trouble, why_gone
from mlx5lab.rundir import RunDir
from mlx5lab.vm.qmp import QmpEvent
from mlx5lab.vm.watch import EVENTS, GuestTrouble, GuestWatch

REPO = Path(__file__).resolve().parents[2]
OOPS = REPO / "tests" / "data" / "oops"


def test_options() -> None:
    args = build_parser().parse_args(["shell", "--variant", "vulnerable", "--card", "fast_teardown=false",
                                      "--speeds", "100000", "--keep", "/tmp/x", "--no-vmcore"])
    assert (args.variant, args.card, args.speeds, args.keep, args.no_vmcore) == (
        "vulnerable", [("fast_teardown", False)], [100000], Path("/tmp/x"), True)
    defaults = build_parser().parse_args(["shell"])
    assert (defaults.variant, defaults.keep, defaults.no_vmcore, defaults.speeds) == (
        "stock", None, False, common.DEFAULT_SPEEDS)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["shell", "--variant", "bogus"])


def test_a_patch_is_folded_into_the_variant(tmp_path: Path) -> None:
    patch = tmp_path / "fix.patch"
    patch.write_text("--- a/x\n+++ b/x\n")
    args = build_parser().parse_args(["shell", "--variant", "vulnerable", "--patch", str(patch)])
    common.fold_driver_options(args)
    assert args.variant.startswith("vulnerable+patch:")


def test_invocation_as_python_m_carries_pythonpath() -> None:
    inv = mlx5lab_invocation("/x/mlx5lab/__main__.py", {"PYTHONPATH": "/a:/b", "PATH": ""})
    assert inv == ["PYTHONPATH=/a:/b", sys.executable, "-m", "mlx5lab"]
    assert mlx5lab_invocation("/x/mlx5lab/__main__.py", {"PATH": ""}) == [sys.executable, "-m", "mlx5lab"]


def test_invocation_of_the_console_script(tmp_path: Path) -> None:
    script = tmp_path / "bin" / "mlx5lab"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert mlx5lab_invocation(str(script), {"PATH": str(script.parent)}) == ["mlx5lab"]
    assert mlx5lab_invocation(str(script), {"PATH": "/nonexistent"}) == [str(script)]


def test_control_hint_is_a_pasteable_command() -> None:
    hint = control_hint(Path("/tmp/my run"), ["PYTHONPATH=/a", "/usr/bin/python3", "-m", "mlx5lab"])
    assert hint == "PYTHONPATH=/a /usr/bin/python3 -m mlx5lab control '/tmp/my run' status"
    assert shlex.split(hint)[-2:] == ["/tmp/my run", "status"]


def test_stdin_that_is_not_a_terminal_is_refused_before_booting() -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(REPO / d) for d in
                                                    ("orchestrator", "qemu-device", "guest-images")))
    res = subprocess.run([sys.executable, "-m", "mlx5lab", "shell"], stdin=subprocess.PIPE, capture_output=True,
                         text=True, timeout=60, env=env)
    assert res.returncode == 2
    assert "needs a terminal on stdin" in res.stderr
    assert "booting" not in res.stderr


@dataclass
class StandInMachine:
    """What GuestWatch reads of a Machine."""

    console: str = ""
    event: QmpEvent | str | None = None
    events: int = 0
    polls: list[int] = field(default_factory=list)

    def event_index(self) -> int:
        return self.events

    def console_text(self) -> str:
        return self.console

    def wait_event(self, names: set[str], timeout: float, since: int = 0) -> QmpEvent | str | None:
        assert names == EVENTS and timeout == 0
        self.polls.append(since)
        return self.event

    def crash_after_event(self, wait_s: float = 1.0):  # noqa: ANN201 (a CrashReport or None)
        from mlx5lab.crash import crash_report

        return crash_report(self.console)


def test_watch_ignores_earlier_console_and_reports_a_panic_event() -> None:
    earlier = (OOPS / "warning-mlx5.console.log").read_text()
    m = StandInMachine(console=earlier, events=4)
    watch = GuestWatch(m)  # type: ignore[arg-type]
    assert watch() is None and watch.warnings == {}  # what was there before attaching is not news
    assert m.polls == [4]
    m.console += (OOPS / "sysrq-crash.console.log").read_text()
    m.event = QmpEvent("GUEST_PANICKED", {}, 0.0)
    trouble = watch()
    assert trouble is not None and trouble.what == "panic"
    assert trouble.report is not None and trouble.report.title.startswith("deliberate crash from sysrq")


def test_watch_sees_a_fatal_console_report_without_the_event() -> None:
    m = StandInMachine()
    watch = GuestWatch(m)  # type: ignore[arg-type]
    m.console = (OOPS / "null-deref.console.log").read_text()
    trouble = watch()
    assert trouble is not None and trouble.what == "panic"
    assert trouble.report is not None and "NULL pointer dereference" in trouble.report.title


def test_watch_collects_a_warning_and_goes_on() -> None:
    m = StandInMachine()
    watch = GuestWatch(m)  # type: ignore[arg-type]
    m.console = (OOPS / "warning-mlx5.console.log").read_text()
    assert watch() is None
    assert [r.title for r in watch.warnings.values()] == ["WARNING in mlx5_reclaim_startup_pages"]


def test_watch_reports_a_dead_qemu() -> None:
    m = StandInMachine()
    watch = GuestWatch(m)  # type: ignore[arg-type]
    m.event = "QEMU exited"
    trouble = watch()
    assert trouble is not None and (trouble.what, trouble.report) == ("QEMU exited", None)


@pytest.mark.parametrize(("name", "guest", "what"), [
    ("RESET", True, "reboot"), ("SHUTDOWN", True, "poweroff"),
    ("RESET", False, "QEMU RESET {'guest': False, 'reason': 'host-qmp-system-reset'}")])
def test_watch_tells_the_guests_own_reboot_from_a_host_reset(name: str, guest: bool, what: str) -> None:
    m = StandInMachine()
    watch = GuestWatch(m)  # type: ignore[arg-type]
    reason = "guest-reset" if guest else "host-qmp-system-reset"
    m.event = QmpEvent(name, {"guest": guest, "reason": reason}, 0.0)
    trouble = watch()
    assert trouble is not None and trouble.what == what


def test_bad_card_setting_is_a_usage_error() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["shell", "--card", "nope=1"])


@dataclass
class GoneMachine:
    """A machine whose QEMU is gone, as report_trouble sees it."""

    workdir: Path

    @property
    def dir(self) -> RunDir:
        return RunDir(self.workdir)

    def alive(self) -> bool:
        return False


def test_a_panic_is_reported_with_its_oops_and_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlx5lab.crash import crash_report

    report = crash_report((OOPS / "sysrq-crash.console.log").read_text())
    outcome = report_trouble(GoneMachine(tmp_path), GuestTrouble("panic", report), vmcore=True,  # type: ignore[arg-type]
                             keep=False)
    assert (outcome.status, outcome.keep_folder) == (EXIT_PANIC, True)
    assert "sysrq" in (tmp_path / "oops.txt").read_text()
    err = capsys.readouterr().err
    assert "the guest panicked: deliberate crash from sysrq" in err and "no vmcore: QEMU is gone" in err


@pytest.mark.parametrize(("what", "status", "kept"), [
    ("reboot", 0, False), ("poweroff", 0, False), ("QEMU exited", EXIT_BROKEN, True),
    ("the device server exited", EXIT_BROKEN, True)])
def test_how_a_session_ends_decides_status_and_folder(tmp_path: Path, what: str, status: int, kept: bool) -> None:
    outcome = report_trouble(GoneMachine(tmp_path), GuestTrouble(what, None), vmcore=True,  # type: ignore[arg-type]
                             keep=False)
    assert (outcome.status, outcome.keep_folder) == (status, kept)


def test_why_gone_waits_for_the_trailing_event() -> None:
    seen = iter([None, None, GuestTrouble("reboot", None)])
    assert why_gone(lambda: next(seen), wait_s=5).what == "reboot"  # type: ignore[arg-type, union-attr]
    assert why_gone(lambda: None, wait_s=0.2) is None  # type: ignore[arg-type]


def test_library_loggers_are_quiet_unless_verbose() -> None:
    import logging

    from mlx5lab.cli import LIBRARY_LOGGERS, quiet_libraries

    try:
        quiet_libraries(False)
        # the handled retries the libraries log at ERROR (paramiko's transport thread, qemu.qmp's reader)
        assert not any(logging.getLogger(f"{n}.transport").isEnabledFor(logging.ERROR) for n in LIBRARY_LOGGERS)
        assert logging.getLogger("mlx5lab.ssh").isEnabledFor(logging.WARNING)  # ours still speak
        quiet_libraries(True)
        assert all(logging.getLogger(f"{n}.transport").isEnabledFor(logging.ERROR) for n in LIBRARY_LOGGERS)
    finally:
        quiet_libraries(True)

"""The executor's stop check without a guest: a scripted machine prints a hung task's report while the
program still runs, and the run ends there (a reproducer's try of a hang), or at its timeout without one."""

from __future__ import annotations

import time

from mlx5lab.fuzz.executor import STOP_CHECK_S, execute
from mlx5lab.fuzz.program import parse
from mlx5lab.scenarios.fuzz_program import report_with_signature
from mlx5lab.vm.ssh import CommandResult

from .test_fuzz_manager import CRASH, HUNG, manager_signature

PROGRAM = parse("read devlink-port duration=30\nwait\n")


class ScriptedMachine:
    """What :func:`execute` uses of a Machine: the console shows the executor's start, then ``later`` once
    ``after_s`` have passed since the program started; no QMP event ever comes."""

    qmp = object()
    card = None

    def __init__(self, later: str, after_s: float) -> None:
        self.later, self.after_s = later, after_s
        self.started: float | None = None

    def console_text(self) -> str:
        text = "[   5.0] booted\n"
        if self.started is not None:
            text += "[  10.0] MLX5LAB-EXEC start\n[  10.0] MLX5LAB-OP 0 start\n"
            if time.monotonic() - self.started >= self.after_s:
                text += self.later
        return text

    def run(self, command: str, timeout: float = 60.0) -> CommandResult:
        return CommandResult(command, 0, "", "")

    def start_command(self, command: str) -> None:
        self.started = time.monotonic()

    def event_index(self) -> int:
        return 0

    def wait_event(self, names: object, timeout: float, since: int = 0) -> None:
        time.sleep(timeout)


def test_the_run_ends_once_the_console_holds_the_report_asked_for() -> None:
    m = ScriptedMachine(HUNG, after_s=0.3)
    report = execute(m, PROGRAM, timeout_s=20, stop=report_with_signature(manager_signature(HUNG)))  # type: ignore[arg-type]
    assert not report.timed_out and not report.ended
    assert report.stopped == ("the console holds the report being reproduced "
                              "(hung task in devlink_nl_cmd_port_get_dumpit)")
    assert report.duration_s < 0.3 + 3 * STOP_CHECK_S
    assert report.to_json()["stopped"] == report.stopped
    assert [r["op"] for r in report.records] == [0]  # the op's start marker, from the console


def test_another_report_does_not_end_the_run() -> None:
    m = ScriptedMachine(CRASH, after_s=0.1)  # a different bug's report: the run goes on to its timeout
    report = execute(m, PROGRAM, timeout_s=1.5, stop=report_with_signature(manager_signature(HUNG)))  # type: ignore[arg-type]
    assert report.timed_out and not report.stopped and report.duration_s >= 1.5


def test_without_a_stop_check_a_report_changes_nothing() -> None:
    m = ScriptedMachine(HUNG, after_s=0.1)
    report = execute(m, PROGRAM, timeout_s=1.0)  # type: ignore[arg-type]
    assert report.timed_out and not report.stopped

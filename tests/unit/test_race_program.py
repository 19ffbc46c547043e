"""The race is one fixed fuzz program: readers in the background, the delay, the reboot (no QEMU needed)."""

from __future__ import annotations

import pytest

from mlx5lab.fuzz.compile import compile_program
from mlx5lab.fuzz.executor import ExecReport
from mlx5lab.fuzz.program import parse
from mlx5lab.scenarios.reboot_race import RaceParams, decide, race_program, verdict_of
from mlx5lab.vm.qmp import QmpEvent


def test_the_race_is_readers_a_delay_and_reboot_f() -> None:
    program = race_program(RaceParams(), 0.742)
    assert [op.text() for op in program.ops] == ["read speed duration=30 threads=4 &", "sleep 0.742",
                                                 "path reboot force=true"]
    assert parse(program.text()) == program  # what program.prog holds replays as it is


def test_every_reader_attribute_is_its_own_background_reader() -> None:
    program = race_program(RaceParams(readers=["speed", "duplex"], threads=8), 0.2)
    reads = [op for op in program.ops if op.kind == "read"]
    assert [(op.name, op.arg("threads"), op.background) for op in reads] == [("speed", 8, True),
                                                                           ("duplex", 8, True)]


@pytest.mark.parametrize(("reboot", "last"), [("reboot -f", "path reboot force=true"), ("reboot", "path reboot"),
                                              ("poweroff", "path poweroff"),
                                              ("poweroff -f", "path poweroff force=true")])
def test_each_way_down_is_a_path(reboot: str, last: str) -> None:
    assert race_program(RaceParams(reboot=reboot), 1.0).ops[-1].text() == last


def test_a_long_delay_is_several_sleeps_of_the_same_total() -> None:
    program = race_program(RaceParams(), 23.5)
    sleeps = [op.arg("seconds") for op in program.ops if op.kind == "sleep"]
    assert sleeps == [10.0, 10.0, 3.5]


def test_the_compiled_race_starts_the_readers_then_reboots_in_the_foreground() -> None:
    script = compile_program(race_program(RaceParams(), 0.5)).script.splitlines()
    assert script[1:] == ["op 0 bg 'mlx5lab-read speed -t 4 -d 30'", "pause 0.5", "op 2 fg 'reboot -f'"]


def test_a_reader_count_the_program_cannot_hold_is_refused() -> None:
    with pytest.raises(ValueError, match="threads"):
        RaceParams(threads=17)
    with pytest.raises(ValueError, match="readers"):
        RaceParams(readers=["carrier"])


def test_the_executors_report_decides_as_the_verdict_did() -> None:
    panic = ExecReport(event=QmpEvent("GUEST_PANICKED", {"action": "pause"}, 0.0))
    reset = ExecReport(event=QmpEvent("RESET", {"guest": True, "reason": "guest-reset"}, 0.0))
    assert decide(verdict_of(panic), 30)[0] == "panic"
    assert decide(verdict_of(reset), 30)[0] == "clean"
    assert decide(verdict_of(ExecReport(timed_out=True)), 30)[0] == "hang"
    assert decide(verdict_of(ExecReport(infra="QEMU exited")), 30) == ("infra", "QEMU exited")

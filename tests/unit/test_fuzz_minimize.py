"""Reproducer minimisation against simulated targets whose crash condition is known (no VM)."""

from __future__ import annotations

import json
import random

import pytest

from mlx5lab.fuzz.minimize import minimize, needed_successes, wilson_interval
from mlx5lab.fuzz.program import Program, format, parse

NOISY = """\
# mlx5lab-program v1
# found by seed 3
device set_speed fn=1 mbps=25000
read duplex threads=3 &
sleep 0.5
read speed threads=8 duration=4 fn=0 &
device fault opcode=ACCESS_REG register=PTYS delay_ms=100 &
sleep 0.25
read statistics &
path unbind fn=1 order=reverse
path bind fn=1
wait
"""

MINIMAL = "# mlx5lab-program v1\n# found by seed 3\nread speed duration=0.1 threads=1 &\npath unbind\n"


def reader_races_unbind(p: Program) -> bool:
    """A `read speed` started with & and still running (no wait since) when a `path unbind` starts."""
    running = False
    for op in p.ops:
        if op.kind == "wait":
            running = False
        elif op.kind == "read" and op.name == "speed" and op.background:
            running = True
        elif op.kind == "path" and op.name == "unbind" and running:
            return True
    return False


class Target:
    """Crashes with probability ``rate`` per try when ``condition`` holds; counts its tries."""

    def __init__(self, condition, seed: int, rate: float = 0.9) -> None:
        self.condition = condition
        self.rng = random.Random(seed)
        self.rate = rate
        self.calls = 0

    def __call__(self, p: Program) -> bool:
        self.calls += 1
        return self.rng.random() < self.rate and self.condition(p)


@pytest.mark.parametrize("seed", range(5))
def test_noisy_program_reduces_to_the_racing_pair(seed: int) -> None:
    original = parse(NOISY)
    assert len(original.ops) == 10 and reader_races_unbind(original)
    target = Target(reader_races_unbind, seed=seed)
    result = minimize(original, target, measure_runs=40, max_tries=300)
    assert result.reproduced and result.minimized and not result.exhausted
    assert format(result.program) == MINIMAL  # header comments are kept
    assert 2 <= len(result.program.ops) <= 3
    assert result.minimize_tries <= 70 and result.tries == target.calls == result.minimize_tries + 40
    assert result.runs == 40 and result.rate == result.successes / 40
    assert abs(result.rate - 0.9) <= 0.1
    assert result.ci_low <= 0.9 <= result.ci_high
    assert 0 < result.ci_low < result.rate < result.ci_high <= 1
    assert result.steps and result.steps[-1].program == result.program
    assert all(reader_races_unbind(s.program) for s in result.steps)
    assert all(s.successes >= 2 and s.tries <= 3 for s in result.steps)
    assert {s.action for s in result.steps} >= {"remove-group", "remove", "fewer-threads", "shorter-read",
                                                "default-arg"}
    assert any(s.detail == "removed op 1: read duplex threads=3 &" for s in result.steps)
    assert "10 ops -> 2" in result.message and "Wilson" in result.message
    assert json.loads(json.dumps(result.to_json()))["program"] == MINIMAL


def test_minimize_is_deterministic_for_a_deterministic_target() -> None:
    a = minimize(parse(NOISY), Target(reader_races_unbind, seed=5), measure_runs=10)
    b = minimize(parse(NOISY), Target(reader_races_unbind, seed=5), measure_runs=10)
    assert a == b


def test_never_reproducing_target_returns_the_original() -> None:
    original = parse(NOISY)
    target = Target(lambda p: False, seed=2)
    result = minimize(original, target, measure_runs=20)
    assert not result.reproduced and not result.minimized
    assert result.program == original and result.steps == ()
    assert result.tries == target.calls == 3  # only the original's tries
    assert result.rate == 0.0 and result.ci_low == 0.0 and result.ci_high < 0.75
    assert "did not reproduce" in result.message


def test_budget_stops_minimisation_early() -> None:
    original = parse(NOISY)
    target = Target(reader_races_unbind, seed=3)
    result = minimize(original, target, max_tries=12, measure_runs=5)
    assert result.exhausted
    assert result.minimize_tries <= 12 and result.tries == result.minimize_tries + 5 == target.calls
    assert reader_races_unbind(result.program)
    assert "max_tries=12" in result.message


def sleep_between(p: Program) -> bool:
    """The race needs the reader to run >= 0.1 s before the unbind (a sleep of that much between them)."""
    waited, running = 0.0, False
    for op in p.ops:
        if op.kind == "read" and op.name == "speed" and op.background:
            running, waited = True, 0.0
        elif op.kind == "sleep" and running:
            waited += op.arg("seconds")
        elif op.kind == "path" and op.name == "unbind" and running:
            return waited >= 0.1
    return False


def test_sleeps_are_halved_while_the_crash_needs_them() -> None:
    original = parse("read speed duration=8 threads=4 &\nsleep 1\ndevice flap_link\npath unbind\nwait\n")
    result = minimize(original, Target(sleep_between, seed=4, rate=1.0), measure_runs=5)
    assert format(result.program) == ("# mlx5lab-program v1\nread speed duration=0.1 threads=1 &\nsleep 0.125\n"
                                      "path unbind\n")
    shortened = [s.detail for s in result.steps if s.action == "shorten-sleep"]
    assert shortened == ["op 2: sleep 1 -> 0.5", "op 2: sleep 0.5 -> 0.25", "op 2: sleep 0.25 -> 0.125"]
    assert any(s.action == "shorter-read" for s in result.steps)
    assert result.rate == 1.0


def test_serialize_when_the_crash_does_not_need_concurrency() -> None:
    original = parse("read carrier &\ndevice fw_fatal synd=7 &\npath unbind fn=0 &\nwait\n")
    result = minimize(original, Target(lambda p: any(op.name == "fw_fatal" for op in p.ops), seed=6),
                      measure_runs=10)
    assert format(result.program) == "# mlx5lab-program v1\ndevice fw_fatal\n"


def test_a_step_that_loses_the_crash_is_not_kept() -> None:
    # 0.9 with the reader's &, 0.1 without: the 2-of-3 filter refuses to serialize it
    def rate(p: Program) -> float:
        return 0.9 if reader_races_unbind(p) else 0.1 if any(op.name == "unbind" for op in p.ops) else 0.0

    rng = random.Random(8)
    result = minimize(parse(NOISY), lambda p: rng.random() < rate(p), measure_runs=20)
    assert reader_races_unbind(result.program)


def test_filter_and_interval_helpers() -> None:
    assert needed_successes(3, 2 / 3) == 2
    assert needed_successes(3, 1.0) == 3
    assert needed_successes(5, 0.8) == 4
    assert needed_successes(3, 0.01) == 1
    low, high = wilson_interval(18, 20)
    assert low == pytest.approx(0.699, abs=1e-3) and high == pytest.approx(0.972, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low99, high99 = wilson_interval(18, 20, 0.99)
    assert low99 < low and high99 > high
    with pytest.raises(ValueError):
        minimize(parse(NOISY), lambda p: True, attempts=0)

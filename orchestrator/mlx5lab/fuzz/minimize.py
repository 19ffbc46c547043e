"""Reducing a crashing program to a small reproducer, in the style of syzkaller's ``pkg/repro``, and
measuring how often the result reproduces.

``reproduces(program) -> bool`` runs the program once (for the real fuzzer: one guest boot) and says
whether the crash came back; it is all this module knows about the target. Candidates are simpler
programs, tried in passes, each pass until it finds nothing more, and rounds of passes until a round
changes nothing: drop a whole group (every device event, every reader, every sleep), drop one op (last to
first, as ``prog.Minimize`` removes calls), serialize (drop every ``&``, then one at a time), halve a sleep
(dropping it, i.e. sleeping 0, is the drop pass), reduce a reader (one thread, else half; the shortest
duration, else half), and put each other argument back to its default. "Simpler" is that order: fewer ops,
fewer ``&``, shorter sleeps, fewer reader threads and shorter reader durations (even below their
defaults: those are not put back), then defaults; a program kept once is never returned to, so the
passes cannot undo each other.

A candidate is kept when it reproduces at least ``ceil(attempts * threshold)`` times out of ``attempts``
tries; a candidate rejected once is not tried again. The original is tried first, and a program that never
reproduces is returned as it is. When ``max_tries`` runs out, minimisation stops where it is. The final
program is then run ``measure_runs`` more times: its rate, with a confidence interval, is the result.

Why 2 of 3 (``threshold=2/3`` with ``attempts=3``)
--------------------------------------------------
syzkaller keeps a candidate when one test run crashes (``pkg/repro``: ``prog.Minimize``'s callback returns
``ret.Crashed``), but one of its runs loops the program for the whole test timeout (30 s and more), so a
racy bug gets many chances per run; afterwards it measures the result (``calculateReliability``: up to 10
runs, stopping at 3 crashes) and drops reproducers below 15 %. One of our tries is one boot and one pass of
the program, so a single success says little: a step that cuts the rate from 0.9 to 0.3 would still be kept
with probability 0.3 by a 1-try rule (0.66 by "any of 3"), and such steps compound over a minimisation of
ten steps. We want a reproducer that reproduces at least 80 % of the time. Keeping a candidate when at
least 2 of 3 tries reproduce, the majority vote of the smallest odd sample, keeps it with probability
``3p^2 - 2p^3`` for a true rate ``p``:

======  ========  ===========  ===========
p       2 of 3    1 try/any 3  3 of 3
======  ========  ===========  ===========
0.95    0.993     0.95/1.000   0.857
0.9     0.972     0.90/0.999   0.729
0.8     0.896     0.80/0.992   0.512
0.5     0.500     0.50/0.875   0.125
0.3     0.216     0.30/0.657   0.027
0.15    0.061     0.15/0.386   0.003
======  ========  ===========  ===========

so a step that keeps the crash at >= 80 % is kept about nine times in ten, one that breaks it (<= 30 %) is
refused about four times in five, and "3 of 3" would refuse a good step at p = 0.8 half the time, leaving a
needlessly large reproducer. The cost is small: tries stop as soon as the verdict is known (two successes,
or two failures), so a good candidate at p = 0.9 costs 2.2 tries on average. The filter decides steps, not
the final verdict: the final ``measure_runs`` runs do, with their interval.

The interval is Wilson's score interval (scipy is not in the project's virtualenv, so the exact
Clopper-Pearson interval would need a hand-written beta quantile; Wilson's needs only the normal quantile,
``statistics.NormalDist``, and its coverage is close to nominal even for small samples and rates near 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

from .ops import Vocabulary, vocabulary
from .program import Op, Program, ProgramError, format, program_hash

ATTEMPTS = 3
THRESHOLD = 2 / 3
MEASURE_RUNS = 20
MAX_TRIES = 300
CONFIDENCE = 0.95
GROUPS = ("device", "read", "sleep")  # kinds dropped as a whole first
REDUCED = {("read", "threads"), ("read", "duration")}  # smaller is simpler, even below the default
MIN_SLEEP = 0.002  # sleeps this short are not halved (halving would give 0, which is the drop pass)

Reproduces = Callable[[Program], bool]


def needed_successes(attempts: int, threshold: float) -> int:
    """``ceil(attempts * threshold)``, at least 1 (tolerant of 3 * (2/3) = 2.0000000000000004)."""
    return max(1, math.ceil(attempts * threshold - 1e-9))


def wilson_interval(successes: int, runs: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson's score interval of a binomial rate; (0, 1) for no runs."""
    if runs <= 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = successes / runs
    denom = 1 + z * z / runs
    centre = (p + z * z / (2 * runs)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / runs + z * z / (4 * runs * runs))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == runs else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class Step:
    """One kept simplification: what changed, the program after it, and the tries that decided it."""

    action: str  # remove-group, remove, serialize, shorten-sleep, fewer-threads, shorter-read, default-arg
    detail: str
    program: Program
    successes: int
    tries: int


@dataclass(frozen=True)
class MinimizeResult:
    """What minimisation kept, the measured rate of the result and how many tries it all cost.

    ``rate``, ``successes`` and ``runs`` are the final measurement (for a program that never reproduced:
    its first tries), ``ci_low``..``ci_high`` their Wilson interval at ``confidence``.
    """

    original: Program
    program: Program
    reproduced: bool  # the original reproduced at least once
    rate: float  # of the final program, over ``runs`` measurement runs
    successes: int
    runs: int
    ci_low: float
    ci_high: float
    confidence: float
    tries: int  # every call of reproduces, measurement included
    minimize_tries: int  # the calls before the measurement
    candidates: int  # candidates tried
    steps: tuple[Step, ...] = field(default=())
    exhausted: bool = False  # max_tries ran out before minimisation finished
    message: str = ""
    ci_method: str = "wilson"

    @property
    def minimized(self) -> bool:
        return self.program.ops != self.original.ops

    @property
    def ci(self) -> tuple[float, float]:
        return self.ci_low, self.ci_high

    def to_json(self) -> dict[str, Any]:
        return {
            "program": format(self.program), "program_hash": program_hash(self.program),
            "original_hash": program_hash(self.original), "reproduced": self.reproduced,
            "rate": self.rate, "successes": self.successes, "runs": self.runs,
            "ci": [self.ci_low, self.ci_high], "confidence": self.confidence, "ci_method": self.ci_method,
            "tries": self.tries, "minimize_tries": self.minimize_tries, "candidates": self.candidates,
            "exhausted": self.exhausted, "message": self.message,
            "steps": [{"action": s.action, "detail": s.detail, "successes": s.successes, "tries": s.tries,
                       "program_hash": program_hash(s.program)} for s in self.steps],
        }


Candidate = tuple[str, str, Program]


class _Minimizer:
    def __init__(self, reproduces: Reproduces, attempts: int, threshold: float, max_tries: int,
                 vocab: Vocabulary) -> None:
        self.reproduces = reproduces
        self.attempts = attempts
        self.needed = needed_successes(attempts, threshold)
        self.max_tries = max_tries
        self.vocab = vocab
        self.tries = 0
        self.candidates = 0
        self.exhausted = False
        self.rejected: set[str] = set()
        self.visited: set[str] = set()  # every program kept so far: no step ever goes back to one

    def trial(self, program: Program) -> tuple[bool, int, int]:
        """Up to ``attempts`` tries, stopping once the verdict is known: (kept, successes, tries)."""
        successes = failures = 0
        while successes + failures < self.attempts:
            if self.tries >= self.max_tries:
                self.exhausted = True
                return False, successes, successes + failures
            self.tries += 1
            if self.reproduces(program):
                successes += 1
            else:
                failures += 1
            if successes >= self.needed:
                return True, successes, successes + failures
            if failures > self.attempts - self.needed:
                break
        return False, successes, successes + failures

    # -- candidates ---------------------------------------------------------------------------------
    def valid(self, current: Program, ops: list[Op]) -> Program | None:
        try:
            candidate = Program(tuple(ops), current.comments).validate(self.vocab)
        except ProgramError:
            return None
        if not candidate.active_ops() or candidate.ops == current.ops:
            return None
        return candidate

    def passes(self) -> tuple[Callable[[Program], Iterator[Candidate]], ...]:
        return (self.groups, self.drops, self.serialize, self.sleeps, self.readers, self.defaults)

    def _yield(self, current: Program, action: str, detail: str, ops: list[Op]) -> Iterator[Candidate]:
        candidate = self.valid(current, ops)
        if candidate is not None:
            yield action, detail, candidate

    def groups(self, p: Program) -> Iterator[Candidate]:
        for kind in GROUPS:
            n = sum(op.kind == kind for op in p.ops)
            if n > 1:
                yield from self._yield(p, "remove-group", f"removed every {kind} op ({n})",
                                       [op for op in p.ops if op.kind != kind])

    def drops(self, p: Program) -> Iterator[Candidate]:
        for i in reversed(range(len(p.ops))):
            yield from self._yield(p, "remove", f"removed op {i + 1}: {p.ops[i].text(self.vocab)}",
                                   [*p.ops[:i], *p.ops[i + 1:]])

    def serialize(self, p: Program) -> Iterator[Candidate]:
        background = [i for i, op in enumerate(p.ops) if op.background]
        if len(background) > 1:
            yield from self._yield(p, "serialize", f"removed every & ({len(background)})",
                                   [op.with_background(False) for op in p.ops])
        for i in reversed(background):
            ops = list(p.ops)
            ops[i] = ops[i].with_background(False)
            yield from self._yield(p, "serialize", f"removed & of op {i + 1}: {p.ops[i].text(self.vocab)}", ops)

    def sleeps(self, p: Program) -> Iterator[Candidate]:
        for i, op in enumerate(p.ops):
            seconds = float(op.arg("seconds", 0.0)) if op.kind == "sleep" else 0.0
            if seconds >= MIN_SLEEP:
                ops = list(p.ops)
                ops[i] = op.with_args(seconds=round(seconds / 2, 3))
                yield from self._yield(p, "shorten-sleep", f"op {i + 1}: sleep {seconds:g} -> "
                                       f"{round(seconds / 2, 3):g}", ops)

    def readers(self, p: Program) -> Iterator[Candidate]:
        for i, op in enumerate(p.ops):
            if op.kind != "read":
                continue
            spec = self.vocab.spec(op.kind, op.name)
            threads = int(op.arg("threads", spec.domain("threads").default))
            for fewer in sorted({1, threads // 2} - {0, threads}):
                if fewer < threads:
                    ops = list(p.ops)
                    ops[i] = op.with_args(threads=fewer)
                    yield from self._yield(p, "fewer-threads", f"op {i + 1}: read {op.name} threads {threads} "
                                           f"-> {fewer}", ops)
            d = spec.domain("duration")
            duration = float(op.arg("duration", d.default))
            low = float(d.low or 0)
            for shorter in sorted({low, max(low, round(duration / 2, 3))}):
                if shorter < duration:
                    ops = list(p.ops)
                    ops[i] = op.with_args(duration=shorter)
                    yield from self._yield(p, "shorter-read", f"op {i + 1}: read {op.name} duration {duration:g} "
                                           f"-> {shorter:g}", ops)

    def defaults(self, p: Program) -> Iterator[Candidate]:
        for i, op in enumerate(p.ops):
            spec = self.vocab.spec(op.kind, op.name)
            if spec.positional:
                continue
            for key, value in op.args:
                if (op.kind, key) in REDUCED and value < spec.domain(key).default:
                    continue  # below its default already: simpler than the default (the readers pass)
                ops = list(p.ops)
                ops[i] = op.with_args(**{key: None})
                yield from self._yield(p, "default-arg", f"op {i + 1}: {op.kind} {op.name} {key}="
                                       f"{value!s} back to its default", ops)

    # -- the loop -------------------------------------------------------------------------------------
    def run(self, program: Program) -> tuple[Program, list[Step]]:
        current, steps = program, []
        self.visited.add(program_hash(program))
        changed = True
        while changed and not self.exhausted:
            changed = False
            for make in self.passes():
                progress = True
                while progress and not self.exhausted:
                    progress = False
                    for action, detail, candidate in make(current):
                        key = program_hash(candidate)
                        if key in self.rejected or key in self.visited:
                            continue
                        self.candidates += 1
                        kept, successes, tries = self.trial(candidate)
                        if self.exhausted:
                            break
                        if kept:
                            current = candidate
                            self.visited.add(key)
                            steps.append(Step(action, detail, candidate, successes, tries))
                            progress = changed = True
                            break
                        self.rejected.add(key)
                if self.exhausted:
                    break
        return current, steps


def minimize(program: Program, reproduces: Reproduces, *, attempts: int = ATTEMPTS, threshold: float = THRESHOLD,
             measure_runs: int = MEASURE_RUNS, max_tries: int = MAX_TRIES, confidence: float = CONFIDENCE,
             vocab: Vocabulary | None = None) -> MinimizeResult:
    """``program`` reduced while it keeps reproducing, then measured (module docstring: how and why).

    ``attempts`` tries per candidate, kept at ``ceil(attempts * threshold)`` successes; ``max_tries`` bounds
    the calls of ``reproduces`` before the measurement (the original's check included), ``measure_runs``
    calls more measure the result. An exception from ``reproduces`` propagates.
    """
    if attempts < 1 or not 0 < threshold <= 1 or measure_runs < 0 or max_tries < 1:
        raise ValueError("attempts >= 1, 0 < threshold <= 1, measure_runs >= 0 and max_tries >= 1")
    v = vocab or vocabulary()
    original = program.validate(v)
    m = _Minimizer(reproduces, attempts, threshold, max_tries, v)
    before = m.tries
    hits = 0
    while m.tries - before < attempts and hits < m.needed and m.tries < max_tries:
        m.tries += 1
        hits += bool(reproduces(original))
    first_tries = m.tries
    if hits == 0:
        low, high = wilson_interval(0, first_tries, confidence)
        return MinimizeResult(original, original, False, 0.0, 0, first_tries, low, high, confidence, m.tries,
                              m.tries, 0, (), False,
                              f"the program did not reproduce in {first_tries} tries: returned as it is")
    final, steps = m.run(original)
    minimize_tries = m.tries
    successes = 0
    for _ in range(measure_runs):
        m.tries += 1
        successes += bool(reproduces(final))
    rate = successes / measure_runs if measure_runs else 0.0
    low, high = wilson_interval(successes, measure_runs, confidence)
    notes = []
    if hits < m.needed:
        notes.append(f"the original reproduced only {hits} of {first_tries} tries")
    if m.exhausted:
        notes.append(f"stopped after max_tries={max_tries} tries")
    message = (f"{len(original.ops)} ops -> {len(final.ops)} in {len(steps)} steps; reproduces {successes}/"
               f"{measure_runs} ({rate:.0%}, {confidence:.0%} CI {low:.0%}-{high:.0%}, Wilson); "
               f"{m.tries} tries")
    if notes:
        message += " (" + "; ".join(notes) + ")"
    return MinimizeResult(original, final, True, rate, successes, measure_runs, low, high, confidence, m.tries,
                          minimize_tries, m.candidates, tuple(steps), m.exhausted, message)

"""Random programs from a seeded ``random.Random``: ops drawn over the whole vocabulary, ending with ``wait``.

The generator knows nothing about any particular bug. Half of its programs are free: each op a kind drawn
uniformly among read, path, device and sleep (a ``wait`` now and then once something runs in the
background), a name drawn uniformly among that kind's sorted names, and each argument left at its default
half of the time or drawn from its domain (:meth:`.ops.Domain.draw`). The other half have the shape of the
bug class the fuzzer is for, an ordering race around a teardown: one to three operations started in the
background (readers of any kind, device events), maybe a pause, one path that tears a function's command
interface down (:func:`.ops.teardown_paths`, any of them) in the foreground, maybe one more operation, then
``wait``; every name and argument in it is drawn as in a free program, with two exceptions that keep the
background running into the teardown: the pause is shorter than the longest background reader, and the
teardown takes the arguments under which running processes survive it (``OpSpec.concurrent``: a reboot
with ``force``, since init's shutdown ends every process before reboot(2)). Free programs alone hold such
an ordering about once in a hundred, which costs hours of guest time on this target. The generator does not
model the driver's state: a ``path bind`` with nothing unbound is a no-op the executor tolerates.

Bounded: at most ``max_ops`` ops before the final ``wait``, and :meth:`.Program.seconds` (every sleep and
every reader's duration) at most :data:`MAX_SECONDS`. Deterministic: the same seed gives the same
programs in every run and under every ``PYTHONHASHSEED``, because only the ``Random`` decides and every
name list is sorted.
"""

from __future__ import annotations

import math
import random
from typing import Any

from .ops import OpSpec, Vocabulary, op_seconds, teardown_paths, validate_op, vocabulary
from .program import Op, Program

MAX_SECONDS = 20.0
ACTIVE_KINDS = ("read", "path", "device")
P_DEFAULT = 0.5  # an argument keeps its default
P_BACKGROUND = 0.5  # an op runs with &
P_RACE_SHAPE = 0.5  # a program has the shape of a race around a teardown (module docstring)
P_PAUSE = 0.5  # a race-shaped program pauses between its background start and its teardown
WAIT_WEIGHT = 0.25  # against 1 for each other kind, once something runs in the background
CHECK_RETRIES = 8


def seconds_cap(remaining: float) -> float:
    """``remaining`` seconds truncated to what a program can print (3 decimals), never negative."""
    return max(0.0, math.floor(remaining * 1000 + 1e-6) / 1000)


def random_args(spec: OpSpec, rng: random.Random, cap: float | None = None) -> dict[str, Any]:
    """Arguments for ``spec``: each its default or a draw; ``cap`` bounds the time argument (seconds).

    Draws that break the spec's cross-argument rule are redrawn a few times, then the defaults are used
    (every spec's defaults are valid).
    """
    for _ in range(CHECK_RETRIES):
        if spec.sample is not None and rng.random() >= P_DEFAULT:
            args = spec.sample(rng)
        else:
            args = {}
            for d in spec.domains:
                timed = d.key == spec.time_arg
                must = spec.positional or (timed and cap is not None and d.default > cap)
                if d.varies() and (must or rng.random() >= P_DEFAULT):
                    args[d.key] = d.draw(rng, cap if timed else None)
        if spec.check is None or spec.check({**spec.defaults(), **args}) is None:
            return args
    return {d.key: d.default for d in spec.domains} if spec.positional else {}


def random_op(rng: random.Random, vocab: Vocabulary | None = None, *, remaining: float = MAX_SECONDS,
              pending: bool = False, kinds: tuple[str, ...] | None = None, names: tuple[str, ...] | None = None,
              background: bool | None = None) -> Op:
    """One random op that fits in ``remaining`` seconds; ``pending``: something runs with & (a wait may
    come); ``kinds`` restricts the kinds drawn, ``names`` the names; ``background`` fixes whether it runs
    with & (where its kind allows it) instead of drawing it."""
    v = vocab or vocabulary()
    cap = seconds_cap(remaining)
    candidates = list(kinds or (*ACTIVE_KINDS, "sleep"))
    if cap < 0.1 and "read" in candidates and len(candidates) > 1:
        candidates.remove("read")  # no reader fits (duration >= 0.1 s)
    if cap < 0.001 and "sleep" in candidates and len(candidates) > 1:
        candidates.remove("sleep")
    weights = [1.0] * len(candidates)
    if pending and kinds is None:
        candidates.append("wait")
        weights.append(WAIT_WEIGHT)
    kind = rng.choices(candidates, weights)[0]
    pool = v.names(kind) if names is None else tuple(n for n in v.names(kind) if n in names)
    spec = v.spec(kind, pool[rng.randrange(len(pool))])
    args = random_args(spec, rng, cap)
    bg = rng.random() < P_BACKGROUND if background is None else background
    return validate_op(Op(spec.kind, spec.name, tuple(args.items()), spec.background_ok and bg), v)


def concurrent(op: Op, v: Vocabulary) -> Op:
    """``op`` with its spec's concurrent arguments: background operations keep running into it."""
    spec = v.spec(op.kind, op.name)
    if not spec.concurrent:
        return op
    return validate_op(Op(op.kind, op.name, tuple({**dict(op.args), **dict(spec.concurrent)}.items()),
                          op.background), v)


def _race_shaped(rng: random.Random, v: Vocabulary, teardowns: tuple[str, ...], max_ops: int,
                 max_seconds: float) -> list[Op]:
    """Background operations, maybe a pause, a teardown path in the foreground, maybe one more op."""
    ops: list[Op] = []

    def left() -> float:
        return max_seconds - Program(tuple(ops)).seconds(v)

    for _ in range(rng.randint(1, max(1, min(3, max_ops - 2)))):
        ops.append(random_op(rng, v, remaining=left(), kinds=("read", "device"), background=True))
    if len(ops) < max_ops - 1 and rng.random() < P_PAUSE:
        longest = max(op_seconds(op, v) for op in ops)  # 0: only device events, which set no duration
        ops.append(random_op(rng, v, remaining=min(left(), longest) if longest > 0 else left(), kinds=("sleep",)))
    teardown = random_op(rng, v, remaining=left(), kinds=("path",), names=teardowns, background=False)
    ops.append(concurrent(teardown, v))
    if len(ops) < max_ops and rng.random() < 0.5:
        ops.append(random_op(rng, v, remaining=left(), pending=True))
    return ops


def generate(rng: random.Random, *, max_ops: int = 8, vocab: Vocabulary | None = None,
             max_seconds: float = MAX_SECONDS) -> Program:
    """A random valid program: 1..``max_ops`` ops (at least one not a sleep or wait), then ``wait``."""
    if max_ops < 1:
        raise ValueError("max_ops must be at least 1")
    v = vocab or vocabulary()
    teardowns = tuple(n for n in v.names("path") if n in teardown_paths())
    if max_ops >= 2 and teardowns and rng.random() < P_RACE_SHAPE:
        ops = _race_shaped(rng, v, teardowns, max_ops, max_seconds)
        if ops[-1].kind != "wait":
            ops.append(Op("wait"))
        return Program(tuple(ops))
    count = rng.randint(1, max_ops)
    ops = []
    used = 0.0
    pending = False
    for _ in range(count):
        op = random_op(rng, v, remaining=max_seconds - used, pending=pending)
        ops.append(op)
        used = Program(tuple(ops)).seconds(v)
        pending = (pending or op.background) and op.kind != "wait"
    if not any(not op.is_control() for op in ops):
        ops[rng.randrange(len(ops))] = random_op(rng, v, remaining=max_seconds - used, kinds=ACTIVE_KINDS)
    if ops[-1].kind != "wait":
        ops.append(Op("wait"))
    return Program(tuple(ops))

"""Mutations of a program, in the style of syzkaller's ``prog.Mutate``: one small change per call.

The mutations (:data:`MUTATIONS`): ``insert`` a random op, ``remove`` one, ``reorder`` (swap two ops or
move one), ``retime`` (a sleep's seconds or a reader's duration halved, doubled or redrawn, a sleep
inserted, an ``&`` toggled), ``change_arg`` (one argument redrawn or set back to its default) and
``splice`` (a prefix of this program and a suffix of a corpus program; only with a corpus).

Every result is checked like a parsed program (each op validated and normalized), ends with exactly one
``wait``, keeps an op that is not a sleep or wait, stays within ``max_ops`` ops and
:data:`.generate.MAX_SECONDS` (or the input's own size, when it was already larger), and differs from the
input; a mutation that cannot give such a program is redrawn. The same ``Random`` state gives the same
mutation.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from .generate import MAX_SECONDS, P_BACKGROUND, random_op, seconds_cap
from .ops import OpError, Vocabulary, validate_op, vocabulary
from .program import Op, Program, ProgramError

MUTATIONS = ("insert", "remove", "reorder", "retime", "change_arg", "splice")
MAX_OPS = 16
ATTEMPTS = 32
P_TO_DEFAULT = 0.2  # change_arg sets the argument back to its default


class _Context:
    def __init__(self, program: Program, rng: random.Random, corpus: Sequence[Program], vocab: Vocabulary,
                 max_ops: int, max_seconds: float) -> None:
        self.program = program
        self.rng = rng
        self.corpus = corpus
        self.vocab = vocab
        self.max_ops = max(max_ops, len(program.ops))
        self.max_seconds = max(max_seconds, program.seconds(vocab))

    def body(self) -> list[Op]:
        """The ops without the trailing waits (finish puts one back)."""
        ops = list(self.program.ops)
        while ops and ops[-1].kind == "wait":
            ops.pop()
        return ops

    def remaining(self, ops: Sequence[Op]) -> float:
        return self.max_seconds - Program(tuple(ops)).seconds(self.vocab)


Mutator = Callable[[_Context], list[Op] | None]


def _insert(c: _Context) -> list[Op] | None:
    ops = c.body()
    if len(ops) + 1 >= c.max_ops:
        return None
    at = c.rng.randint(0, len(ops))
    pending = any(op.background for op in ops[:at])
    ops.insert(at, random_op(c.rng, c.vocab, remaining=c.remaining(ops), pending=pending))
    return ops


def _remove(c: _Context) -> list[Op] | None:
    ops = c.body()
    if not ops:
        return None
    del ops[c.rng.randrange(len(ops))]
    return ops


def _reorder(c: _Context) -> list[Op] | None:
    ops = c.body()
    if len(ops) < 2:
        return None
    i, j = c.rng.sample(range(len(ops)), 2)
    if c.rng.random() < 0.5:
        ops[i], ops[j] = ops[j], ops[i]
    else:
        ops.insert(j, ops.pop(i))
    return ops


def _retimed(c: _Context, value: float, low: float, high: float) -> float:
    roll = c.rng.random()
    if roll < 1 / 3:
        new = value / 2
    elif roll < 2 / 3:
        new = value * 2 if value else 0.01
    else:
        new = c.rng.uniform(low, high)
    return min(high, max(low, round(new, 3)))


def _retime(c: _Context) -> list[Op] | None:
    ops = c.body()
    choices: list[tuple[str, int]] = [("sleep", len(ops))]  # a new sleep (index: where)
    for i, op in enumerate(ops):
        spec = c.vocab.spec(op.kind, op.name)
        if spec.time_arg is not None:
            choices.append(("time", i))
        if spec.background_ok:
            choices.append(("&", i))
    what, i = choices[c.rng.randrange(len(choices))]
    if what == "sleep":
        at = c.rng.randint(0, len(ops))
        ops.insert(at, random_op(c.rng, c.vocab, remaining=c.remaining(ops), kinds=("sleep",)))
    elif what == "&":
        ops[i] = ops[i].with_background(not ops[i].background)
    else:
        op = ops[i]
        spec = c.vocab.spec(op.kind, op.name)
        assert spec.time_arg is not None
        d = spec.domain(spec.time_arg)
        current = float(op.arg(d.key, d.default))
        high = min(float(d.high or 0), seconds_cap(c.remaining(ops) + current))
        if high < float(d.low or 0):
            return None
        ops[i] = op.with_args(**{d.key: _retimed(c, current, float(d.low or 0), high)})
    return ops


def _change_arg(c: _Context) -> list[Op] | None:
    ops = c.body()
    targets = [(i, d) for i, op in enumerate(ops) for d in c.vocab.spec(op.kind, op.name).domains
               if d.varies() and not c.vocab.spec(op.kind, op.name).positional]
    if not targets:
        return None
    i, d = targets[c.rng.randrange(len(targets))]
    op = ops[i]
    spec = c.vocab.spec(op.kind, op.name)
    current = op.arg(d.key, d.default)
    if current != d.default and c.rng.random() < P_TO_DEFAULT:
        changed = op.with_args(**{d.key: None})
    else:
        cap = seconds_cap(c.remaining(ops) + float(current)) if d.key == spec.time_arg else None
        value = current
        for _ in range(4):
            value = d.draw(c.rng, cap)
            if value != current:
                break
        changed = op.with_args(**{d.key: value})
    try:
        validate_op(changed, c.vocab)
    except OpError:
        if spec.sample is None:
            return None
        changed = Op(op.kind, op.name, tuple(spec.sample(c.rng).items()), op.background)
    ops[i] = changed
    return ops


def _splice(c: _Context) -> list[Op] | None:
    if not c.corpus:
        return None
    other = c.corpus[c.rng.randrange(len(c.corpus))]
    theirs = list(other.ops)
    while theirs and theirs[-1].kind == "wait":
        theirs.pop()
    ours = c.body()
    return ours[:c.rng.randint(0, len(ours))] + theirs[c.rng.randint(0, len(theirs)):]


MUTATORS: dict[str, Mutator] = {
    "insert": _insert, "remove": _remove, "reorder": _reorder, "retime": _retime, "change_arg": _change_arg,
    "splice": _splice,
}


def _finish(c: _Context, ops: list[Op]) -> Program | None:
    """The candidate as a program (checked, tidied), or None when it breaks a rule of the module."""
    tidy: list[Op] = []
    for op in ops:
        if op.kind == "wait" and tidy and tidy[-1].kind == "wait":
            continue  # wait; wait is one wait
        tidy.append(op)
    while tidy and tidy[-1].kind == "wait":
        tidy.pop()
    tidy.append(Op("wait"))
    try:
        program = Program(tuple(tidy), c.program.comments).validate(c.vocab)
    except ProgramError:
        return None
    if (not program.active_ops() or len(program.ops) > c.max_ops or program.seconds(c.vocab) > c.max_seconds
            or program.ops == c.program.ops):
        return None
    return program


def mutate_named(program: Program, rng: random.Random, corpus: Sequence[Program] = (), *,
                 vocab: Vocabulary | None = None, max_ops: int = MAX_OPS,
                 max_seconds: float = MAX_SECONDS) -> tuple[Program, str]:
    """:func:`mutate`, and the name of the mutation that made the result."""
    v = vocab or vocabulary()
    c = _Context(program.validate(v), rng, corpus, v, max_ops, max_seconds)
    names = [n for n in MUTATIONS if n != "splice" or corpus]
    for _ in range(ATTEMPTS):
        name = names[rng.randrange(len(names))]
        ops = MUTATORS[name](c)
        result = None if ops is None else _finish(c, ops)
        if result is not None:
            return result, name
    # Nothing worked (a program at its limits): a path or device op inserted, or an op removed, always does.
    for _ in range(ATTEMPTS):
        ops, name = c.body(), "remove"
        if len(ops) + 1 < c.max_ops:
            ops.insert(rng.randint(0, len(ops)),
                       random_op(rng, c.vocab, remaining=0.0, kinds=("path", "device")).with_background(
                           rng.random() < P_BACKGROUND))
            name = "insert"
        elif ops:
            del ops[rng.randrange(len(ops))]
        result = _finish(c, ops)
        if result is not None:
            return result, name
    raise ValueError(f"no valid mutation of this program:\n{program.text(c.vocab)}")


def mutate(program: Program, rng: random.Random, corpus: Sequence[Program] = (), *,
           vocab: Vocabulary | None = None, max_ops: int = MAX_OPS, max_seconds: float = MAX_SECONDS) -> Program:
    """One mutation of ``program`` (module docstring: which, and what a result always satisfies)."""
    return mutate_named(program, rng, corpus, vocab=vocab, max_ops=max_ops, max_seconds=max_seconds)[0]

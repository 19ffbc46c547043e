"""Program generation and mutation: deterministic per seed, always valid, covering the vocabulary."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter

from mlx5lab.fuzz.generate import MAX_SECONDS, generate
from mlx5lab.fuzz.mutate import MAX_OPS, MUTATIONS, mutate, mutate_named
from mlx5lab.fuzz.ops import KINDS, vocabulary
from mlx5lab.fuzz.program import Op, Program, check_program, format, parse, program_hash

SEEDS = range(200)


def assert_valid(p: Program, max_ops: int = MAX_OPS, max_seconds: float = MAX_SECONDS) -> None:
    assert parse(format(p)) == p  # it prints, parses back the same, and every op validates
    assert check_program(p) == p  # normalized already, with an op that is not a sleep or wait
    assert p.ops[-1] == Op("wait")
    assert len(p.ops) <= max_ops
    assert p.seconds() <= max_seconds


def test_same_seed_same_program_different_seeds_differ() -> None:
    for seed in range(50):
        assert generate(random.Random(seed)) == generate(random.Random(seed))
        assert format(generate(random.Random(seed))) == format(generate(random.Random(seed)))
    texts = {format(generate(random.Random(seed))) for seed in SEEDS}
    assert len(texts) >= 195


_CHILD = """
import json, random
from mlx5lab.fuzz.generate import generate
from mlx5lab.fuzz.mutate import mutate
from mlx5lab.fuzz.program import format
out = []
for seed in range(30):
    p = generate(random.Random(seed))
    out.append(format(p))
    out.append(format(mutate(p, random.Random(seed), [generate(random.Random(seed + 1000))])))
print(json.dumps(out))
"""


def test_same_seed_same_program_under_any_hash_seed() -> None:
    here = []
    for seed in range(30):
        p = generate(random.Random(seed))
        here.append(format(p))
        here.append(format(mutate(p, random.Random(seed), [generate(random.Random(seed + 1000))])))
    for hash_seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, check=True,
                             timeout=60).stdout
        assert json.loads(out) == here


def test_generated_programs_are_valid_and_bounded() -> None:
    for seed in SEEDS:
        p = generate(random.Random(seed))
        assert_valid(p, max_ops=8 + 1)
    for seed in range(50):
        p = generate(random.Random(seed), max_ops=2)
        assert_valid(p, max_ops=3)
        assert len(p.active_ops()) >= 1


def test_generation_covers_the_vocabulary() -> None:
    v = vocabulary()
    seen: dict[str, set[str]] = {k: set() for k in KINDS}
    background = sleeps_between = with_args = 0
    for seed in SEEDS:
        p = generate(random.Random(seed))
        for i, op in enumerate(p.ops):
            seen[op.kind].add(op.name)
            background += op.background
            with_args += bool(op.args) and op.kind != "sleep"
            sleeps_between += op.kind == "sleep" and 0 < i < len(p.ops) - 1
    assert seen["read"] == set(v.names("read"))  # every read kind
    assert seen["device"] == set(v.names("device"))
    assert seen["path"] == set(v.names("path"))
    assert seen["sleep"] == {""} and seen["wait"] == {""}
    assert background > 100 and sleeps_between > 50 and with_args > 200


def test_generation_draws_argument_values_across_domains() -> None:
    values: dict[tuple[str, str], set] = {}
    for seed in SEEDS:
        for op in generate(random.Random(seed)).ops:
            for key, value in op.args:
                values.setdefault((op.kind, key), set()).add(value)
    assert values["read", "threads"] >= {1, 16}
    assert values["read", "fn"] == {"0", "1"}  # "both" is the default, never printed
    assert len(values["read", "duration"]) > 20
    assert len(values["sleep", "seconds"]) > 20
    assert values["device", "opcode"] - {"any"}


def test_mutate_is_deterministic_per_rng() -> None:
    corpus = [generate(random.Random(1000 + s)) for s in range(5)]
    for seed in range(50):
        p = generate(random.Random(seed))
        assert mutate(p, random.Random(seed), corpus) == mutate(p, random.Random(seed), corpus)
        assert mutate_named(p, random.Random(seed)) == mutate_named(p, random.Random(seed))


def test_mutations_are_always_valid_and_change_the_program() -> None:
    corpus = [generate(random.Random(1000 + s)) for s in range(8)]
    used: Counter[str] = Counter()
    rng = random.Random(7)
    for seed in range(20):
        p = generate(random.Random(seed))
        for _ in range(40):
            q, name = mutate_named(p, rng, corpus)
            assert_valid(q)
            assert q.ops != p.ops
            used[name] += 1
            p = q
    assert set(used) == set(MUTATIONS)
    assert all(n > 50 for n in used.values()), used


def test_mutating_a_program_at_its_limits() -> None:
    full = Program(tuple([Op("path", "unbind")] * (MAX_OPS - 1) + [Op("wait")]))
    single = Program((Op("read", "speed", {"duration": MAX_SECONDS}), Op("wait")))
    for seed in range(30):
        assert_valid(mutate(full, random.Random(seed)))
        q = mutate(single, random.Random(seed))
        assert_valid(q)
        assert q.ops != single.ops


def test_splice_uses_the_corpus() -> None:
    ours = parse("read speed threads=4 &\nsleep 0.2\npath unbind fn=1\npath bind fn=1\nwait\n")
    theirs = parse("device corrupt opcode=TEARDOWN_HCA field=state value=1\npath sync-reset &\n"
                   "device fw_fatal synd=7\nwait\n")
    body, other = list(ours.ops[:-1]), list(theirs.ops[:-1])
    spliced = 0
    for seed in range(200):
        q, name = mutate_named(ours, random.Random(seed), [theirs])
        assert_valid(q)
        if name != "splice":
            continue
        spliced += 1
        cuts = [(i, j) for i in range(len(body) + 1) for j in range(len(other) + 1)
                if body[:i] + other[j:] == list(q.ops[:-1])]
        assert cuts, format(q)  # a prefix of ours and a suffix of theirs
        if any(j < len(other) for _, j in cuts):
            assert set(q.ops) & set(other)
    assert spliced > 10
    assert any(set(mutate(ours, random.Random(s), [theirs]).ops) & set(other) for s in range(50))
    for seed in range(100):  # no corpus: no splice
        assert mutate_named(ours, random.Random(seed))[1] != "splice"


def test_program_hash_of_generated_programs_is_their_text() -> None:
    hashes = {program_hash(generate(random.Random(seed))) for seed in range(100)}
    assert len(hashes) == len({format(generate(random.Random(seed))) for seed in range(100)})


def test_about_half_the_programs_race_background_work_against_a_teardown() -> None:
    from mlx5lab.fuzz.ops import teardown_paths

    def race_shaped(p: Program) -> bool:
        teardown = [i for i, o in enumerate(p.ops) if o.kind == "path" and o.name in teardown_paths()
                    and not o.background]
        return bool(teardown) and any(o.background for o in p.ops[:teardown[0]])

    programs = [generate(random.Random(seed)) for seed in range(400)]
    shaped = sum(race_shaped(p) for p in programs)
    assert 0.4 * len(programs) <= shaped <= 0.75 * len(programs)  # the shaped half, plus free ones by chance
    names = Counter(o.name for p in programs if race_shaped(p) for o in p.ops if o.kind == "path")
    assert len(set(names) & set(teardown_paths())) >= 10  # every kind of teardown, not one favourite


def test_race_shaped_programs_keep_their_background_running_into_the_teardown(monkeypatch) -> None:  # noqa: ANN001
    """The shaped half's pause is shorter than its longest background reader, and its teardown takes the
    arguments under which running processes survive (a graceful reboot would end them first)."""
    from mlx5lab.fuzz import generate as gen
    from mlx5lab.fuzz.ops import full_args, op_seconds, teardown_paths

    v = vocabulary()
    assert dict(v.spec("path", "reboot").concurrent) == {"force": True}
    assert dict(v.spec("path", "poweroff").concurrent) == {"force": True}
    assert v.spec("path", "unbind").concurrent == ()
    assert full_args(gen.concurrent(Op("path", "reboot", (("timeout", 60.0),)), v), v) == {"force": True,
                                                                                            "timeout": 60.0}
    monkeypatch.setattr(gen, "P_RACE_SHAPE", 1.0)  # only the shaped half
    shutdowns = paused = 0
    for seed in range(1000):
        p = generate(random.Random(f"race:{seed}"))
        td = next(i for i, o in enumerate(p.ops) if o.kind == "path" and not o.background)
        before, teardown = p.ops[:td], p.ops[td]
        assert teardown.name in teardown_paths()
        if teardown.name in ("reboot", "poweroff"):
            shutdowns += 1
            assert full_args(teardown)["force"] is True, p.text()
        sleeps = [op_seconds(o) for o in before if o.kind == "sleep"]
        longest = max((op_seconds(o) for o in before if o.kind == "read"), default=0.0)
        if sleeps and longest > 0:
            paused += 1
            assert sum(sleeps) <= longest, p.text()
    assert shutdowns > 80 and paused > 200

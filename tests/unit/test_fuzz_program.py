"""Fuzz programs: the vocabulary, the text format (parse, canonical print, round trip, errors), the hash."""

from __future__ import annotations

import hashlib

import pytest

from mlx5dev.mlx5.consts import Op as Opcode
from mlx5dev.mlx5.consts import Reg, Status
from mlx5dev.mlx5.ifc import cmds
from mlx5lab.fuzz import ops
from mlx5lab.fuzz.ops import OpError, control_request, full_args, op_seconds, validate_op, vocabulary
from mlx5lab.fuzz.program import Op, Program, ProgramError, check_program, format, parse, program_hash
from mlx5lab.paths.registry import get_path, path_names

SPEC_EXAMPLE = """\
# mlx5lab-program v1
# seed 17 gen 3            (free comments: '#' to end of line; blank lines ignored)
read speed threads=4 duration=3 fn=1 &
sleep 0.35
path unbind fn=1
device fault fn=0 opcode=ACCESS_REG register=PTYS delay_ms=200 count=3
device fw_fatal synd=1 &
sleep 0.1
path bind fn=1
wait
"""

SPEC_CANONICAL = """\
# mlx5lab-program v1
# seed 17 gen 3            (free comments: '#' to end of line; blank lines ignored)
read speed duration=3 fn=1 threads=4 &
sleep 0.35
path unbind fn=1
device fault count=3 delay_ms=200 fn=0 opcode=ACCESS_REG register=PTYS
device fw_fatal &
sleep 0.1
path bind fn=1
wait
"""


# -- the vocabulary ---------------------------------------------------------------------------------------
def test_vocabulary_kinds_and_counts() -> None:
    v = vocabulary()
    counts = v.counts()
    assert list(counts) == ["read", "path", "device", "sleep", "wait"]
    assert counts["read"] == 17 and counts["device"] == 11 and counts["sleep"] == counts["wait"] == 1
    assert v.names("path") == tuple(sorted(path_names()))
    assert set(v.names("read")) >= {"speed", "duplex", "ethtool-netlink-dump", "bond-speed", "vlan-speed", "traffic"}
    for name in v.names("path"):
        assert v.spec("path", name).side == get_path(name).side
    for kind in ops.KINDS:
        assert list(v.names(kind)) == sorted(v.names(kind))


def test_every_default_op_is_valid_and_every_domain_is_consistent() -> None:
    v = vocabulary()
    for spec in v.specs():
        args = {"seconds": 0.5} if spec.positional else {}
        validate_op(Op(spec.kind, spec.name, tuple(args.items())))
        for d in spec.domains:
            assert d.coerce(d.default) == d.default, (spec.title(), d.key)
            if d.type == "choice":
                assert d.default in d.choices
            if d.fuzzed and d.type in ("int", "float"):
                assert d.low is not None and d.high is not None and d.low <= d.default <= d.high
                assert all(d.low <= s <= d.high for s in d.special), (spec.title(), d.key)


def test_path_domains_follow_the_registry() -> None:
    v = vocabulary()
    for name in v.names("path"):
        spec = v.spec("path", name)
        infos = {i.name: i for i in get_path(name).arg_infos()}
        assert set(spec.arg_keys()) == set(infos)
        for d in spec.domains:
            info = infos[d.key]
            assert d.default == info.default
            if info.choices is not None:
                assert set(d.choices) <= set(info.choices)
            if d.key == "fn":
                assert set(d.choices) <= {"0", "1", "both"}  # a two-function card
            if info.minimum is not None and d.fuzzed and d.low is not None:
                assert d.low >= info.minimum
    assert v.spec("path", "unbind-bind").domain("count").high == 3


def test_device_tables_name_what_the_device_knows() -> None:
    known_ops = {o.name for o in Opcode}
    assert set(ops.FAULT_OPCODES) <= known_ops
    assert set(ops.FAULT_REGISTERS) <= {r.name for r in Reg}
    expected = {s.name: int(s) for s in Status if s.name != "OK"}
    assert expected == ops.FAULT_STATUS
    layouts = {obj.name: obj for obj in vars(cmds).values() if hasattr(obj, "fields") and hasattr(obj, "name")}
    for (opcode, fld), width in ops.CORRUPT_FIELDS.items():
        assert opcode in known_ops
        assert layouts[f"{opcode.lower()}_out"].field(fld).width == width, (opcode, fld)


@pytest.mark.parametrize(("op", "normal"), [
    (Op("read", "speed", {"threads": "4", "fn": 1, "duration": "2"}), (("fn", "1"), ("threads", 4))),
    (Op("read", "speed", {"duration": 0.12345}), (("duration", 0.123),)),
    (Op("path", "unbind-bind", {"count": "0x2", "order": "forward"}), (("count", 2),)),
    (Op("path", "reboot", {"force": "yes"}), (("force", True),)),
    (Op("path", "reboot", {"timeout": 30}), (("timeout", 30.0),)),  # fixed, but any value the path takes
    (Op("device", "set_speed", {"mbps": "25000"}), (("mbps", 25000),)),
    (Op("device", "fault", {"status": "BAD_PARAM", "count": 1}), (("status", "BAD_PARAM"),)),
    (Op("sleep", "", {"seconds": "0"}), (("seconds", 0.0),)),  # a sleep keeps its value, even 0
])
def test_validate_op_normalizes(op: Op, normal: tuple) -> None:
    checked = validate_op(op)
    assert checked.args == normal
    assert validate_op(checked) == checked


@pytest.mark.parametrize(("op", "message", "key"), [
    (Op("read", "sped"), "unknown read 'sped'", None),
    (Op("read", "speed", {"threads": 17}), "threads=17: out of range 1..16", "threads"),
    (Op("read", "speed", {"threads": "two"}), "not an integer", "threads"),
    (Op("read", "speed", {"duration": "nan"}), "not a number", "duration"),
    (Op("read", "speed", {"colour": "red"}), "unknown argument 'colour'", "colour"),
    (Op("path", "unbind", {"fn": "2"}), "fn=2: not one of 0|1|both", "fn"),
    (Op("path", "reboot", {"force": "maybe"}), "not a bool", "force"),
    (Op("device", "fault", {"hold": True, "count": 0}), "drop and hold need a count", "count"),
    (Op("device", "fault", {"opcode": "QUERY_PAGES", "register": "PTYS"}), "needs opcode=ACCESS_REG", "opcode"),
    (Op("device", "corrupt", {"opcode": "CREATE_EQ", "field": "cqn"}), "not an output field of CREATE_EQ",
     "field"),
    (Op("device", "corrupt", {"opcode": "CREATE_EQ", "field": "eq_number", "value": 256}), "does not fit",
     "field"),
    (Op("sleep", "", {"seconds": 11}), "out of range 0..10", "seconds"),
    (Op("sleep", "", {}), "sleep needs its seconds", None),
    (Op("sleep", "", {"seconds": 1}, True), "cannot run in the background", None),
    (Op("wait", "", {}, True), "cannot run in the background", None),
    (Op("wait", "x"), "wait has no name", None),
    (Op("jump", "x"), "unknown kind 'jump'", None),
])
def test_validate_op_errors(op: Op, message: str, key: str | None) -> None:
    with pytest.raises(OpError, match=message) as info:
        validate_op(op)
    assert info.value.key == key


def test_full_args_seconds_and_control_requests() -> None:
    assert full_args(Op("read", "speed")) == {"threads": 2, "duration": 2.0, "fn": "both"}
    assert op_seconds(Op("read", "speed")) == 2.0
    assert op_seconds(Op("sleep", "", {"seconds": 0.25})) == 0.25
    assert op_seconds(Op("path", "unbind")) == 0.0
    assert control_request(validate_op(Op("device", "fault", {"fn": "0", "opcode": "ACCESS_REG",
                                                              "register": "PTYS", "status": "BAD_PARAM"}))) == (
        "add_fault", {"function": 0, "opcode": "ACCESS_REG", "register": "PTYS", "delay_ms": 0, "status": 3,
                      "drop": False, "hold": False, "count": 1})
    assert control_request(Op("device", "fault", {"count": 0}))[1]["delay_ms"] == 0
    assert "count" not in control_request(Op("device", "fault", {"count": 0}))[1]
    assert control_request(Op("device", "fw_dead")) == ("fw_dead", {})
    assert control_request(Op("device", "fw_dead", {"seconds": 2.5})) == ("fw_dead", {"seconds": 2.5})
    assert control_request(Op("device", "set_link", {"fn": "1"})) == ("set_link", {"function": 1, "up": False})
    assert control_request(Op("device", "sync_reset")) == ("sync_reset", {})
    with pytest.raises(OpError):
        control_request(Op("path", "unbind"))


# -- the text format ----------------------------------------------------------------------------------------
def test_spec_example_parses_to_its_canonical_text() -> None:
    p = parse(SPEC_EXAMPLE)
    assert format(p) == SPEC_CANONICAL
    assert p.comments == ("seed 17 gen 3            (free comments: '#' to end of line; blank lines ignored)",)
    assert [op.kind for op in p.ops] == ["read", "sleep", "path", "device", "device", "sleep", "path", "wait"]
    assert p.ops[0] == Op("read", "speed", {"threads": 4, "duration": 3.0, "fn": "1"}, True)
    assert p.ops[1].arg("seconds") == 0.35
    assert p.seconds() == 3.45
    assert [op.name for op in p.guest_ops()] == ["speed", "unbind", "bind"]
    assert [op.name for op in p.device_ops()] == ["fault", "fw_fatal"]
    assert len(p.active_ops()) == 5


def test_round_trip() -> None:
    p = parse(SPEC_EXAMPLE)
    assert parse(format(p)) == p
    assert format(parse(SPEC_CANONICAL)) == SPEC_CANONICAL
    assert parse(format(p)).comments == p.comments


def test_canonical_printing_rules() -> None:
    text = ("read  speed   fn=both threads=2 duration=2.000   &  # every default\n"
            "\n"
            "sleep 0.350\n"
            "read duplex duration=0.12345\n"
            "path reboot force=1 timeout=120\n"
            "device set_link up=on\n"
            "# a comment after the first op is not a header comment\n"
            "wait\n")
    assert format(parse(text)) == ("# mlx5lab-program v1\n"
                                  "read speed &\n"
                                  "sleep 0.35\n"
                                  "read duplex duration=0.123\n"
                                  "path reboot force=true\n"
                                  "device set_link up=true\n"
                                  "wait\n")


def test_empty_and_comment_only_texts() -> None:
    assert parse("").ops == ()
    assert format(parse("")) == "# mlx5lab-program v1\n"
    with pytest.raises(ProgramError, match="an op other than sleep and wait"):
        check_program(parse("sleep 1\nwait\n"))


@pytest.mark.parametrize(("body", "reason", "token"), [
    ("jump speed", "unknown kind 'jump'", "jump"),
    ("read", "read needs a name", "read"),
    ("read threads=4", "read needs a name", "threads=4"),
    ("read sped threads=4", "unknown read 'sped'", "sped"),
    ("read speed threads", "an argument is key=value", "threads"),
    ("read speed =4", "an argument is key=value", "=4"),
    ("read speed threads=4 threads=5", "threads given twice", "threads=5"),
    ("read speed threads=99", "out of range 1..16", "threads=99"),
    ("read speed & fn=1", "& comes last on a line", "&"),
    ("path unbind fn=7", "not one of 0|1|both", "fn=7"),
    ("path frobnicate", "unknown path 'frobnicate'", "frobnicate"),
    ("device fault register=PTYS opcode=QUERY_PAGES", "needs opcode=ACCESS_REG", "opcode=QUERY_PAGES"),
    ("sleep", "sleep takes one value", "sleep"),
    ("sleep 1 2", "sleep takes one value", "2"),
    ("sleep soon", "not a number", "soon"),
    ("sleep 1 &", "cannot run in the background", "&"),
    ("wait now", "wait takes no argument", "now"),
    ("wait &", "cannot run in the background", "&"),
    ("# mlx5lab-program v2", "unsupported program format version", "# mlx5lab-program v2"),
])
def test_parse_errors_name_line_and_token(body: str, reason: str, token: str) -> None:
    text = f"# mlx5lab-program v1\n# header\n\nread speed &\n{body}\nwait\n"
    with pytest.raises(ProgramError) as info:
        parse(text)
    err = info.value
    assert err.line == 5
    assert err.token == token
    assert reason in err.reason
    assert str(err).startswith("line 5: ") and repr(token) in str(err)


def test_program_validate_names_the_line() -> None:
    p = Program((Op("read", "speed"), Op("read", "speed", {"threads": 0})))
    with pytest.raises(ProgramError, match=r"^line 2: .*threads=0") as info:
        p.validate()
    assert info.value.token == "threads"


# -- the hash -----------------------------------------------------------------------------------------------
def test_hash_is_the_canonical_text_and_ignores_spelling() -> None:
    p = parse(SPEC_EXAMPLE)
    h = program_hash(p)
    assert len(h) == 16 and int(h, 16) >= 0
    assert h == p.hash() == program_hash(parse(SPEC_CANONICAL))
    assert h == hashlib.sha256(SPEC_CANONICAL.encode()).hexdigest()[:16]  # as the work folder names its text
    assert program_hash(p.with_comments("another seed")) != h  # comments are part of the text...
    assert program_hash(p.with_comments()) == program_hash(parse(SPEC_CANONICAL).with_comments())  # ...not of the ops
    respelled = SPEC_EXAMPLE.replace("threads=4 duration=3 fn=1", "fn=1 duration=3.000 threads=0x4")
    assert program_hash(parse(respelled)) == h
    assert program_hash(parse(SPEC_EXAMPLE.replace("sleep 0.35", "sleep 0.36"))) != h
    assert program_hash(parse(SPEC_EXAMPLE.replace("path unbind fn=1", "path unbind fn=1 &"))) != h
    # pinned: the canonical text and its hash are a contract with the executor and the crash store
    small = Program((Op("read", "speed", {"threads": 4}, True), Op("path", "unbind"), Op("wait")))
    text = "# mlx5lab-program v1\nread speed threads=4 &\npath unbind\nwait\n"
    assert format(small) == text
    assert program_hash(small) == hashlib.sha256(text.encode()).hexdigest()[:16] == "d6f5dcc616945988"


def test_corrupted_counts_include_ones_whose_byte_size_wraps_32_bits() -> None:
    import random

    from mlx5lab.fuzz.ops import CORRUPT_FIELDS, OVERFLOW_COUNTS, vocabulary

    assert [c * size % (1 << 32) for c, size in zip(OVERFLOW_COUNTS, (4, 8, 16), strict=True)] == [4, 8, 16]
    spec = vocabulary().spec("device", "corrupt")
    rng = random.Random(7)
    drawn: dict[int, set[int]] = {}
    for _ in range(4000):
        a = spec.sample(rng)
        drawn.setdefault(CORRUPT_FIELDS[a["opcode"], a["field"]], set()).add(a["value"])
        assert spec.check({**spec.defaults(), **a}) is None
    assert set(OVERFLOW_COUNTS) <= drawn[32]  # a 32-bit count such as QUERY_PAGES' num_pages gets them
    assert not set(OVERFLOW_COUNTS) & drawn[24]  # a 24-bit field cannot hold them

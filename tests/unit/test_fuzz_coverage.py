"""Coverage keys from a device trace and a console log: the function state machine, teardown order
bigrams, kernel-log templates, new-key detection and persistence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlx5lab.fuzz.coverage import (
    ERROR,
    PROBING,
    TEARDOWN,
    UP,
    Coverage,
    FunctionState,
    console_keys,
    key_text,
    log_template,
    run_keys,
    trace_keys,
)
from mlx5lab.rundir import RunDir


def cmd(op: str, status: int | None = 0, op_mod: int = 0, fn: str = "fn0", **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"kind": "cmd", "function": fn, "opcode": 0, "op": op, "op_mod": op_mod, **extra}
    if status is not None:
        r["status"] = status
        r["status_name"] = {0: "OK", 2: "BAD_OP", 3: "BAD_PARAM"}[status]
    return r


def note(kind: str, detail: str, fn: str = "fn0") -> dict[str, Any]:
    return {"kind": kind, "function": fn, "detail": detail}


PROBE = [cmd("ENABLE_HCA"), cmd("QUERY_ISSI"), cmd("INIT_HCA")]


def test_state_machine_transitions() -> None:
    m = FunctionState()
    m.feed(note("info", "function reset"))  # the power-on reset before the driver probes
    assert m.state == PROBING
    seen = [m.feed(r) for r in [*PROBE, cmd("ACCESS_REG", reg="PTYS"), cmd("TEARDOWN_HCA"), cmd("DISABLE_HCA")]]
    assert seen == [PROBING, PROBING, PROBING, UP, UP, TEARDOWN]
    assert m.feed(cmd("ENABLE_HCA")) == TEARDOWN and m.state == PROBING  # a reload
    m.feed(cmd("INIT_HCA", status=3))
    assert m.state == PROBING  # a failed INIT_HCA does not bring the function up
    m.feed(cmd("INIT_HCA"))
    assert m.state == UP
    m.feed(note("firmware", "fatal: firmware halted"))
    assert m.state == ERROR
    m.feed(note("firmware", "sync reset requested by fn0"))
    assert m.state == ERROR  # a negotiation, not a reset
    m.feed(note("firmware", "reset (health recovery)"))
    assert m.state == TEARDOWN
    m.feed(cmd("ENABLE_HCA"))
    m.feed(cmd("INIT_HCA"))
    m.feed(note("info", "halted: dead firmware"))
    assert m.state == ERROR
    m.feed(note("info", "function-level reset"))
    assert m.state == TEARDOWN
    m.feed(note("info", "held by fault"))
    assert m.state == TEARDOWN


def test_trace_keys() -> None:
    records = [*PROBE, cmd("ACCESS_REG", reg="PTYS"),
               cmd("ACCESS_REG", fn="fn1", reg="PTYS"),  # fn1 never probed here: still "probing"
               cmd("DESTROY_EQ"), cmd("ACCESS_REG", status=None, reg="PTYS", detail="dropped by fault"),
               cmd("MANAGE_PAGES", op_mod=2), cmd("TEARDOWN_HCA"), cmd("QUERY_VPORT_STATE", status=2)]
    keys = trace_keys(records)
    assert ("cmd", "probing", "INIT_HCA", 0, "OK") in keys
    assert ("cmd", "up", "ACCESS_REG/PTYS", 0, "OK") in keys
    assert ("cmd", "probing", "ACCESS_REG/PTYS", 0, "OK") in keys
    assert ("cmd", "up", "ACCESS_REG/PTYS", 0, "dropped") in keys
    assert ("cmd", "teardown", "QUERY_VPORT_STATE", 0, "BAD_OP") in keys
    orders = {k for k in keys if k[0] == "order"}
    assert orders == {("order", "ACCESS_REG/PTYS", "DESTROY_EQ"), ("order", "DESTROY_EQ", "ACCESS_REG/PTYS"),
                      ("order", "ACCESS_REG/PTYS", "MANAGE_PAGES#2"), ("order", "MANAGE_PAGES#2", "TEARDOWN_HCA"),
                      ("order", "TEARDOWN_HCA", "QUERY_VPORT_STATE")}
    assert ("order", "QUERY_ISSI", "INIT_HCA") not in keys  # neither is a teardown command
    assert key_text(("cmd", "up", "ACCESS_REG/PTYS", 0, "OK")) == "cmd up ACCESS_REG/PTYS 0 OK"


def test_log_template_normalises() -> None:
    assert (log_template("[  12.345678] mlx5_core 0000:01:00.1: func:123:(pid 45): text 0x1f 12")
            == "func: text <hex> <n>")
    assert (log_template("[    3.447037] mlx5_core 0000:01:00.0: firmware version: 16.35.2000")
            == "firmware version: <n>")
    assert log_template("[    3.803379] mlx5_core 0000:01:00.0 eth1: Link up") == "Link up"
    assert (log_template("mlx5_core 0000:01:00.0: mlx5_cmd_out_err:838:(pid 1220): ACCESS_REG(0x805) op_mod(0x1) "
                         "failed, status bad parameter(0x3), syndrome (0x6c58b), err(-22)")
            == "mlx5_cmd_out_err: ACCESS_REG(<hex>) op_mod(<hex>) failed, status bad parameter(<hex>), "
               "syndrome (<hex>), err(<n>)")
    assert (log_template("[    3.5] mlx5_core 0000:01:00.0: MLX5E: StrdRq(0) RqSz(1024)")
            == "MLX5E: StrdRq(<n>) RqSz(<n>)")
    assert log_template("[    3.0] mlx5_core: loading out-of-tree module taints kernel.") == (
        "loading out-of-tree module taints kernel.")
    assert log_template("[    4.7]  mlx5_cmd_do+0x1e/0x40 [mlx5_core]") is None  # a stack frame
    assert log_template("[    1.0] virtio_net virtio0 eth0: renamed") is None
    a = log_template("[ 1.0] mlx5_core 0000:01:00.0: poll_health:800:(pid 0): device's health compromised")
    b = log_template("[ 9.0] mlx5_core 0000:01:00.1: poll_health:801:(pid 77): device's health compromised")
    assert a == b


def test_console_keys() -> None:
    text = ("[    3.442776] mlx5_core 0000:01:00.0: enabling device (0000 -> 0002)\n"
            "[    3.649029] mlx5_core 0000:01:00.1: enabling device (0000 -> 0002)\n"
            "[    3.9] random: crng init done\n")
    assert console_keys(text) == {("log", "enabling device (<n> -> <n>)")}


def test_run_keys_read_every_function(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.card.path.mkdir()
    for i, records in enumerate([[*PROBE], [cmd("ENABLE_HCA", fn="fn1"), cmd("TEARDOWN_HCA", fn="fn1")]]):
        run.card.trace(i).write_text("".join(json.dumps(r) + "\n" for r in records) + '{"kind": "cm')
    run.console.write_text("[ 1.0] mlx5_core 0000:01:00.1 eth2: Link down\n")
    keys = run_keys(run)
    assert ("cmd", "probing", "INIT_HCA", 0, "OK") in keys
    assert ("order", "ENABLE_HCA", "TEARDOWN_HCA") in keys
    assert ("log", "Link down") in keys


def test_coverage_new_keys_and_persistence(tmp_path: Path) -> None:
    cov = Coverage()
    first = trace_keys(PROBE)
    assert cov.add(first) == first and cov.size == len(first)
    assert cov.add(first) == set()
    more = first | {("log", "Link up")}
    assert cov.new(more) == {("log", "Link up")} and len(cov) == len(first)
    assert cov.add(more) == {("log", "Link up")}
    path = cov.save(tmp_path / "coverage.json")
    again = Coverage.load(path)
    assert again.keys() == cov.keys() and ("log", "Link up") in again and ["log", "Link up"] in again
    assert Coverage.load(tmp_path / "missing.json").size == 0

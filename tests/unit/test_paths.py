"""The unload/reload path framework without QEMU: registry, arguments, health checks, runner, CLI."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mlx5lab.cli import main as cli_main
from mlx5lab.paths import (
    PathArgError,
    PathError,
    get_path,
    health,
    parse_spec,
    path_names,
    register_path,
    registry,
    run_path,
    runner,
)
from mlx5lab.paths.ethtool import ethtool_sections, pow2_up
from mlx5lab.paths.ports import Port, port_state_problems
from mlx5lab.paths.power import shutdown_problems
from mlx5lab.paths.registry import DriverPath, NoArgs, arg, select_functions
from mlx5lab.paths.stack import stack_script

GUEST_MODULES = ("guest", "ethtool", "stack", "power")
OOPS = Path(__file__).parent.parent / "data" / "oops"
GUEST_PATHS = ["unbind", "bind", "unbind-bind", "remove-rescan", "devlink-reload", "module-reload",
               "ethtool-channels", "ethtool-rings", "stack-bond", "stack-vlan", "reboot", "poweroff"]


# -- registry and arguments ---------------------------------------------------------------------------
def test_guest_paths_are_registered_in_order_and_documented() -> None:
    names = path_names()
    mine = [n for n in names if type(get_path(n)).__module__.rpartition(".")[2] in GUEST_MODULES]
    assert mine == GUEST_PATHS == names[: len(GUEST_PATHS)]  # no FLR among them: that is the device side's
    for name in GUEST_PATHS:
        p = get_path(name)
        assert p.side == "guest" and p.summary and p.trigger and p.device
        assert all(": " in k for k in p.kernel_functions), p.kernel_functions  # "file: function" citations
        for variant in p.variants:
            p.make_args(**variant)
    assert get_path("poweroff").ends_machine and not get_path("poweroff").ends_bound
    assert not get_path("unbind").ends_bound and get_path("reboot").ends_bound


def test_unknown_path_and_argument_are_refused_with_what_is_valid() -> None:
    with pytest.raises(PathArgError, match="unknown path 'nope'; known: unbind"):
        get_path("nope")
    with pytest.raises(PathArgError, match="unknown argument.*speed; its arguments: fn, order, bind_order, count"):
        get_path("unbind-bind").make_args(speed=1)


def test_arguments_are_converted_and_checked() -> None:
    p = get_path("unbind-bind")
    assert p.make_args(fn=1).fn == "1"
    assert p.make_args(fn="both", count="3").count == 3
    assert p.label(p.make_args(fn=1)) == "unbind-bind fn=1"
    assert p.label(p.make_args()) == "unbind-bind"
    with pytest.raises(PathArgError, match="fn='x' is not one of 0|1"):
        p.make_args(fn="x")
    with pytest.raises(PathArgError, match="count=0 is below its minimum 1"):
        p.make_args(count=0)
    with pytest.raises(PathArgError, match="not a int"):
        p.make_args(count="many")
    with pytest.raises(PathArgError, match="not a int"):
        p.make_args(count=True)
    assert get_path("reboot").make_args(force="yes").force is True
    assert get_path("reboot").make_args(timeout=5).timeout == 5.0
    with pytest.raises(PathArgError, match="no_reset goes with action=fw_activate"):
        get_path("devlink-reload").make_args(limit="no_reset")
    assert get_path("devlink-reload").make_args(action="fw_activate", limit="no_reset").limit == "no_reset"
    with pytest.raises(PathArgError, match="ring size '8'"):
        get_path("ethtool-rings").make_args(sizes="8,max")


def test_parse_spec() -> None:
    assert parse_spec("unbind-bind:fn=1, order=reverse") == ("unbind-bind", {"fn": "1", "order": "reverse"})
    assert parse_spec("reboot") == ("reboot", {})
    with pytest.raises(PathArgError, match="key=value"):
        parse_spec("unbind-bind:fn")
    with pytest.raises(PathArgError, match="not one of"):
        parse_spec("unbind-bind:order=sideways")


def test_select_functions() -> None:
    assert select_functions("both", "forward", 2) == [0, 1]
    assert select_functions("both", "reverse", 2) == [1, 0]
    assert select_functions("1", "reverse", 2) == [1]
    with pytest.raises(PathArgError, match="the card has 2 function"):
        select_functions("2", "forward", 2)


@dataclass(frozen=True)
class _ToyArgs:
    n: int = arg(2, "how many", minimum=0)
    boom: bool = arg(False, "raise in the path")


class _Toy(DriverPath):
    name: ClassVar[str] = "test-toy"
    summary: ClassVar[str] = "a path of the tests"
    trigger: ClassVar[str] = "nothing"
    device: ClassVar[str] = "nothing"
    kernel_functions: ClassVar[tuple[str, ...]] = ("none.c: nothing",)
    Args: ClassVar[type[_ToyArgs]] = _ToyArgs
    side: ClassVar[str] = "device"
    performed: ClassVar[list[_ToyArgs]] = []

    def perform(self, m: Any, args: _ToyArgs) -> None:
        self.performed.append(args)
        if args.boom:
            raise PathError("the toy blew up: saw nothing")


@pytest.fixture
def toy() -> Iterator[type[_Toy]]:
    """_Toy registered for one test only (other tests enumerate the registry)."""
    register_path(_Toy)
    _Toy.performed.clear()
    yield _Toy
    registry._PATHS.pop(_Toy.name)
    registry._ORDER.pop(_Toy.name)


def test_register_path_checks_the_class(toy: type[_Toy]) -> None:
    assert path_names()[-1] == "test-toy"  # a path from outside the package comes last

    class Other(_Toy):
        pass

    with pytest.raises(TypeError, match="already registered"):
        register_path(Other)

    class Demanding(_Toy):
        name = "test-demanding"
        card_settings = {"cmd_timeout_ms": 2000, "colour": "red"}

    with pytest.raises(TypeError, match="colour are not CardConfig settings"):
        register_path(Demanding)

    class Bare(DriverPath):
        name = "test-bare"

    with pytest.raises(TypeError, match="lacks summary, trigger, device, kernel_functions"):
        register_path(Bare)

    @dataclass
    class Loose:
        x: int = 1

    class Unfrozen(_Toy):
        name = "test-unfrozen"
        Args = Loose

    with pytest.raises(TypeError, match="frozen dataclass"):
        register_path(Unfrozen)
    assert NoArgs() == NoArgs()


# -- the runner ---------------------------------------------------------------------------------------
class _FakeMachine:
    pass


def _fake_health(monkeypatch: pytest.MonkeyPatch, problems: list[str] | Exception) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def check(m: Any, speeds: list[int], **kw: Any) -> list[str]:
        calls.append({"speeds": speeds, **kw})
        if isinstance(problems, Exception):
            raise problems
        return list(problems)

    monkeypatch.setattr(health, "mark", lambda m: "MARK")
    monkeypatch.setattr(health, "check_healthy", check)
    monkeypatch.setattr(runner, "expected_speeds", lambda m: [100000, 25000])
    return calls


def test_run_path_healthy(monkeypatch: pytest.MonkeyPatch, toy: type[_Toy]) -> None:
    calls = _fake_health(monkeypatch, [])
    r = run_path(_FakeMachine(), "test-toy", n="3")  # type: ignore[arg-type]
    assert r.healthy and r.problems == [] and r.detail == ""
    assert r.args == {"n": 3, "boom": False} and r.label == "test-toy n=3"
    assert calls == [{"speeds": [100000, 25000], "since": "MARK", "ends_bound": True, "guest": True,
                      "expected_dmesg": (), "expected_trace": ()}]
    assert json.loads(json.dumps(r.to_json()))["name"] == "test-toy"


def test_a_failing_path_is_an_unhealthy_result_with_its_error(monkeypatch: pytest.MonkeyPatch, toy: type[_Toy]) -> None:
    _fake_health(monkeypatch, ["fn0 trace: command failed: ..."])
    r = run_path(_FakeMachine(), "test-toy", boom=True)  # type: ignore[arg-type]
    assert not r.healthy
    assert r.detail == "PathError: the toy blew up: saw nothing"
    assert r.problems == ["the path did not finish: PathError: the toy blew up: saw nothing",
                          "fn0 trace: command failed: ..."]
    assert "UNHEALTHY" in r.explain() and "detail: PathError" in r.explain()


def test_a_failing_health_check_is_a_problem(monkeypatch: pytest.MonkeyPatch, toy: type[_Toy]) -> None:
    _fake_health(monkeypatch, ConnectionError("SSH session is closed"))
    r = run_path(_FakeMachine(), "test-toy")  # type: ignore[arg-type]
    assert not r.healthy
    assert r.problems == ["the health check could not finish: ConnectionError: SSH session is closed"]


def test_a_bad_argument_raises_before_anything_runs(monkeypatch: pytest.MonkeyPatch, toy: type[_Toy]) -> None:
    _fake_health(monkeypatch, [])
    with pytest.raises(PathArgError):
        run_path(_FakeMachine(), "test-toy", n=-1)  # type: ignore[arg-type]
    assert _Toy.performed == []


# -- traces -------------------------------------------------------------------------------------------
def _cmd(op: str, status: int = 0, **kw: Any) -> dict[str, Any]:
    names = {0: "OK", 2: "BAD_OP", 3: "BAD_PARAM", 4: "BAD_SYS_STATE"}
    return {"kind": "cmd", "function": "fn0", "slot": 0, "opcode": 0x805, "op": op, "op_mod": 0,
            "status": status, "status_name": names[status], "syndrome": 0x1234 if status else 0, "delivery": 0,
            "delivery_name": "OK", "latency_us": 10.0, **kw}


UAR_REJECT = {"kind": "reject", "function": "fn0", "detail": "write to BAR0 0xc040 (page 12 is not an allocated UAR)"}
FAST = _cmd("TEARDOWN_HCA", detail="prepare fast teardown")


def _write(path: Path, records: list[dict[str, Any]], torn: str = "") -> None:
    with open(path, "a") as f:
        for r in records:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
        f.write(torn)


def test_only_records_after_the_offset_are_read(tmp_path: Path) -> None:
    trace = tmp_path / "trace-fn0.jsonl"
    _write(trace, [_cmd("ACCESS_REG", 3)], torn='{"kind":"cmd","op":"QUE')
    offset = health.trace_end(trace)
    assert health.read_records(trace, 0) == [_cmd("ACCESS_REG", 3)]  # the torn line is left for later
    with open(trace, "a") as f:
        f.write('RY_PAGES"}\n')
    _write(trace, [_cmd("QUERY_VPORT_STATE")])
    assert [r["op"] for r in health.read_records(trace, offset)] == ["QUERY_PAGES", "QUERY_VPORT_STATE"]
    assert health.read_records(trace, 10**9) != []  # a file started again is read from its start
    assert health.read_records(tmp_path / "missing", 0) == []
    assert health.trace_end(tmp_path / "missing") == 0


def test_trace_problems() -> None:
    ok = [_cmd("ENABLE_HCA"), _cmd("ACCESS_REG", reg="PTYS")]
    assert health.trace_problems(ok) == []
    found = health.trace_problems([_cmd("FOO", 2), _cmd("ACCESS_REG", 3, reg="MFRL"),
                                   _cmd("ACCESS_REG", 4, fault="status 0x4"),  # injected: not a problem
                                   {**_cmd("QUERY_PAGES"), "delivery": 1, "delivery_name": "LEN_ERR"},
                                   {"kind": "reject", "function": "fn0", "detail": "EQ 0x7 full"},
                                   {"kind": "event", "detail": "port change DOWN"}, {"kind": "info"}])
    assert len(found) == 4
    assert found[0].startswith("unknown opcode: [fn0] slot 0 FOO(0x805)")
    assert found[1].startswith("command failed:") and "reg=MFRL -> BAD_PARAM synd 0x1234" in found[1]
    assert found[2].startswith("command delivery error:")
    assert found[3] == 'the device refused guest input: [fn0] reject: EQ 0x7 full {}'


def test_repeated_problems_are_counted_once() -> None:
    found = health.trace_problems([_cmd("ACCESS_REG", 3, slot=i, latency_us=float(i)) for i in range(3)])
    assert len(found) == 1 and found[0].endswith("(x3)")
    many = health.trace_problems([_cmd(f"OP{i}", 3) for i in range(30)])
    assert len(many) == health.MAX_PROBLEMS + 1 and many[-1] == "... and 10 more distinct problems"


def test_status_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    failed = _cmd("ACCESS_REG", 3, reg="MFRL")
    assert health.trace_problems([failed])
    monkeypatch.setattr(health, "TRACE_STATUS_ALLOWED", [("ACCESS_REG", "BAD_PARAM", "MFRL")])
    assert health.trace_problems([failed]) == []
    assert health.trace_problems([_cmd("ACCESS_REG", 3, reg="PTYS")])  # only that register


def test_uar_writes_after_a_fast_teardown_are_benign_and_nowhere_else() -> None:
    # the EQ re-arms of the teardown's own interrupt, traced after or (racing the trace line) before it
    assert health.trace_problems([_cmd("QUERY_Q_COUNTER"), FAST, UAR_REJECT, UAR_REJECT, UAR_REJECT]) == []
    assert health.trace_problems([_cmd("QUERY_Q_COUNTER"), UAR_REJECT, FAST]) == []
    # without a fast teardown, or before the function's last other command, or in the next life: problems
    assert health.trace_problems([_cmd("QUERY_Q_COUNTER"), UAR_REJECT])
    assert health.trace_problems([_cmd("TEARDOWN_HCA", detail="graceful"), UAR_REJECT])
    assert health.trace_problems([UAR_REJECT, _cmd("QUERY_Q_COUNTER"), FAST])
    assert health.trace_problems([FAST, {"kind": "info", "detail": "function reset"}, UAR_REJECT])
    assert health.trace_problems([FAST, _cmd("ENABLE_HCA"), UAR_REJECT])
    other = {**UAR_REJECT, "detail": "doorbell for slot 3 before the command queue address was set"}
    assert health.trace_problems([FAST, other])


def test_a_paths_expected_trace_records_are_not_problems() -> None:
    doorbell = {"kind": "reject", "function": "fn1", "detail": "command doorbell 0x1 while nic_interface is 1"}
    records = [doorbell, _cmd("ACCESS_REG", 3, reg="PTYS")]
    assert len(health.trace_problems(records)) == 2
    assert len(health.trace_problems(records, [r"command doorbell 0x\w+ while nic_interface is 1"])) == 1
    assert health.trace_problems(records, ["nic_interface", r"reg=PTYS -> BAD_PARAM"]) == []


# -- kernel log ---------------------------------------------------------------------------------------
DMESG = """\
[    2.9] mlx5_core 0000:01:00.0: mlx5_cmd_out_err:808:(pid 1): QUERY_X(0x1) failed, status bad parameter(0x3)
[    3.5] MLX5LAB-PATH-1
[    3.6] mlx5_core 0000:01:00.0: mlx5_pci_vsc_init:66:(pid 113): Failed to get valid vendor specific ID
[    3.7] mlx5_core 0000:01:00.0: firmware version: 16.35.2000
[    3.8] mlx5_core 0000:01:00.0: mlx5_init_clock:978:(pid 113): invalid device_frequency_khz, aborting HW clock init
[    3.9] mlx5_core 0000:01:00.0: mlx5e_tc_post_act_init:40:(pid 113): firmware level support is missing
[    4.0] mlx5_core 0000:01:00.1: Shutdown was called
[    4.1] bond0: (slave eth1): Releasing backup interface
"""


def test_kernel_log_after_the_marker() -> None:
    assert health.kernel_log_problems(DMESG, "MLX5LAB-PATH-1") == []
    bad = "[    4.2] mlx5_core 0000:01:00.1: wait_func:1125:(pid 9): ENABLE_HCA(0x104) timeout. Will cause a leak\n"
    assert health.kernel_log_problems(DMESG + bad, "MLX5LAB-PATH-1") == [f"dmesg: {bad.strip()}"]
    assert len(health.kernel_log_problems(DMESG, None)) == 1  # no marker: the whole log, the early error too
    assert health.kernel_log_problems(DMESG, "MLX5LAB-PATH-10") == [
        "dmesg: marker MLX5LAB-PATH-10 not found (the log wrapped, or the marker was never written)"]
    # a later marker wins; a marker's prefix is not the marker
    assert health.after_marker("[1] MLX5LAB-PATH-1\nA\n[2] MLX5LAB-PATH-1\nB", "MLX5LAB-PATH-1") == "B"
    assert health.after_marker("[1] MLX5LAB-PATH-12\nA", "MLX5LAB-PATH-1") is None


def test_allow_list_entries_say_where_they_come_from() -> None:
    """Each DMESG_ALLOWED entry has a comment above it that starts with the driver's "file.c: function"."""
    source = Path(health.__file__).read_text()
    block = source.split("DMESG_ALLOWED = [")[1].split("]\nMLX5_LINE")[0].strip().splitlines()
    firsts = [line.strip() for i, line in enumerate(block)
              if line.strip().startswith("#") and (i == 0 or not block[i - 1].strip().startswith("#"))]
    assert len(firsts) == len(health.DMESG_ALLOWED) == sum(line.strip().startswith('r"') for line in block)
    assert all(re.match(r"# [\w/]+\.c: \w+", c) for c in firsts), firsts
    for name in GUEST_PATHS:  # guest paths get no allowance of their own
        assert get_path(name).expected_dmesg == ()


def test_shutdown_segment_and_shutdown_problems() -> None:
    console = ("Requesting system reboot\n[ 5.8] mlx5_core 0000:01:00.1: Shutdown was called\n"
               "[ 5.9] mlx5_core 0000:01:00.0: Shutdown was called\n[ 5.9] reboot: Restarting system\n"
               "[ 0.0] Linux version 6.1.0-57-amd64\n[ 3.0] mlx5_core 0000:01:00.0: firmware version: 16.35.2000\n")
    assert "firmware version" not in health.shutdown_segment(console)
    assert health.shutdown_segment("no new boot") == "no new boot"
    bdfs = ["0000:01:00.0", "0000:01:00.1"]
    assert shutdown_problems(console, bdfs) == []
    assert shutdown_problems(console.replace("0000:01:00.1: Shutdown", "0000:01:00.1: Shut"), bdfs) == [
        'no "mlx5_core 0000:01:00.1: Shutdown was called" on the console']
    oops = (OOPS / "page-fault-health.oops.txt").read_text()
    problems = shutdown_problems(console.split("[ 0.0] Linux")[0] + oops, bdfs)
    assert problems == [f"crash report during shutdown: {(OOPS / 'page-fault-health.title').read_text().strip()}"]


# -- ports --------------------------------------------------------------------------------------------
def test_port_state_problems() -> None:
    speeds = [100000, 25000]
    up = [Port("eth1", "0000:01:00.0", "up", "100000"), Port("eth2", "0000:01:00.1", "up", "25000")]
    assert up[1].function == 1
    assert port_state_problems(up, [0, 1], speeds) == []
    assert port_state_problems(up[1:], [0, 1], speeds) == ["function 0 has no netdev"]
    assert port_state_problems([Port("eth1", "0000:01:00.0", "down", "-"), up[1]], [0, 1], speeds) == [
        "eth1 (function 0) is down, not up"]
    assert port_state_problems([Port("eth1", "0000:01:00.0", "up", "40000")], [0], speeds) == [
        "eth1 (function 0) speed reads 40000, configured 100000"]
    assert port_state_problems(up, [1], speeds, absent=[0]) == [
        "function 0 should have no netdev but has eth1 (0000:01:00.0) up speed 100000"]
    assert port_state_problems([*up, Port("eth3", "0000:01:00.0", "up", "100000")], [0, 1], speeds)[0].startswith(
        "function 0 has 2 netdevs")


# -- guest command text -------------------------------------------------------------------------------
def test_stack_script() -> None:
    up = stack_script("bond", "up", ["eth1", "eth2"])
    assert up.startswith("modprobe bonding max_bonds=0 && ")
    assert "ip link add bond0 type bond mode active-backup miimon 100" in up
    assert up.index("ip link set eth1 down") < up.index("ip link set eth1 master bond0") < up.index(
        "ip link set eth2 master bond0") < up.index("ip link set bond0 up")
    assert "ip link del bond0" in up and "ip link del" not in stack_script("bond", "up", ["eth1"], fresh=False)
    assert stack_script("bond", "down", ["eth1"]) == "ip link del bond0"
    assert stack_script("vlan", "up", ["eth1"], vid=7) == (
        "modprobe 8021q && ip link add link eth1 name eth1.7 type vlan id 7 && ip link set eth1.7 up")
    assert stack_script("vlan", "down", ["eth1", "eth2"]) == "ip link del eth1.100 && ip link del eth2.100"
    with pytest.raises(ValueError):
        stack_script("bridge", "up", [])


ETHTOOL_L = """Channel parameters for eth1:
Pre-set maximums:
RX:\t\tn/a
TX:\t\tn/a
Other:\t\tn/a
Combined:\t2
Current hardware settings:
RX:\t\tn/a
TX:\t\tn/a
Other:\t\tn/a
Combined:\t1
"""
ETHTOOL_G = """Ring parameters for eth1:
Pre-set maximums:
RX:\t\t8192
RX Mini:\tn/a
RX Jumbo:\tn/a
TX:\t\t8192
Current hardware settings:
RX:\t\t1024
RX Mini:\tn/a
RX Jumbo:\tn/a
TX:\t\t512
RX Buf Len:\t\tn/a
TX Push:\toff
"""


def test_ethtool_output_parsing() -> None:
    channels = ethtool_sections(ETHTOOL_L)
    assert channels["max"]["Combined"] == "2" and channels["current"]["Combined"] == "1"
    rings = ethtool_sections(ETHTOOL_G)
    assert rings["max"]["RX"] == "8192" and rings["current"]["TX"] == "512" and rings["max"]["RX Mini"] == "n/a"
    assert [pow2_up(n) for n in (64, 100, 512, 8192)] == [64, 128, 512, 8192]


# -- command line -------------------------------------------------------------------------------------
def test_mlx5lab_paths_lists_every_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["paths"]) == 0
    out = capsys.readouterr().out
    for name in GUEST_PATHS:
        assert f"\n{name}  [guest; " in f"\n{out}"
    assert "fn=both" in out and "(0..7|both)" in out and "main.c: remove_one" in out
    assert cli_main(["paths", "--json", "reboot"]) == 0
    (reboot,) = json.loads(capsys.readouterr().out)
    assert reboot["name"] == "reboot" and reboot["ends_bound"] and [a["name"] for a in reboot["args"]] == [
        "force", "timeout"]


def test_bench_paths_refuses_a_bad_path(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["bench", "paths", "--path", "unbind-bind:fn=9"])
    assert exc.value.code == 2
    assert "fn='9' is not one of" in capsys.readouterr().err

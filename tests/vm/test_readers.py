"""mlx5lab-read in the guest: every reader against the up ports of the emulated card, in one boot.

Each reader runs two loops for a second and must report successful reads (or, where the card cannot answer,
the error the driver returns), and the firmware command it is documented to reach must show in the card's
trace. The readers' kinds and what they reach are described in guest-images/reader/mlx5lab-read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from mlx5dev.card import CardConfig
from mlx5dev.mlx5.trace import read_trace
from mlx5image.build import GuestImage
from mlx5lab.vm.machine import Machine, MachineConfig

SPEEDS = [100000, 25000]
KINDS = ["speed", "duplex", "carrier", "operstate", "statistics", "procnetdev", "ethtool-ioctl", "ethtool-netlink",
         "ethtool-netlink-dump", "ethtool-stats", "ethtool-module", "devlink-info", "devlink-health", "devlink-port",
         "traffic", "bond-speed", "vlan-speed"]  # the stacked kinds last: each stacks and unstacks once
STACK = {"bond-speed": "bond", "vlan-speed": "vlan"}  # mlx5lab-stack KIND up|down around the reader
Command = tuple[str, str | None, str]  # (op, register or None, status_name) of a traced command

# The command each reader must make the driver send (the card traces it before the guest sees the answer).
# statistics and procnetdev are left out: mlx5e_get_stats64 only queues update_stats_work, whose
# QUERY_VPORT_COUNTER / PPCNT / QUERY_Q_COUNTER a kworker sends, and also sends with no reader running.
# carrier, operstate, devlink-health and bond-speed reach no mlx5 function (see the script's table);
# devlink-port reaches mlx5_devlink_port_function_hw_addr_get, which answers without a command.
REACHES: dict[str, Command] = {
    "speed": ("ACCESS_REG", "PTYS", "OK"),  # speed_show -> mlx5e_get_link_ksettings
    "duplex": ("ACCESS_REG", "PTYS", "OK"),  # duplex_show -> mlx5e_get_link_ksettings
    # ETHTOOL_GDRVINFO -> mlx5e_get_sset_count -> per_prio NUM_STATS -> mlx5_query_port_pause
    "ethtool-ioctl": ("ACCESS_REG", "PFCC", "OK"),
    "ethtool-netlink": ("ACCESS_REG", "PTYS", "OK"),  # linkmodes_prepare_data -> mlx5e_get_link_ksettings
    "ethtool-netlink-dump": ("ACCESS_REG", "PTYS", "OK"),  # ethnl_default_dumpit, per device
    "ethtool-stats": ("ACCESS_REG", "PPCNT", "OK"),  # ETHTOOL_GSTATS -> mlx5e_stats_update
    # port.c: mlx5_query_module_eeprom_by_page -> mlx5_query_module_num (PMLP) -> mlx5_query_mcia (MCIA)
    "ethtool-module": ("ACCESS_REG", "MCIA", "OK"),
    "vlan-speed": ("ACCESS_REG", "PTYS", "OK"),  # vlan_ethtool_get_link_ksettings -> the real device
}
# Readers the emulated card cannot answer, with the error they must count instead (none: the card answers
# every reader, `ethtool -m` included, whose module EEPROM is a QSFP28 cable's: registers/module.py).
CANNOT_ANSWER: dict[str, str] = {}


@pytest.fixture(scope="module")
def reader_machine(image: GuestImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    run = tmp_path_factory.mktemp("readers") / "run"
    with Machine(MachineConfig(image=image, card=CardConfig.from_speeds(SPEEDS), workdir=run)) as m:
        m.wait_ssh(timeout=120)
        yield m


@pytest.fixture(scope="module")
def ports(reader_machine: Machine) -> list[str]:
    """The mlx5 interfaces, ordered by PCI function (as tests/vm/test_card.py finds them)."""
    res = reader_machine.run("for d in /sys/class/net/*; do "
                             "[ \"$(basename $(readlink $d/device/driver) 2>/dev/null)\" = mlx5_core ] && "
                             "echo $(basename $(readlink $d/device)) ${d##*/}; done; true")
    found = [line.split()[1] for line in sorted(res.stdout.splitlines())]
    assert len(found) == len(SPEEDS), res
    return found


def trace_lengths(m: Machine) -> list[int]:
    assert m.card is not None
    return [len(read_trace(m.card.trace_file(i))) for i in range(len(SPEEDS))]


def commands_since(m: Machine, lengths: list[int]) -> set[Command]:
    assert m.card is not None
    seen: set[Command] = set()
    for i, start in enumerate(lengths):
        for r in read_trace(m.card.trace_file(i))[start:]:
            if r.get("kind") == "cmd":
                seen.add((r.get("op", ""), r.get("reg"), r.get("status_name", "")))
    return seen


def read(m: Machine, args: str) -> dict[str, Any]:
    res = m.run(f"mlx5lab-read {args}", timeout=60)
    assert res.status == 0, res
    summary: dict[str, Any] = json.loads(res.stdout)
    return summary


def expected_ifaces(kind: str, ports: list[str]) -> list[str]:
    if kind == "bond-speed":
        return ["bond0"]
    if kind == "vlan-speed":
        return [f"{p}.100" for p in ports]
    return ports


@pytest.mark.parametrize("kind", KINDS)
def test_reader_reads_an_up_port(reader_machine: Machine, ports: list[str], kind: str) -> None:
    m = reader_machine
    if kind in STACK:
        made = m.run(f"mlx5lab-stack {STACK[kind]} up", timeout=60)
        assert made.status == 0, made
    try:
        before = trace_lengths(m)
        summary = read(m, f"{kind} -t 2 -d 1")
        seen = commands_since(m, before)
    finally:
        if kind in STACK:
            gone = m.run(f"mlx5lab-stack {STACK[kind]} down", timeout=60)
            assert gone.status == 0, gone
    print(json.dumps(summary))
    assert summary["reader"] == kind and summary["threads"] == 2
    assert summary["ifaces"] == expected_ifaces(kind, ports)
    assert summary["duration_s"] >= 1.0
    if kind in CANNOT_ANSWER:
        assert summary["ok"] == 0 and summary["errors"] > 0, summary
        assert CANNOT_ANSWER[kind] in summary["first_error"], summary
    else:
        assert summary["ok"] > 0 and summary["errors"] == 0, summary
        assert summary["first_error"] == ""
    if kind in REACHES:
        assert REACHES[kind] in seen, sorted(seen, key=str)


def test_traffic_reader_puts_frames_on_the_cable_both_ways(reader_machine: Machine) -> None:
    """``traffic``: each port's datagrams reach its partner (the card's receive counters), and the reader takes
    its addresses off the ports again."""
    m = reader_machine
    assert m.card is not None
    before = [sum(f["traffic"]["rx_packets"].values()) for f in m.card.control.status()]
    summary = read(m, "traffic -t 2 -d 1")
    assert summary["ok"] > 0 and summary["errors"] == 0, summary
    after = [sum(f["traffic"]["rx_packets"].values()) for f in m.card.control.status()]
    assert all(a - b >= summary["ok"] // 4 for a, b in zip(after, before, strict=True)), (before, after, summary)
    assert "10.66." not in m.run("ip -4 addr").stdout


def test_usage_errors_exit_2_and_missing_targets_exit_3(reader_machine: Machine) -> None:
    m = reader_machine
    unknown = m.run("mlx5lab-read nope")
    assert unknown.status == 2 and "unknown KIND 'nope'" in unknown.stderr
    listed = re.search(r"^KIND: (.*)$", unknown.stderr, re.MULTILINE)
    assert listed is not None and sorted(listed.group(1).split()) == sorted(KINDS)  # the script and this test agree
    for args in ("", "speed -t 0", "speed -d x", "speed -d 1 -s /tmp/stop", "speed -q", "speed extra"):
        assert m.run(f"mlx5lab-read {args}").status == 2, args
    assert m.run("mlx5lab-stack bond sideways").status == 2
    # no bond and no VLAN exists outside test_reader_reads_an_up_port's stacked kinds
    for kind in ("bond-speed", "vlan-speed"):
        res = m.run(f"mlx5lab-read {kind} -d 1")
        assert res.status == 3 and "no interface to read" in res.stderr, res
    assert m.run("mlx5lab-read devlink-info -i nosuch0 -d 1").status == 3


def test_a_gone_interface_counts_as_errors(reader_machine: Machine, ports: list[str]) -> None:
    summary = read(reader_machine, f"speed -t 1 -d 0.5 -i {ports[0]},nosuch0")
    assert summary["ok"] > 0 and summary["errors"] == summary["ok"], summary  # one of each per iteration
    assert summary["first_error"] == "nosuch0 speed: No such file or directory"


def test_stop_file_and_sigterm_end_the_readers(reader_machine: Machine) -> None:
    # the stop file appears 2 s in; the reader must then end within the iteration in flight
    # (the reader's own duration starts after its interface discovery, so it is not compared with the 2 s:
    # that it was still running when the file appeared, and ended soon after, is what shows the file ended it)
    res = reader_machine.run("rm -f /tmp/stop; mlx5lab-read speed -t 2 -s /tmp/stop >/tmp/stop.json & pid=$!; "
                             "sleep 2; kill -0 $pid && running=1 || running=0; : >/tmp/stop; t0=$EPOCHREALTIME; "
                             "wait $pid; echo $? $running $t0 $EPOCHREALTIME; cat /tmp/stop.json", timeout=60)
    status, running, t0, t1 = res.stdout.splitlines()[0].split()
    summary = json.loads(res.stdout.splitlines()[1])
    assert status == "0" and summary["ok"] > 0, res
    assert running == "1", res  # not ended before the file appeared
    assert float(t1) - float(t0) < 2.0, res  # ended by the file ...
    assert summary["duration_s"] < 5.0, summary  # ... not by the default 5 s
    res = reader_machine.run("mlx5lab-read ethtool-netlink -t 2 -s /tmp/never >/tmp/term.json & pid=$!; "
                             "sleep 2; kill -TERM $pid; wait $pid; echo $?; cat /tmp/term.json", timeout=60)
    status, line = res.stdout.splitlines()
    summary = json.loads(line)
    assert status == "0" and summary["ok"] > 0 and summary["duration_s"] < 5.0, res


def test_traces_hold_no_unknown_opcode(reader_machine: Machine) -> None:
    assert reader_machine.card is not None
    for i in range(len(SPEEDS)):
        records = read_trace(reader_machine.card.trace_file(i))
        unknown = [r for r in records if r.get("status_name") == "BAD_OP"]
        assert unknown == [], f"fn{i}: the card answered BAD_OP to {sorted({r.get('op') for r in unknown}, key=str)}"

"""The real Debian mlx5_core on the emulated two-function card: probe, link, speed, control, teardown."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlx5dev.card import CardConfig
from mlx5dev.mlx5.trace import read_trace
from mlx5image.build import GuestImage
from mlx5lab.paths.health import DMESG_ALLOWED, DMESG_BAD, MLX5_LINE
from mlx5lab.vm.machine import Machine, MachineConfig

SPEEDS = [100000, 25000]


@pytest.fixture(scope="module")
def card_machine(image: GuestImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    run = tmp_path_factory.mktemp("card") / "run"
    with Machine(MachineConfig(image=image, card=CardConfig.from_speeds(SPEEDS), workdir=run)) as m:
        m.wait_ssh(timeout=120)
        yield m


def mlx5_ports(m: Machine) -> dict[str, str]:
    """Interface name -> PCI address, for the interfaces mlx5_core drives."""
    res = m.run("for d in /sys/class/net/*; do "
                "[ \"$(basename $(readlink $d/device/driver) 2>/dev/null)\" = mlx5_core ] && "
                "echo ${d##*/} $(basename $(readlink $d/device)); done; true")
    return dict(line.split() for line in res.stdout.splitlines())


def ports_by_function(m: Machine) -> list[str]:
    """mlx5 interface names ordered by PCI function (.0, .1)."""
    return [name for name, _ in sorted(mlx5_ports(m).items(), key=lambda kv: kv[1])]


def read_attr(m: Machine, ifname: str, attr: str) -> str:
    return m.run(f"cat /sys/class/net/{ifname}/{attr}").stdout.strip()


def wait_attr(m: Machine, ifname: str, attr: str, want: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        got = read_attr(m, ifname, attr)
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_two_ports_report_their_configured_speed(card_machine: Machine) -> None:
    ports = ports_by_function(card_machine)
    assert len(ports) == 2
    for ifname, speed in zip(ports, SPEEDS, strict=True):
        assert read_attr(card_machine, ifname, "speed") == str(speed)
        assert read_attr(card_machine, ifname, "duplex") == "full"
        assert read_attr(card_machine, ifname, "carrier") == "1"
        assert read_attr(card_machine, ifname, "operstate") == "up"


def test_ethtool_lists_link_modes(card_machine: Machine) -> None:
    ports = ports_by_function(card_machine)
    out = card_machine.run(f"ethtool {ports[1]}").stdout
    supported = out.split("Supported link modes:")[1].split("Supported pause")[0]
    advertised = out.split("Advertised link modes:")[1].split("Advertised pause")[0]
    assert "25000baseCR/Full" in supported and "100000baseCR4/Full" in supported
    assert "25000baseCR/Full" in advertised
    assert "Speed: 25000Mb/s" in out
    assert "Link detected: yes" in out


def test_control_channel_speed_and_link_reach_the_guest(card_machine: Machine) -> None:
    assert card_machine.card is not None
    control = card_machine.card.control
    ports = ports_by_function(card_machine)
    control.set_speed(0, 40000)
    assert wait_attr(card_machine, ports[0], "speed", "40000") == "40000"
    control.set_link(1, False)
    assert wait_attr(card_machine, ports[1], "carrier", "0") == "0"
    assert read_attr(card_machine, ports[1], "speed") == "-1"  # no carrier: speed unknown
    control.set_link(1, True)
    assert wait_attr(card_machine, ports[1], "carrier", "1") == "1"
    assert read_attr(card_machine, ports[1], "speed") == "25000"
    control.set_speed(0, SPEEDS[0])
    assert wait_attr(card_machine, ports[0], "speed", str(SPEEDS[0])) == str(SPEEDS[0])
    status = control.status()
    assert [s["speed_mbps"] for s in status] == SPEEDS
    assert all(s["mode"] == "events" for s in status)


def test_fault_injection_fails_and_delays_ptys(card_machine: Machine) -> None:
    assert card_machine.card is not None
    control = card_machine.card.control
    port = ports_by_function(card_machine)[0]
    control.add_fault(function=0, opcode="ACCESS_REG", register="PTYS", status=0x4, syndrome=0x1234, count=1)
    # head reads with read(2); busybox cat would retry a failed sendfile with read and hide the error
    failed = card_machine.run(f"head -c 64 /sys/class/net/{port}/speed")
    assert failed.status != 0, failed  # the driver's PTYS query failed: speed_show returns an error
    assert read_attr(card_machine, port, "speed") == str(SPEEDS[0])  # only the next command failed
    control.add_fault(function=0, opcode="ACCESS_REG", register="PTYS", delay_ms=800, count=1)
    t0 = time.monotonic()
    assert read_attr(card_machine, port, "speed") == str(SPEEDS[0])
    assert time.monotonic() - t0 >= 0.8
    dmesg = card_machine.run("dmesg | tail -5").stdout
    assert "syndrome (0x1234)" in dmesg
    control.clear_faults()


def test_dmesg_has_no_unexpected_mlx5_complaints(card_machine: Machine) -> None:
    lines = card_machine.run("dmesg").stdout.splitlines()
    bad = [line for line in lines
           if MLX5_LINE.search(line) and DMESG_BAD.search(line)
           and not any(re.search(pat, line) for pat in DMESG_ALLOWED)
           and "syndrome (0x1234)" not in line and "query port ptys failed" not in line]  # injected above
    assert bad == []


def test_rmmod_modprobe_twice_brings_both_ports_back(card_machine: Machine) -> None:
    for _ in range(2):
        res = card_machine.run("rmmod mlx5_core && modprobe mlx5_core", timeout=120)
        assert res.status == 0, res.stderr
        ports = ports_by_function(card_machine)
        assert len(ports) == 2
        card_machine.run(" && ".join(f"ip link set {p} up" for p in ports))
        for ifname, speed in zip(ports, SPEEDS, strict=True):
            assert wait_attr(card_machine, ifname, "speed", str(speed)) == str(speed)


def test_reboot_f_comes_back_with_both_ports(card_machine: Machine) -> None:
    assert card_machine.qmp is not None
    resets = card_machine.qmp.events.count("RESET")
    card_machine.start_command("reboot -f")
    card_machine.wait_ssh(timeout=120)
    assert card_machine.qmp.events.count("RESET") > resets
    ports = ports_by_function(card_machine)
    assert len(ports) == 2
    for ifname, speed in zip(ports, SPEEDS, strict=True):
        assert wait_attr(card_machine, ifname, "speed", str(speed)) == str(speed)


def test_traces_hold_no_unknown_opcode(card_machine: Machine) -> None:
    assert card_machine.card is not None
    for i in range(len(SPEEDS)):
        trace: Path = card_machine.card.trace_file(i)
        records = read_trace(trace)
        assert any(r.get("op") == "ENABLE_HCA" for r in records)
        unknown = [r for r in records if r.get("status_name") == "BAD_OP"]
        assert unknown == []

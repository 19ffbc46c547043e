"""Packets on the emulated card: ping and TCP across the cable between its two ports (the second port in a
network namespace, ``mlx5lab-net``), ``ethtool -t``, the counters ``ethtool -S`` shows, and teardown while a
transfer runs (a channel change, an unbind and bind of both functions, ``reboot -f``) with the stock driver."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlx5dev.card import CardConfig
from mlx5image.build import GuestImage
from mlx5lab.paths import health
from mlx5lab.paths.ports import expected_speeds, wait_ports
from mlx5lab.paths.runner import run_path
from mlx5lab.vm.machine import Machine, MachineConfig

MIB = 1 << 20


@pytest.fixture(scope="module")
def net_machine(image: GuestImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    run = tmp_path_factory.mktemp("traffic") / "run"
    with Machine(MachineConfig(image=image, card=CardConfig(), workdir=run)) as m:
        m.wait_ssh(timeout=120)
        yield m


def net(m: Machine, args: str, timeout: float = 120) -> dict:
    """Run ``mlx5lab-net ARGS`` and return its (last) JSON line; the command must succeed."""
    res = m.run(f"mlx5lab-net {args}", timeout=timeout)
    assert res.status == 0, f"mlx5lab-net {args}: {res.status}\n{res.stdout}\n{res.stderr}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def stats(m: Machine) -> dict[str, dict[str, int]]:
    res = m.run("mlx5lab-net stats")
    assert res.status == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    return {r.pop("iface"): r for r in rows}


def quiet_stats(m: Machine, tries: int = 10) -> dict[str, dict[str, int]]:
    """Counters read while nothing crosses the cable: two readings in a row with the same frame counts.

    One ``mlx5lab-net stats`` reads the ports one after the other, so a frame sent in between (a late ACK,
    a neighbour probe) is counted on the receiving port and not yet on the sending one; a reading equal to
    the one before it has no such frame in it.
    """
    keys = ("tx_packets_phy", "rx_packets_phy", "tx_packets", "rx_packets")
    last = stats(m)
    for _ in range(tries):
        time.sleep(0.5)
        now = stats(m)
        if all(now[i][k] == last[i][k] for i in now for k in keys):
            return now
        last = now
    raise AssertionError(f"frames kept crossing the cable for {tries} readings: {last}")


def delta(after: dict[str, int], before: dict[str, int], key: str) -> int:
    return after[key] - before[key]


def healthy_after(m: Machine, since: health.Mark) -> list[str]:
    """The ports back in one namespace and up, then the health check of the unload-path tests since ``since``."""
    net(m, "down")
    assert m.card is not None
    wait_ports(m, range(len(m.card.spec.functions)), what="after the transfer")  # as a path ends
    return health.check_healthy(m, expected_speeds(m), since=since)


def test_ping_crosses_the_cable_both_ways(net_machine: Machine) -> None:
    up = net(net_machine, "up")
    assert up["first"] != up["peer"]
    got = net(net_machine, "ping 5")
    assert got["received"] == {"to_peer": 5, "from_peer": 5}


def test_tcp_transfer_arrives_intact_and_counters_match(net_machine: Machine) -> None:
    m = net_machine
    up = net(m, "up")
    first, peer = up["first"], up["peer"]
    before = quiet_stats(m)
    sent = net(m, f"send {4 * MIB}")
    assert sent["intact"] and sent["received"] == 4 * MIB, sent
    after = quiet_stats(m)  # the last ACKs have arrived
    a0, a1 = after[first], after[peer]
    b0, b1 = before[first], before[peer]
    segments = delta(a0, b0, "tx_packets")
    assert segments >= 4 * MIB // 1500  # the stack sent MTU-sized segments (TSO cuts them on the card)
    assert delta(a0, b0, "tx_tso_packets") > 0  # large sends went out as LSO WQEs
    # the same frames, counted by the driver (from its CQEs) and by the card (its ports), on both sides
    assert delta(a0, b0, "tx_packets_phy") == segments
    assert delta(a1, b1, "rx_packets_phy") == segments  # the cable lost nothing
    assert delta(a1, b1, "rx_packets") == segments  # every frame reached a receive buffer
    assert sum(delta(a1, b1, f"rx_vport_{k}_packets") for k in ("unicast", "multicast", "broadcast")) == segments
    assert delta(a1, b1, "rx_bytes") >= 4 * MIB
    assert delta(a1, b1, "rx_out_of_buffer") == 0
    csum = {k: delta(a1, b1, f"rx_csum_{k}") for k in ("complete", "unnecessary", "none")}
    assert sum(csum.values()) == segments and csum["none"] <= 2, csum  # none: ARP (not IP) only
    for kind in ("unicast", "broadcast"):  # an ARP may go first
        assert delta(a1, b1, f"rx_vport_{kind}_bytes") == delta(a0, b0, f"tx_vport_{kind}_bytes")
    assert delta(a0, b0, "rx_packets") == delta(a1, b1, "tx_packets_phy")  # the ACKs came back


def test_ethtool_selftest_passes(net_machine: Machine) -> None:
    """``en_selftest.c``: link, speed, health and loopback (a UDP frame to the port's own MAC, looped back by
    the card as its vport switch does) must all pass."""
    net(net_machine, "down")
    res = net_machine.run("ethtool -t eth1")
    assert res.status == 0, res.stdout + res.stderr
    assert "The test result is PASS" in res.stdout
    for name in ("Link Test", "Speed Test", "Health Test", "Loopback Test"):
        assert any(line.startswith(name) and line.split()[-1] == "0" for line in res.stdout.splitlines()), res.stdout


def start_send(m: Machine, nbytes: int, out: str = "/tmp/send.json") -> None:
    net(m, "up")
    m.start_command(f"mlx5lab-net send {nbytes} 60 > {out} 2>&1")
    deadline = time.monotonic() + 10
    while "ESTAB" not in m.run("cat /proc/net/tcp | awk '$4 == \"01\" { print \"ESTAB\" }'").stdout:
        assert time.monotonic() < deadline, "the transfer did not start"
        time.sleep(0.2)


def test_channel_change_during_a_transfer(net_machine: Machine) -> None:
    m = net_machine
    since = health.mark(m)
    start_send(m, 16 * MIB)
    first = net(m, "up")["first"]
    for n in (1, 2, 1, 2):  # the sender's queues closed and re-created while its TSO frames are in flight
        res = m.run(f"ethtool -L {first} combined {n}")
        assert res.status == 0, res.stderr
    m.run("for i in $(seq 1 300); do [ -s /tmp/send.json ] && break; sleep 0.2; done")
    result = json.loads(m.run("cat /tmp/send.json").stdout.strip().splitlines()[-1])
    assert result["intact"], result  # TCP carries on over the new queues
    assert net(m, "ping 3")["received"] == {"to_peer": 3, "from_peer": 3}
    assert healthy_after(m, since) == []


def test_unbind_and_bind_during_a_transfer(net_machine: Machine) -> None:
    """The sender's function unbound mid-transfer (its SQs destroyed with TSO frames in flight), then the
    receiver's (inside its namespace), then both bound again: healthy, and the new netdevs carry traffic."""
    m = net_machine
    since = health.mark(m)
    start_send(m, 16 * MIB)
    up = net(m, "up")
    bdf0 = m.run(f"basename $(readlink /sys/class/net/{up['first']}/device)").stdout.strip()
    bdf1 = m.run(f"ip netns exec mlx5lab-peer sh -c 'basename $(readlink /sys/class/net/{up['peer']}/device)'"
                 ).stdout.strip()
    assert bdf0 and bdf1 and bdf0 != bdf1
    drv = "/sys/bus/pci/drivers/mlx5_core"
    for action, bdf in (("unbind", bdf0), ("unbind", bdf1), ("bind", bdf0), ("bind", bdf1)):
        res = m.run(f"echo {bdf} > {drv}/{action}", timeout=120)
        assert res.status == 0, f"{action} {bdf}: {res.stderr}"
    m.run("for i in $(seq 1 300); do [ -s /tmp/send.json ] && break; sleep 0.2; done")
    assert healthy_after(m, since) == []
    net(m, "up")  # the re-created netdevs carry traffic again
    assert net(m, "ping 3")["received"] == {"to_peer": 3, "from_peer": 3}
    assert net(m, f"send {MIB}")["intact"]
    net(m, "down")


def test_reboot_during_a_transfer(image: GuestImage, tmp_path: Path) -> None:
    with Machine(MachineConfig(image=image, card=CardConfig(), workdir=tmp_path / "run")) as m:
        m.wait_ssh(timeout=120)
        start_send(m, 16 * MIB)
        res = run_path(m, "reboot", force=True)  # reboot -f; the guest boots again with the card
        assert res.healthy, res.explain()
        assert m.card is not None and m.card.alive()
        assert net(m, "up") and net(m, "ping 3")["received"] == {"to_peer": 3, "from_peer": 3}


def test_the_host_reaches_the_guest_through_a_tap_backend(image: GuestImage, tmp_path: Path) -> None:
    """``--card tap=NAME``: the second port's cable ends in a host TAP interface (moved here into a network
    namespace of the test's own), and ping works both ways between the host and the guest (the host side
    with busybox-static's ping, which the guest image is built from)."""
    tap, ns = f"mlx5t{os.getpid() % 100000}", f"mlx5lab-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        with Machine(MachineConfig(image=image, card=CardConfig(tap=tap), workdir=tmp_path / "run")) as m:
            m.wait_ssh(timeout=120)
            for cmd in (["ip", "link", "set", tap, "netns", ns], ["ip", "-n", ns, "addr", "add", "10.57.0.1/24",
                        "dev", tap], ["ip", "-n", ns, "link", "set", tap, "up"]):
                subprocess.run(cmd, check=True)
            port = m.run("for d in /sys/class/net/*; do "
                         "[ \"$(basename $(readlink $d/device/driver) 2>/dev/null)\" = mlx5_core ] && "
                         "echo $(basename $(readlink $d/device)) ${d##*/}; done | sort | tail -1 | cut -d' ' -f2"
                         ).stdout.strip()
            assert port, "no second mlx5 port"
            assert m.run(f"ip addr add 10.57.0.2/24 dev {port}").status == 0
            host = subprocess.run(["ip", "netns", "exec", ns, "busybox", "ping", "-c", "3", "-W", "2", "10.57.0.2"],
                                  capture_output=True, text=True)
            assert host.returncode == 0, host.stdout + host.stderr
            guest = m.run("ping -c 3 -W 2 10.57.0.1")
            assert guest.status == 0 and "3 packets received" in guest.stdout, guest.stdout
            assert m.card is not None
            status = m.card.control.status()
            assert status[-1]["tap"]["received"] >= 3 and status[-1]["tap"]["sent"] >= 3
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)

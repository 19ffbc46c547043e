"""Benchmarks that print their figures (speed targets are measured here, never asserted by tests)."""

from __future__ import annotations

import dataclasses
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlx5dev.card import CardConfig
from mlx5image.build import GuestImage

from .campaign.outcome import IterationResult, Outcome
from .campaign.scenario import IterationPlan
from .rundir import RunDir
from .vm.console import PORTS_MARKER
from .vm.machine import Machine, MachineConfig


@dataclass
class Spread:
    values: list[float]

    def line(self, label: str) -> str:
        v = sorted(self.values)
        med = statistics.median(v)
        q = statistics.quantiles(v, n=4) if len(v) >= 2 else [v[0], v[0], v[0]]
        return (f"{label:<34} median {med:6.2f} s   min {v[0]:6.2f}   max {v[-1]:6.2f}   "
                f"IQR {q[2] - q[0]:5.2f}   (n={len(v)})")


def bench_boot(image: GuestImage, runs: int) -> tuple[Spread, Spread]:
    """Boot ``runs`` times; per boot, seconds from QEMU start to init reached and to SSH ready."""
    init_times: list[float] = []
    ssh_times: list[float] = []
    for i in range(runs):
        with Machine(MachineConfig(image=image)) as m:
            ssh = m.wait_ssh(timeout=120)
            init = m.wait_init(timeout=1)
        init_times.append(init)
        ssh_times.append(ssh)
        print(f"  boot {i + 1}/{runs}: init reached {init:.2f} s, SSH ready {ssh:.2f} s ({m.accel})",
              file=sys.stderr, flush=True)
    return Spread(init_times), Spread(ssh_times)


@dataclass
class DeviceFigures:
    ports_up: Spread  # QEMU start -> every mlx5 port up (guest marker), per boot
    latencies_us: list[float]  # doorbell -> completion, every command of every boot
    busy_rates: list[float]  # commands per second of device busy time, per function and boot

    def lines(self) -> list[str]:
        lat = sorted(self.latencies_us)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        return [
            self.ports_up.line("QEMU start -> both ports up"),
            f"{'command doorbell -> completion':<34} median {statistics.median(lat):8.1f} us   "
            f"p99 {p99:8.1f} us   max {lat[-1]:8.1f} us   (n={len(lat)})",
            f"{'commands per second (device busy)':<34} median {statistics.median(self.busy_rates):8.0f}   "
            f"min {min(self.busy_rates):8.0f}   max {max(self.busy_rates):8.0f}",
        ]


def _busy_rate(records: list[dict]) -> float:
    """Commands per second of time with at least one command outstanding (idle gaps excluded)."""
    spans = sorted((r["t_doorbell_ns"], r["t_done_ns"]) for r in records)
    busy, cur_start, cur_end = 0, spans[0][0], spans[0][1]
    for start, end in spans[1:]:
        if start > cur_end:
            busy += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    busy += cur_end - cur_start
    return len(records) / (busy / 1e9) if busy else 0.0


def bench_device(image: GuestImage, runs: int, speeds: list[int]) -> DeviceFigures:
    """Boot the card ``runs`` times; per boot, time to ports up and the device's command figures."""
    from mlx5dev.card import CardConfig
    from mlx5dev.mlx5.trace import read_trace

    ports: list[float] = []
    latencies: list[float] = []
    rates: list[float] = []
    for i in range(runs):
        with Machine(MachineConfig(image=image, card=CardConfig.from_speeds(speeds))) as m:
            m.wait_ssh(timeout=120)
            up = m.wait_console(PORTS_MARKER, 1, timeout=1)
            line = next(x for x in m.console_text().splitlines() if x.startswith(PORTS_MARKER))
            if len(line.split()) - 2 != len(speeds):
                raise RuntimeError(f"boot {i + 1}: not every port came up: {line!r}")
            m.run("for i in $(seq 50); do cat /sys/class/net/eth1/speed; done >/dev/null")
            assert m.card is not None
            for fn in range(len(speeds)):
                cmds = [r for r in read_trace(m.card.trace_file(fn))
                        if r.get("kind") == "cmd" and "t_done_ns" in r]
                latencies += [r["latency_us"] for r in cmds]
                rates.append(_busy_rate(cmds))
        ports.append(up)
        print(f"  boot {i + 1}/{runs}: ports up {up:.2f} s", file=sys.stderr, flush=True)
    return DeviceFigures(Spread(ports), latencies, rates)


@dataclass
class TrafficFigures:
    """One boot's traffic across the cable and the command path's latency with and without it."""

    idle_us: list[float]  # doorbell -> completion of the commands of speed reads, no traffic
    busy_us: list[float]  # the same reads while a TCP transfer runs
    mbit_s: list[float]  # per transfer, payload Mb/s (mlx5lab-net send)
    frames_s: list[float]  # per transfer, frames per second through the card (both directions, its counters)
    nbytes: int

    def lines(self) -> list[str]:
        def lat(label: str, v: list[float]) -> str:
            v = sorted(v)
            p99 = v[min(len(v) - 1, int(len(v) * 0.99))]
            return f"{label:<44} median {statistics.median(v):8.1f} us   p99 {p99:8.1f} us   (n={len(v)})"

        ratio = statistics.median(self.busy_us) / statistics.median(self.idle_us)

        return [
            f"{'TCP across the cable, ' + str(self.nbytes >> 20) + ' MiB transfers':<44} median "
            f"{statistics.median(self.mbit_s):8.2f} Mb/s   min {min(self.mbit_s):.2f}   max {max(self.mbit_s):.2f}"
            f"   (n={len(self.mbit_s)})",
            f"{'frames per second through the card':<44} median {statistics.median(self.frames_s):8.0f}"
            f"   min {min(self.frames_s):.0f}   max {max(self.frames_s):.0f}   (data and ACKs, card's counters)",
            lat("command latency, data path idle", self.idle_us),
            lat("command latency, during a transfer", self.busy_us),
            f"{'during / idle (medians)':<44} {ratio:8.2f} x",
        ]


def bench_traffic(image: GuestImage, runs: int, nbytes: int = 8 << 20, reads: int = 200) -> TrafficFigures:
    """One boot: ``reads`` speed reads with the data path idle, then ``runs`` TCP transfers of ``nbytes``
    across the cable, the same reads repeated during one more transfer. Command latencies are the device's
    (trace: doorbell to completion); frame counts are the card's port counters (ethtool -S ``*_packets_phy``)."""
    from .net import net, port_stats
    from .paths.health import read_records, trace_end

    def command_latencies(m: Machine, since: list[int]) -> list[float]:
        assert m.card is not None
        out: list[float] = []
        for fn, offset in enumerate(since):
            out += [r["latency_us"] for r in read_records(m.card.trace_file(fn), offset)
                    if r.get("kind") == "cmd" and "latency_us" in r]
        return out

    def offsets(m: Machine) -> list[int]:
        assert m.card is not None
        return [trace_end(m.card.trace_file(i)) for i in range(len(m.card.spec.functions))]

    speed_reads = f"for i in $(seq {reads}); do cat /sys/class/net/eth1/speed; done >/dev/null"
    with Machine(MachineConfig(image=image, card=CardConfig())) as m:
        m.wait_ssh(timeout=120)
        m.run("sleep 2")  # the ports' own start-up commands are over
        since = offsets(m)
        m.run(speed_reads, timeout=300)
        idle = command_latencies(m, since)
        print(f"  idle: {len(idle)} commands", file=sys.stderr, flush=True)
        up = net(m, "up")
        mbit, frames = [], []
        for i in range(runs):
            before = port_stats(m)
            sent = net(m, f"send {nbytes} 300", timeout=330)
            after = port_stats(m)
            if not sent["intact"]:
                raise RuntimeError(f"transfer {i + 1}: the data did not arrive intact: {sent}")
            moved = sum(after[p]["tx_packets_phy"] - before[p]["tx_packets_phy"] for p in (up["first"], up["peer"]))
            mbit.append(float(sent["mbit_s"]))
            frames.append(moved / float(sent["seconds"]))
            print(f"  transfer {i + 1}/{runs}: {sent['mbit_s']} Mb/s, {frames[-1]:.0f} frames/s", file=sys.stderr,
                  flush=True)
        m.start_command(f"mlx5lab-net send {nbytes} 300 > /tmp/bench-send.json 2>&1")
        m.run("sleep 1")
        since = offsets(m)
        m.run(speed_reads.replace("eth1", up["first"]), timeout=300)
        busy = command_latencies(m, since)
        m.run("for i in $(seq 1 1500); do [ -s /tmp/bench-send.json ] && break; sleep 0.2; done", timeout=330)
        print(f"  during a transfer: {len(busy)} commands", file=sys.stderr, flush=True)
    return TrafficFigures(idle, busy, mbit, frames, nbytes)


PHASES = (  # (label, timing key): where an iteration's time goes (scenarios/guest.py, vm/machine.py)
    ("QEMU and device server start", "phase_start_s"),
    ("guest: kernel to init (uptime)", "guest_init_s"),
    ("guest: mlx5_core loaded (uptime)", "guest_mlx5_loaded_s"),
    ("guest: ports up (uptime)", "guest_ports_up_s"),
    ("guest: SSH ready (uptime)", "guest_ssh_ready_s"),
    ("snapshot: RAM copied, QEMU up", "phase_qemu_start_s"),
    ("snapshot: device state restored", "phase_restore_s"),
    ("snapshot: card hot-plugged", "phase_hotplug_s"),
    ("snapshot: card probed, ports up", "phase_card_up_s"),
    ("host: SSH ready, ports up (QEMU start)", "ssh_ready_s"),
    ("scenario (program to verdict)", "phase_body_s"),
    ("teardown (QEMU, device server)", "phase_teardown_s"),
)


def phase_lines(results: list[IterationResult]) -> list[str]:
    """Median of each phase over ``results`` (those that recorded it)."""
    lines = []
    for label, key in PHASES:
        values = [r.timings[k] for r in results for k in (key, f"phase_{key}") if k in r.timings]
        if values:
            lines.append(f"    {label:<36} median {statistics.median(values):6.2f} s")
    return lines


def bench_race(image: GuestImage, runs: int, folder: Path, jobs: int = 1,
               boot: str = "classic") -> tuple[Spread, dict[str, int]]:
    """A campaign of ``runs`` iterations on ``image``, ``jobs`` at a time, booted as ``boot`` says; per
    iteration, boot-to-verdict seconds."""
    from .campaign.campaign import Campaign
    from .campaign.spec import CampaignSpec

    campaign = Campaign.create(folder, CampaignSpec(kernel=None, variant=image.variant, iterations=runs, seed=1,
                                                    boot=boot))
    scenario = campaign.spec.make_scenario()
    durations: list[float] = []

    def one(plan: IterationPlan, f: RunDir) -> IterationResult:
        r = scenario.run_iteration(image, plan, f)
        durations.append(r.duration_s)
        why = "" if r.outcome is Outcome.CLEAN else f": {(r.title or r.detail)[:300]}"
        print(f"  iteration {plan.iteration}/{runs}: {r.outcome} in {r.duration_s:.2f} s{why}", file=sys.stderr,
              flush=True)
        return r

    campaign.run(one, jobs=jobs)
    print(f"  phases of {runs} iteration(s), {boot} boot, {jobs} at a time (medians, seconds from the "
          "iteration's start unless said):", flush=True)
    for line in phase_lines(campaign.ordered_results()):
        print(line, flush=True)
    return Spread(durations), dict(campaign.counts())


@dataclass
class PathFigures:
    """One path (with its arguments) run ``runs`` times: durations and how often the driver stayed healthy."""

    label: str
    durations: list[float] = field(default_factory=list)
    healthy: int = 0
    problems: list[str] = field(default_factory=list)  # the first unhealthy run's

    def line(self) -> str:
        med = statistics.median(self.durations) if self.durations else float("nan")
        return f"{self.label:<46} median {med:6.2f} s  healthy {self.healthy}/{len(self.durations)}"


def bench_paths(image: GuestImage, runs: int, specs: list[tuple[str, dict[str, Any]]], card: CardConfig,
                progress: Callable[[str], None],
                done: Callable[[PathFigures], None] = lambda fig: None) -> list[PathFigures]:
    """Run each path of ``specs`` ``runs`` times, all in one boot of ``card`` as far as possible: a new boot
    for a path that needs other card settings (its ``card_settings``), after a path that ends the machine,
    and after an unhealthy run (so one failure does not spill into the next runs). ``done`` gets each
    path's figures when its runs are over."""
    from .paths import get_path, run_path

    figures: list[PathFigures] = []
    m: Machine | None = None
    try:
        for name, args in specs:
            path = get_path(name)
            fig = PathFigures(path.label(path.make_args(**args)))
            figures.append(fig)
            wanted = dataclasses.replace(card, **path.card_settings)
            for i in range(runs):
                if m is not None and m.config.card != wanted:
                    m.close()
                    m = None
                if m is None:
                    m = Machine(MachineConfig(image=image, card=wanted))
                    m.start()
                    m.wait_ssh(timeout=120)
                r = run_path(m, name, **args)
                fig.durations.append(r.duration_s)
                fig.healthy += r.healthy
                if not r.healthy and not fig.problems:
                    fig.problems = r.problems
                progress(f"{fig.label} {i + 1}/{runs}: {r.duration_s:.2f} s, "
                         f"{'healthy' if r.healthy else 'UNHEALTHY: ' + '; '.join(r.problems)[:300]}")
                if not r.healthy or path.ends_machine:
                    m.close()
                    m = None
            done(fig)
    finally:
        if m is not None:
            m.close()
    return figures

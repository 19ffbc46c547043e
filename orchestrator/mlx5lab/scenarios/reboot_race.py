"""Reboot against speed readers: the seed case.

One iteration: boot the card (interfaces up), start the reader threads on every mlx5 port's
``speed`` (and optionally ``duplex``) file, wait a delay, then ``reboot -f`` (reboot(2), which runs
``device_shutdown``; SysRq-b would skip it). The outcome is decided from evidence only:

- ``clean``: QMP ``RESET`` from the guest (the kernel got through shutdown to machine_restart);
- ``panic``: QMP ``GUEST_PANICKED`` (pvpanic), the vmcore is dumped;
- ``hang``: neither within the timeout; an NMI is injected (the guest is set to panic on it), and the
  vmcore is dumped either way;
- ``infra``: QEMU or the device server died, SSH never came up, or the card never came up. Never
  counted as a kernel result.
"""

from __future__ import annotations

import logging
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlx5dev.card import CardConfig
from mlx5image.build import GuestImage

from .. import Mlx5LabError
from ..campaign.evidence import VMCORE_NAME, IterationResult, dump_vmcore, kernel_identity
from ..triage.signature import parse_oops
from ..vm.console import PORTS_MARKER, extract_oops, oops_title
from ..vm.machine import Machine, MachineConfig
from ..vm.qmp import QmpEvent

log = logging.getLogger("mlx5lab.race")

# oops=panic: an oops is a panic (pvpanic fires); unknown_nmi_panic: our NMI on a hang panics too.
GUEST_CMDLINE = "oops=panic"
GUEST_SETUP = "echo 1 > /proc/sys/kernel/unknown_nmi_panic"


@dataclass
class RaceParams:
    speeds: list[int] = field(default_factory=lambda: [100000, 25000])
    readers: list[str] = field(default_factory=lambda: ["speed"])
    threads: int = 4
    hang_timeout_s: float = 30.0
    faults: list[dict[str, Any]] = field(default_factory=list)  # control-channel add_fault arguments


def _wait(m: Machine, since: int, names: set[str], timeout: float) -> QmpEvent | str | None:
    """The first QMP event named in ``names`` after index ``since``; a reason string if QEMU or the device
    server died first; None on timeout."""
    assert m.qmp is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ev = m.qmp.events.wait_for(names, timeout=0.2, start=since)
        if ev is not None:
            return ev
        if not m.alive():
            return "QEMU exited"
        if m.card is not None and not m.card.alive():
            return "the device server exited"
    return None


def run_iteration(image: GuestImage, params: RaceParams, iteration: int, delay_s: float,
                  folder: Path) -> IterationResult:
    """Run one iteration in ``folder`` (console, traces, vmcore, result.json stay there).

    Once the outcome is decided from evidence, a later failure (a device status query, a dump) only adds
    to ``detail``: it never turns a kernel result into ``infra``.
    """
    result = IterationResult(iteration=iteration, outcome="infra", delay_s=delay_s,
                             identity=kernel_identity(image))
    t0 = time.monotonic()
    cfg = MachineConfig(image=image, card=CardConfig.from_speeds(params.speeds), workdir=folder,
                        extra_cmdline=GUEST_CMDLINE)
    try:
        with Machine(cfg) as m:
            try:
                _run(m, params, delay_s, folder, result)
            finally:
                if m.card is not None:
                    result.files.update({f"trace_fn{i}": str(m.card.trace_file(i).relative_to(folder))
                                         for i in range(len(params.speeds))})
    except Exception as exc:  # noqa: BLE001 - whatever broke, the iteration ends with a recorded result
        note = f"{type(exc).__name__}: {exc}"
        if result.outcome == "infra" and not result.detail:
            result.detail = note
        else:
            result.detail = f"{result.detail}; after the verdict: {note}".lstrip("; ")
    result.duration_s = round(time.monotonic() - t0, 3)
    result.files["console"] = "console.log"
    result.write(folder)
    return result


def _run(m: Machine, params: RaceParams, delay_s: float, folder: Path, result: IterationResult) -> None:
    try:
        result.timings["ssh_ready_s"] = round(m.wait_ssh(timeout=90), 3)
    except (TimeoutError, ConnectionError, OSError, Mlx5LabError) as exc:
        if m.qmp is not None and m.qmp.events.wait_for({"GUEST_PANICKED"}, timeout=0) is not None:
            result.outcome, result.detail = "panic", "the guest panicked while booting"
            _keep_crash(m, folder, result)
        else:
            result.detail = f"SSH never came up: {exc}"
        return
    ports_line = next((x for x in m.console_text().splitlines() if x.startswith(PORTS_MARKER)), "")
    ports = ports_line.split()[2:]
    if len(ports) != len(params.speeds):
        result.detail = f"the card did not come up: {ports_line or 'no ' + PORTS_MARKER + ' line'}"
        return
    assert m.card is not None and m.qmp is not None
    for fault in params.faults:
        m.card.control.add_fault(**fault)
    m.run(GUEST_SETUP)
    attrs = ",".join(params.readers)
    since = m.event_index()
    race = (f"setsid mlx5-reader -t {params.threads} -a {shlex.quote(attrs)} </dev/null >/tmp/reader.json "
            f"2>&1 & sleep {delay_s:.3f}; reboot -f")
    t_start = time.monotonic()
    m.start_command(race)
    verdict = _wait(m, since, {"GUEST_PANICKED", "RESET", "SHUTDOWN"}, params.hang_timeout_s + delay_s)
    result.timings["verdict_after_start_s"] = round(time.monotonic() - t_start, 3)
    result.outcome, result.detail = decide(verdict, params.hang_timeout_s)
    if result.outcome == "hang":
        m.qmp.execute("inject-nmi")
        if not isinstance(_wait(m, since, {"GUEST_PANICKED"}, 10), QmpEvent):
            m.qmp.execute("stop")
    if result.outcome in ("panic", "hang"):
        _keep_crash(m, folder, result)
    result.device = _device_status(m)


def decide(verdict: QmpEvent | str | None, hang_timeout_s: float) -> tuple[str, str]:
    """Outcome and detail from what ended the wait after ``reboot -f`` (see the module docstring)."""
    if isinstance(verdict, str):
        return "infra", verdict
    if verdict is None:
        return "hang", f"no reset or panic within {hang_timeout_s:.0f}s after the delay; NMI injected"
    if verdict.name == "GUEST_PANICKED":
        return "panic", ""
    if verdict.name == "RESET" and verdict.data.get("guest"):
        return "clean", "the guest reset itself after reboot -f"
    # e.g. SHUTDOWN from a signal to QEMU, or a host-side reset: not the guest's doing
    return "infra", f"QEMU {verdict.name} {verdict.data}: not a guest reboot"


def _keep_crash(m: Machine, folder: Path, result: IterationResult) -> None:
    time.sleep(0.1)  # the last console lines trail the event
    oops = extract_oops(m.console_text()) or ""
    sig = parse_oops(oops) if oops else None
    # An NMI's panic text may never reach the serial console: the title then says what was seen.
    result.title = sig.title if sig else (oops_title(oops) or f"{result.outcome} during reboot -f (no console report)")
    result.signature = sig.signature if sig else ""
    (folder / "oops.txt").write_text(oops)
    result.files["oops"] = "oops.txt"
    result.write(folder)  # the decided outcome is on disk before the (slowest) step, the dump
    try:
        result.timings["vmcore_dump_s"] = round(dump_vmcore(m, folder / VMCORE_NAME), 3)
        result.files["vmcore"] = VMCORE_NAME
    except Exception as exc:  # keep the iteration's other evidence; say why the dump is missing
        result.detail = (result.detail + f"; vmcore dump failed: {exc!r}").lstrip("; ")


def _device_status(m: Machine) -> list[dict[str, Any]]:
    if m.card is None or not m.card.alive():
        return []
    try:
        return [{k: s.get(k) for k in ("function", "state", "mode", "commands_executed", "pending_slots")}
                for s in m.card.control.status()]
    except (Mlx5LabError, OSError, ValueError) as exc:  # the status is a nicety: never lose the verdict
        return [{"error": f"{type(exc).__name__}: {exc}"}]

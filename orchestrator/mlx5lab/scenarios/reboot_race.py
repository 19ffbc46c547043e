"""Reboot against speed readers: the seed case, as one fixed fuzz program.

One iteration: boot the card (interfaces up), then run :func:`race_program` through the fuzzer's engine
(:func:`mlx5lab.fuzz.executor.execute`: the compiled program goes to the guest's executor in one SSH
command, its operations are timed against console markers)::

    read speed threads=4 duration=30 &      one background reader per attribute (speed, duplex)
    sleep 0.742                             the iteration's delay, drawn from the campaign's seed
    path reboot force=true                  reboot -f: reboot(2), which runs device_shutdown

``reboot`` set to ``reboot`` or ``poweroff`` takes the graceful path through init instead (busybox init
stops every process, then the same reboot(2)); the faults of ``faults`` are put on the card before the
program starts. Every iteration folder keeps its program (``program.prog``, which ``mlx5lab fuzz replay``
runs as it is) and the executor's record (``exec.jsonl``). The outcome is decided from evidence only:

- ``clean``: QMP ``RESET`` from the guest (the kernel got through shutdown to machine_restart), or for
  ``poweroff`` QMP ``SHUTDOWN`` from the guest;
- ``panic``: QMP ``GUEST_PANICKED`` (pvpanic), the vmcore is dumped;
- ``hang``: neither within the timeout; an NMI is injected (the guest is set to panic on it), and the
  vmcore is dumped either way;
- ``infra``: QEMU or the device server died, SSH never came up, the card never came up, or the program
  could not start. Never counted as a kernel result.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mlx5dev.card import CardConfig
from mlx5image.build import GuestImage

from ..campaign.evidence import device_status, keep_crash
from ..campaign.outcome import IterationResult, Outcome
from ..campaign.scenario import IterationPlan, register_scenario
from ..fuzz.executor import ExecReport, execute
from ..fuzz.ops import READ_DOMAINS, SLEEP_DOMAIN
from ..fuzz.program import Op, Program, check_program
from ..rundir import RunDir, atomic_write, atomic_write_json
from ..vm.machine import Machine
from ..vm.qmp import QmpEvent
from .guest import run_guest_iteration

log = logging.getLogger("mlx5lab.race")

# oops=panic: an oops is a panic (pvpanic fires); unknown_nmi_panic: our NMI on a hang panics too.
GUEST_CMDLINE = "oops=panic"
GUEST_SETUP = "echo 1 > /proc/sys/kernel/unknown_nmi_panic"
READER_ATTRS = ("speed", "duplex")
REBOOTS = ("reboot -f", "reboot", "poweroff", "poweroff -f")
# The readers run for the longest a program's reader may (fuzz.ops READ_DOMAINS): a reboot ends them first.
READER_S = float(next(d.high for d in READ_DOMAINS if d.key == "duration") or 30.0)
MAX_THREADS = int(next(d.high for d in READ_DOMAINS if d.key == "threads") or 16)
SLEEP_MAX_S = float(SLEEP_DOMAIN.high or 10.0)


@dataclass
class RaceParams:
    speeds: list[int] = field(default_factory=lambda: [100000, 25000])
    readers: list[str] = field(default_factory=lambda: ["speed"])
    threads: int = 4
    hang_timeout_s: float = 30.0
    faults: list[dict[str, Any]] = field(default_factory=list)  # control-channel add_fault arguments
    reboot: str = "reboot -f"  # one of REBOOTS
    card: dict[str, Any] = field(default_factory=dict)  # CardConfig settings (fast_teardown, sync_reset, ...)

    def __post_init__(self) -> None:
        if self.reboot not in REBOOTS:
            raise ValueError(f"reboot is one of {', '.join(REBOOTS)}, not {self.reboot!r}")
        if not 1 <= self.threads <= MAX_THREADS:
            raise ValueError(f"threads is 1..{MAX_THREADS} (a program's reader), not {self.threads}")
        bad = [r for r in self.readers if r not in READER_ATTRS]
        if not self.readers or bad:
            raise ValueError(f"readers are some of {', '.join(READER_ATTRS)}, not {self.readers}")


def race_program(params: RaceParams, delay_s: float) -> Program:
    """The race as a fuzz program: ``params.readers`` in the background, ``delay_s``, then the reboot.

    A delay longer than one ``sleep`` may be (10 s) is several sleeps."""
    ops = [Op("read", attr, (("threads", params.threads), ("duration", READER_S)), background=True)
           for attr in params.readers]
    left = round(delay_s, 3)
    while True:
        step = min(left, SLEEP_MAX_S)
        ops.append(Op("sleep", "", (("seconds", step),)))
        left = round(left - step, 3)
        if left <= 0:
            break
    command, _, flag = params.reboot.partition(" ")
    ops.append(Op("path", command, (("force", True),) if flag == "-f" else ()))
    return check_program(Program(tuple(ops), (f"race: {', '.join(params.readers)} readers against "
                                              f"{params.reboot} after {delay_s:.3f} s",)))


@register_scenario
class RebootRace:
    name: ClassVar[str] = "reboot-race"
    Params: ClassVar[type[RaceParams]] = RaceParams

    def __init__(self, params: RaceParams) -> None:
        self.params = params

    def run_iteration(self, image: GuestImage, plan: IterationPlan, folder: RunDir) -> IterationResult:
        card = CardConfig.from_speeds(self.params.speeds, **self.params.card)
        return run_guest_iteration(image, plan, folder, card,
                                   lambda m, r: self._race(m, folder, plan, r), cmdline=GUEST_CMDLINE)

    def _race(self, m: Machine, run: RunDir, plan: IterationPlan, result: IterationResult) -> None:
        p = self.params
        assert m.card is not None and m.qmp is not None
        for fault in p.faults:
            m.card.control.add_fault(**fault)
        m.run(GUEST_SETUP)
        program = race_program(p, plan.delay_s)
        atomic_write(run.program, program.text())
        result.files["program"] = run.PROGRAM
        since = m.event_index()
        t_start = time.monotonic()
        report = execute(m, program, timeout_s=p.hang_timeout_s + plan.delay_s)
        atomic_write_json(run.exec_records, report.to_json())
        result.files["exec"] = run.EXEC_RECORDS
        verdict = verdict_of(report)
        if report.ended and verdict is None:  # the executor ended (a graceful reboot returns): wait on
            left = p.hang_timeout_s + plan.delay_s - (time.monotonic() - t_start)
            verdict = m.wait_event({"GUEST_PANICKED", "RESET", "SHUTDOWN"}, max(0.0, left), since)
        result.timings["verdict_after_start_s"] = round(time.monotonic() - t_start, 3)
        result.timings["program_s"] = round(report.duration_s, 3)
        result.outcome, result.detail = decide(verdict, p.hang_timeout_s, p.reboot)
        if result.outcome is Outcome.HANG:
            m.qmp.execute("inject-nmi")
            if not isinstance(m.wait_event({"GUEST_PANICKED"}, 10, since), QmpEvent):
                m.qmp.execute("stop")
        if result.outcome.is_finding:
            keep_crash(m, run, result, f"{result.outcome} during {p.reboot} (no console report)")
        result.device = device_status(m)


def verdict_of(report: ExecReport) -> QmpEvent | str | None:
    """What ended the program's run, as :func:`decide` takes it: the reason QEMU, the device server or the
    program failed, the QMP event, or None (no event: the run timed out, or the executor ended first)."""
    if report.infra:
        return report.infra
    return report.event


def decide(verdict: QmpEvent | str | None, hang_timeout_s: float, reboot: str = "reboot -f") -> tuple[Outcome, str]:
    """Outcome and detail from what ended the wait after the reboot (see the module docstring)."""
    if isinstance(verdict, str):
        return Outcome.INFRA, verdict
    if verdict is None:
        return Outcome.HANG, f"no reset or panic within {hang_timeout_s:.0f}s after the delay; NMI injected"
    if verdict.name == "GUEST_PANICKED":
        return Outcome.PANIC, ""
    want = "SHUTDOWN" if reboot.startswith("poweroff") else "RESET"
    if verdict.name == want and verdict.data.get("guest"):
        return Outcome.CLEAN, f"the guest {'powered off' if want == 'SHUTDOWN' else 'reset'} itself after {reboot}"
    # e.g. SHUTDOWN from a signal to QEMU, or a host-side reset: not the guest's doing
    return Outcome.INFRA, f"QEMU {verdict.name} {verdict.data}: not the guest's {reboot}"

"""Reboot against speed readers: the seed case.

One iteration: boot the card (interfaces up), start the reader threads on every mlx5 port's
``speed`` (and optionally ``duplex``) file, wait a delay, then ``reboot -f`` (reboot(2), which runs
``device_shutdown``; SysRq-b would skip it), or, with ``reboot`` set to ``reboot`` or ``poweroff``, the
graceful path through init (busybox init stops every process, then the same reboot(2)). The outcome is
decided from evidence only:

- ``clean``: QMP ``RESET`` from the guest (the kernel got through shutdown to machine_restart), or for
  ``poweroff`` QMP ``SHUTDOWN`` from the guest;
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
from typing import Any, ClassVar

from mlx5dev.card import CardConfig
from mlx5image.build import GuestImage

from ..campaign.evidence import device_status, keep_crash
from ..campaign.outcome import IterationResult, Outcome
from ..campaign.scenario import IterationPlan, register_scenario
from ..rundir import RunDir
from ..vm.machine import Machine
from ..vm.qmp import QmpEvent
from .guest import run_guest_iteration

log = logging.getLogger("mlx5lab.race")

# oops=panic: an oops is a panic (pvpanic fires); unknown_nmi_panic: our NMI on a hang panics too.
GUEST_CMDLINE = "oops=panic"
GUEST_SETUP = "echo 1 > /proc/sys/kernel/unknown_nmi_panic"
READER_ATTRS = ("speed", "duplex")
REBOOTS = ("reboot -f", "reboot", "poweroff", "poweroff -f")


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
        since = m.event_index()
        race = (f"setsid mlx5-reader -t {p.threads} -a {shlex.quote(','.join(p.readers))} </dev/null "
                f">/tmp/reader.json 2>&1 & sleep {plan.delay_s:.3f}; {p.reboot}")
        t_start = time.monotonic()
        m.start_command(race)
        verdict = m.wait_event({"GUEST_PANICKED", "RESET", "SHUTDOWN"}, p.hang_timeout_s + plan.delay_s, since)
        result.timings["verdict_after_start_s"] = round(time.monotonic() - t_start, 3)
        result.outcome, result.detail = decide(verdict, p.hang_timeout_s, p.reboot)
        if result.outcome is Outcome.HANG:
            m.qmp.execute("inject-nmi")
            if not isinstance(m.wait_event({"GUEST_PANICKED"}, 10, since), QmpEvent):
                m.qmp.execute("stop")
        if result.outcome.is_finding:
            keep_crash(m, run, result, f"{result.outcome} during {p.reboot} (no console report)")
        result.device = device_status(m)


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

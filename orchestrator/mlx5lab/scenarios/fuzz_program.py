"""One fuzz program as a campaign scenario: boot, run it, decide the outcome from the evidence.

The guest boots with options that make memory errors and stalls visible on a distribution kernel
(:data:`FUZZ_CMDLINE`, :data:`FUZZ_SETUP`); the outcome:

- ``panic``: QMP GUEST_PANICKED (an oops is a panic: ``oops=panic``), with the vmcore;
- ``hang``: the program did not end within its time and the guest neither panicked nor reset: an NMI is
  injected (``unknown_nmi_panic``) and the vmcore kept; with ``stop_at`` (a reproducer's try of a hang),
  the same as soon as the console holds a crash report with that signature, since the rest of the wait
  could only end in the same verdict;
- ``report``: the kernel printed a crash report without panicking (WARNING, hung task, soft lockup, BUG),
  or a function never came back after the program (driver wedged: no netdev, or its speed unreadable);
- ``clean``: none of that (a program that rebooted or powered off the guest ends clean when the guest did);
- ``infra``: QEMU or the device server died, or the program could not start.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mlx5dev.card import CardConfig
from mlx5image.build import GuestImage

from .. import Mlx5LabError
from ..campaign.evidence import device_status, keep_crash
from ..campaign.outcome import IterationResult, Outcome
from ..campaign.scenario import IterationPlan, register_scenario
from ..crash import crash_report
from ..fuzz.executor import ExecReport, StopCheck, execute
from ..fuzz.program import Program, parse
from ..rundir import RunDir, atomic_write, atomic_write_json
from ..vm.machine import Machine
from ..vm.qmp import QmpEvent
from .guest import run_guest_iteration

# slub_debug=FZP: sanity checks, red zones and poisoning of slab objects; init_on_free and page_poison:
# freed memory is overwritten, so a use-after-free reads garbage instead of stale data; oops=panic: every
# oops ends in a panic (a vmcore); the other options keep a hung task or soft lockup a report, not a panic.
FUZZ_CMDLINE = "oops=panic slub_debug=FZP init_on_free=1 page_poison=1 softlockup_panic=0 hung_task_panic=0"
FUZZ_SETUP = ("echo 1 > /proc/sys/kernel/unknown_nmi_panic; echo 10 > /proc/sys/kernel/hung_task_timeout_secs; "
              "echo 5 > /proc/sys/kernel/watchdog_thresh 2>/dev/null; true")
WEDGE_CHECK_S = 20.0


@dataclass
class FuzzParams:
    program: str = "path unbind-bind fn=1\nwait\n"  # the program text
    card: dict[str, Any] = field(default_factory=lambda: {"cmd_timeout_ms": 5000})
    speeds: list[int] = field(default_factory=lambda: [100000, 25000])
    slack_s: float = 60.0  # time allowed beyond the program's own sleeps and durations before a hang
    stop_at: str = ""  # a crash signature: the run is a hang once the console holds its report (module doc)


def report_with_signature(signature: str) -> StopCheck:
    """A stop check: the console's last crash report has ``signature`` (as :func:`crash_report` reads a
    console, so as the run's verdict would title it)."""

    def check(console: str) -> str:
        crash = crash_report(console)
        if crash is None or crash.signature != signature:
            return ""
        return f"the console holds the report being reproduced ({crash.title})"

    return check


def wedged(m: Machine, speeds: list[int]) -> str:
    """Bring every function's netdev up and wait for it; what is still missing after WEDGE_CHECK_S ("" if
    nothing): the driver never came back, or its ports cannot be read."""
    script = ("for d in /sys/bus/pci/devices/*; do [ \"$(cat $d/vendor)\" = 0x15b3 ] || continue; "
              "b=${d##*/}; [ -e /sys/bus/pci/drivers/mlx5_core/$b ] || echo $b >/sys/bus/pci/drivers/mlx5_core/bind; "
              "done 2>/dev/null; sleep 1; for n in /sys/class/net/*; do [ \"$n/device/driver\" -ef "
              "/sys/bus/pci/drivers/mlx5_core ] && ip link set ${n##*/} up; done; true")
    try:
        return _wedge_check(m, speeds, script)
    except (EOFError, ConnectionError):
        # the SSH connection (slirp, not an mlx5 port) closed under the program's last commands: one new
        # connection decides whether the guest really stopped answering
        if m.shell is None:
            raise
        try:
            m.reconnect_ssh(timeout=20)
            return _wedge_check(m, speeds, script)
        except (TimeoutError, EOFError, ConnectionError) as exc:
            return f"the guest stopped answering after the program: {type(exc).__name__}: {exc}"


def firmware_left_fatal(m: Machine) -> str:
    """Why a missing function is the program's doing, not the driver's ("" if it is not): the card's
    firmware is still in a fatal state (a ``device fw_fatal``/``fw_dead`` with no driver bound to recover
    it) and the probe found it so. ``main.c: mlx5_function_enable`` then fails (``enable hca failed``,
    -ENOLINK) and ``health.c: mlx5_fw_fatal_reporter_err_work`` does not recover a function that is not
    loaded ("health works are not permitted at this stage"): the driver stays down, as it logs. A firmware
    still dead (every read all-ones: ``device fw_dead`` without ``seconds`` never comes back) is the program's
    doing whether or not the driver was loaded when it died: ``health.c: mlx5_health_try_recover`` resets
    and reloads the function, and every load fails on the dead firmware until the card revives it."""
    if m.card is None or not m.card.alive():
        return ""
    try:
        health = m.card.control.request("firmware")["health"]
    except (Mlx5LabError, OSError, ValueError, KeyError, TypeError):
        return ""
    dead = bool(health.get("fw_ver_dead"))
    probe_failed = "mlx5_init_one failed" in m.console_text()
    if dead and not probe_failed:
        return ("the card's firmware is still dead: every load of the function fails on it until the card "
                "revives it (the driver stays down by design)")
    if not (probe_failed and (dead or (health.get("rfr") and health.get("synd")))):
        return ""
    what = "dead" if dead else f"fatal, syndrome {int(health.get('synd') or 0):#x}"
    return (f"the card's firmware is still {what} and the probe failed on it: the driver stays down by design "
            "(no health recovery for a function that is not loaded)")


RECOVERY_DECLINED = "Driver is in error state. Unloading"
BACK_UP = ("firmware version:", "health recovery succeeded")  # a later load or recovery of the function
BDF = r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]"
BDF_WORD = re.compile(rf"\b{BDF}\b")
BDF_LINE = re.compile(rf"mlx5_core ({BDF}): ")


def recovery_declined(console: str, problem: str, functions: int) -> str:
    """Why a missing function is the driver's policy, not a wedge ("" if it is not): a firmware fatal error
    came while the fw_fatal health reporter refused to recover (``net/devlink/leftover.c:
    devlink_health_report`` returns -ECANCELED while the previous error is unrecovered or within the
    reporter's grace period after a recovery: 60 s for a PF, ``health.c:
    MLX5_FW_REPORTER_PF_GRACEFUL_PERIOD``), so ``health.c: mlx5_fw_fatal_reporter_err_work`` printed
    RECOVERY_DECLINED and unloaded the function on purpose, and nothing loaded it again afterwards.
    ``problem`` is what the wedge check saw; it is excused only when the functions it names as missing
    or unreadable are such unloaded ones."""
    lines: dict[str, list[str]] = {}
    for line in console.splitlines():
        if (bdf := BDF_LINE.search(line)) is not None:
            lines.setdefault(bdf.group(1), []).append(line)
    down = []
    for bdf, own in sorted(lines.items()):
        declined = [i for i, line in enumerate(own) if RECOVERY_DECLINED in line]
        if declined and not any(marker in line for line in own[declined[-1] + 1:] for marker in BACK_UP):
            down.append(bdf)
    if not down:
        return ""
    named = set(BDF_WORD.findall(problem))
    if problem.startswith("only "):  # "only N of M functions have a netdev (the present ones)"
        if named & set(down) or functions - len(named) > len(down):
            return ""
    elif not named or not named <= set(down):  # "a port's speed cannot be read: BDF SPEED, ..."
        return ""
    return (f"the fw_fatal health reporter declined to recover {', '.join(down)} (a fatal error within its "
            "grace period, or before the last one was recovered) and the driver unloaded it on purpose")


def cable_unplugged(m: Machine, problem: str) -> str:
    """Why an unreadable speed is the program's doing ("" if it is not): every port read as -1 has its
    cable unplugged on the card (``device set_link`` without ``up``). With the carrier off the driver
    reports SPEED_UNKNOWN by design (``en_ethtool.c: get_speed_duplex``). A speed that cannot be read at all
    ("-") stays a finding."""
    if not problem.startswith("a port's speed cannot be read:") or m.card is None or not m.card.alive():
        return ""
    listed = [p.strip().split() for p in problem.split(":", 1)[1].split(",")]  # every port: "BDF SPEED"
    ports = [p for p in listed if len(p) != 2 or p[1] in ("-", "-1", "")]
    if not ports or any(len(p) != 2 or p[1] != "-1" for p in ports):
        return ""
    try:
        status = m.card.control.status()
    except (Mlx5LabError, OSError, ValueError):
        return ""
    unplugged = []
    for bdf, _ in ports:
        fn = int(bdf.rsplit(".", 1)[1])  # the card's functions are 0..N-1 of one slot
        if fn >= len(status) or status[fn].get("link_up") is not False:
            return ""
        unplugged.append(bdf)
    return f"the program unplugged the cable of {', '.join(unplugged)}: a port without carrier reads speed -1"


def _wedge_check(m: Machine, speeds: list[int], script: str) -> str:
    deadline = time.monotonic() + WEDGE_CHECK_S
    problem = ""
    try:
        m.run(script, timeout=WEDGE_CHECK_S + 30)
        while time.monotonic() < deadline:
            # up again each time: a netdev that a late health recovery re-created starts down (speed -1)
            out = m.run("for n in /sys/class/net/*; do [ \"$n/device/driver\" -ef /sys/bus/pci/drivers/mlx5_core ]"
                        " || continue; ip link set ${n##*/} up 2>/dev/null; echo $(basename $(readlink $n/device))"
                        " $(cat $n/speed 2>/dev/null || echo -); done; true", timeout=30).stdout.split("\n")
            seen = dict(line.split() for line in out if len(line.split()) == 2)
            fns = sorted(seen)
            problem = ""
            if len(fns) < len(speeds):
                problem = f"only {len(fns)} of {len(speeds)} functions have a netdev ({', '.join(fns) or 'none'})"
            elif any(seen[b] in ("-", "-1", "") for b in fns):
                problem = "a port's speed cannot be read: " + ", ".join(f"{b} {seen[b]}" for b in fns)
            if not problem:
                return ""
            time.sleep(1)
    except (EOFError, ConnectionError):
        raise
    except Exception as exc:  # noqa: BLE001 - a guest that stopped answering here is wedged too
        return f"the guest stopped answering after the program: {type(exc).__name__}: {exc}"
    return problem


def _title_signature(title: str) -> tuple[str, str]:
    return title, hashlib.sha256(title.encode()).hexdigest()[:16]


@register_scenario
class FuzzProgram:
    name: ClassVar[str] = "fuzz-program"
    Params: ClassVar[type[FuzzParams]] = FuzzParams

    def __init__(self, params: FuzzParams) -> None:
        self.params = params
        self.program: Program = parse(params.program)  # a bad program fails here, before any boot

    def run_iteration(self, image: GuestImage, plan: IterationPlan, folder: RunDir) -> IterationResult:
        atomic_write(folder.program, self.program.text())
        card = CardConfig.from_speeds(self.params.speeds, **self.params.card)
        return run_guest_iteration(image, plan, folder, card, lambda m, r: self._body(m, folder, r),
                                   cmdline=FUZZ_CMDLINE)

    def _body(self, m: Machine, run: RunDir, result: IterationResult) -> None:
        assert m.qmp is not None
        m.run(FUZZ_SETUP)
        timeout = self.program.seconds() + self.params.slack_s
        stop = report_with_signature(self.params.stop_at) if self.params.stop_at else None
        report = execute(m, self.program, timeout_s=timeout, stop=stop)
        atomic_write_json(run.exec_records, report.to_json())
        result.files["exec"] = run.EXEC_RECORDS
        result.timings["program_s"] = round(report.duration_s, 3)
        decide(m, run, result, report, self.params.speeds)


def decide(m: Machine, run: RunDir, result: IterationResult, report: ExecReport, speeds: list[int]) -> None:
    """The outcome of a program run from its evidence (see the module docstring)."""
    if report.infra:
        result.outcome, result.detail = Outcome.INFRA, report.infra
        return
    ev = report.event
    if isinstance(ev, QmpEvent) and ev.name == "GUEST_PANICKED":
        result.outcome = Outcome.PANIC
        keep_crash(m, run, result, "panic (no console report)")
        return
    if report.timed_out or report.stopped:
        result.outcome = Outcome.HANG
        result.detail = (f"ended after {report.duration_s:.0f} s: {report.stopped}" if report.stopped
                         else f"the program did not end within {report.duration_s:.0f} s")
        m.qmp.execute("inject-nmi")
        if not isinstance(m.wait_event({"GUEST_PANICKED"}, 10), QmpEvent):
            m.qmp.execute("stop")
        keep_crash(m, run, result, "hang while running a fuzz program (no console report)")
        return
    text = m.console_text()[report.console_offset:]
    crash = crash_report(text)
    if crash is not None:
        result.outcome, result.title, result.signature = Outcome.REPORT, crash.title, crash.signature
        atomic_write(run.oops, crash.oops)
        result.files["oops"] = run.OOPS
        result.detail = f"{crash.kind_text} reported without a panic"
        return
    if isinstance(ev, QmpEvent):  # the program rebooted or powered off the guest: it did so cleanly
        guest = bool(ev.data.get("guest"))
        result.outcome = Outcome.CLEAN if guest else Outcome.INFRA
        result.detail = f"QMP {ev.name} {json.dumps(ev.data)}"
        return
    problem = wedged(m, speeds)
    fatal = (firmware_left_fatal(m) or recovery_declined(text, problem, len(speeds))
             or cable_unplugged(m, problem)) if problem else ""
    if fatal:  # the driver stays down by design: not a finding
        result.outcome = Outcome.CLEAN
        result.detail = f"{problem}; {fatal}"
        result.device = device_status(m)
        return
    if problem:
        result.outcome = Outcome.REPORT
        result.title, result.signature = _title_signature(f"mlx5 driver wedged: {problem.split(':')[0]}")
        result.detail = problem
        return
    result.outcome = Outcome.CLEAN
    result.device = device_status(m)

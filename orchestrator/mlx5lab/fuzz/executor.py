"""Running one program in a booted guest: the guest's executor for guest operations, the host for device
ones, timed against the executor's console markers.

The compiled program goes to the guest in one SSH command and starts in another; from then on the host
only reads the serial console (the executor's markers reach it through the kernel log, even from a guest
that dies) and QMP events, and sends the control requests of each ``MLX5LAB-DEV IDX`` marker as it
appears. The run ends with the executor's end marker, a guest panic, reset or shutdown, a timeout, or
the caller's ``stop`` check: a reproducer's try of a hang ends once the console holds the hang's report,
instead of at the timeout.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import Mlx5LabError
from ..vm.machine import Machine
from ..vm.qmp import QmpEvent
from .compile import Compiled, HostAction, compile_program
from .program import Program

PROGRAM_PATH = "/tmp/mlx5lab-program.sh"
RECORD_PATH = "/tmp/mlx5lab-exec.jsonl"  # where guest-images/reader/mlx5lab-exec writes its record
_DEV = re.compile(r"MLX5LAB-DEV (\d+)")
_OP = re.compile(r"\[\s*(\d+\.\d+)\] MLX5LAB-OP (\d+) (start|end)(?: rc=(-?\d+))?")
END_MARKER = "MLX5LAB-EXEC end"
START_MARKER = "MLX5LAB-EXEC start"
VERDICT_EVENTS = {"GUEST_PANICKED", "RESET", "SHUTDOWN"}
STOP_CHECK_S = 0.5  # how often the stop check reads the run's console (it parses crash reports)
StopCheck = Callable[[str], str]  # the run's console so far -> why to end the run now, or ""


@dataclass
class DeviceAction:
    idx: int
    op: str
    seen_s: float  # host seconds from the executor's start to the marker being seen
    results: list[Any] = field(default_factory=list)
    error: str = ""


@dataclass
class ExecReport:
    """What a program run left: how it ended, each operation's record, the device actions taken."""

    ended: bool = False  # the executor printed its end marker
    event: QmpEvent | None = None  # GUEST_PANICKED / RESET / SHUTDOWN, if one ended the run
    infra: str = ""  # QEMU or the device server died, or the program could not start
    timed_out: bool = False
    stopped: str = ""  # why the caller's stop check ended the run before the program did
    duration_s: float = 0.0
    records: list[dict[str, Any]] = field(default_factory=list)  # one per op: op, mode, start, end, rc
    device: list[DeviceAction] = field(default_factory=list)
    console_offset: int = 0  # where the run's console output starts
    note: str = ""  # why the executor's own record could not be read (the console markers stood in)

    def to_json(self) -> dict[str, Any]:
        return {"ended": self.ended, "event": self.event.name if self.event else None, "infra": self.infra,
                "timed_out": self.timed_out, "stopped": self.stopped,
                "duration_s": round(self.duration_s, 3), "records": self.records,
                "device": [vars(d) for d in self.device], "note": self.note}


def _records_from_console(text: str) -> list[dict[str, Any]]:
    """Per-op records from the console markers (for a run cut short: the executor's file is unreachable)."""
    ops: dict[int, dict[str, Any]] = {}
    for m in _OP.finditer(text):
        t, idx, what, rc = float(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
        rec = ops.setdefault(idx, {"op": idx, "mode": "?", "start": None, "end": None, "rc": None})
        if what == "start":
            rec["start"] = t
        else:
            rec["end"], rec["rc"] = t, int(rc) if rc is not None else None
    return [ops[i] for i in sorted(ops)]


class _Host:
    """The host's side: control requests on device markers, delayed follow-ups on timers."""

    def __init__(self, m: Machine, compiled: Compiled) -> None:
        self.m, self.compiled = m, compiled
        self.done: set[int] = set()
        self.actions: list[DeviceAction] = []
        self._timers: list[threading.Timer] = []

    def _send(self, requests: tuple[tuple[str, dict[str, Any]], ...], action: DeviceAction) -> None:
        assert self.m.card is not None
        for op, fields in requests:
            try:
                action.results.append(self.m.card.control.request(op, **fields))
            except (Mlx5LabError, OSError, ValueError) as exc:
                action.error = f"{op}: {exc}"

    def on_marker(self, idx: int, t: float) -> None:
        if idx in self.done or idx not in self.compiled.actions:
            return
        self.done.add(idx)
        plan: HostAction = self.compiled.actions[idx]
        action = DeviceAction(idx, self.compiled.describe(idx), round(t, 3))
        self.actions.append(action)
        self._send(plan.requests, action)
        if plan.later:
            timer = threading.Timer(plan.later_s, self._send, (plan.later, action))
            timer.daemon = True
            timer.start()
            self._timers.append(timer)

    def close(self) -> None:
        for t in self._timers:
            t.cancel()


def _read_guest_record(m: Machine, attempts: int = 3) -> tuple[str, str]:
    """The executor's record file (and "" as the note), or "" and why it could not be read. A failed read
    is tried again on a new SSH connection: the guest is up (it printed its end marker), so a lost channel
    or connection is the host's problem, not the program's."""
    why = ""
    for attempt in range(attempts):
        try:
            if attempt:
                m.reconnect_ssh(timeout=20)
            return m.run(f"cat {RECORD_PATH}", timeout=30).stdout, ""
        except Exception as exc:  # noqa: BLE001 - the console markers stand in
            why = f"the executor's record could not be read ({attempt + 1} tries): {type(exc).__name__}: {exc}"
    return "", why


def execute(m: Machine, program: Program, *, timeout_s: float, stop: StopCheck | None = None) -> ExecReport:
    """Run ``program`` on ``m`` (booted, SSH up) until it ends, the guest stops, ``timeout_s`` passes, or
    ``stop`` (given the run's console, every :data:`STOP_CHECK_S`) says why to end it."""
    compiled = compile_program(program)
    report = ExecReport(console_offset=len(m.console_text()))
    res = m.run(f"cat > {PROGRAM_PATH} <<'MLX5LAB_PROGRAM_EOF'\n{compiled.script}MLX5LAB_PROGRAM_EOF\n")
    if res.status != 0:
        report.infra = f"could not copy the program into the guest: {res.stderr.strip()}"
        return report
    assert m.qmp is not None
    since = m.event_index()
    host = _Host(m, compiled)
    t0 = time.monotonic()
    checked = t0
    m.start_command(f"mlx5lab-exec {PROGRAM_PATH} >/tmp/mlx5lab-exec.out 2>&1")
    try:
        while True:
            text = m.console_text()[report.console_offset:]
            for mk in _DEV.finditer(text):
                host.on_marker(int(mk.group(1)), time.monotonic() - t0)
            if END_MARKER in text:
                report.ended = True
                break
            ev = m.wait_event(VERDICT_EVENTS, 0.02, since)
            if isinstance(ev, QmpEvent):
                report.event = ev
                break
            if isinstance(ev, str):
                report.infra = ev
                break
            now = time.monotonic()
            if stop is not None and now - checked >= STOP_CHECK_S:
                checked = now
                report.stopped = stop(text)
                if report.stopped:
                    break
            if now - t0 > timeout_s:
                report.timed_out = True
                break
    finally:
        host.close()
    report.duration_s = time.monotonic() - t0
    report.device = host.actions
    from_console = {r["op"]: r for r in _records_from_console(m.console_text()[report.console_offset:])}
    from_guest: dict[int, dict[str, Any]] = {}
    if report.ended:
        out, report.note = _read_guest_record(m)
        for line in out.splitlines():
            try:
                rec = json.loads(line)
                from_guest[int(rec["op"])] = rec
            except (ValueError, KeyError, TypeError):
                report.note = f"unreadable executor record: {line[:200]}"
    for d in host.actions:  # device markers seen on the console, if the guest's record lacks them
        from_console.setdefault(d.idx, {"op": d.idx, "mode": "dev", "start": None, "end": None, "rc": 0})
    merged = {**from_console, **from_guest}
    report.records = [merged[i] for i in sorted(merged)]
    for rec in report.records:
        rec["text"] = compiled.describe(int(rec["op"]))
    return report

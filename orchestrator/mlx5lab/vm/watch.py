"""What can end an interactive session from the guest's side: a panic, the guest's own reboot or power-off,
QEMU or the device server dying.

Polled by the terminal relay (``mlx5lab.vm.terminal.relay``'s ``watch``) while the user types; it never
blocks. A panic is the QMP ``GUEST_PANICKED`` event (pvpanic) or a fatal crash report on the console,
whichever is seen first. A reboot or power-off is the QMP ``RESET`` or ``SHUTDOWN`` event the guest caused
(its ``guest`` field, QEMU's qapi/run-state.json). Non-fatal reports (a lone WARNING) do not end the
session and are collected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..crash import CrashReport, crash_report
from .machine import Machine
from .qmp import QmpEvent

EVENTS = frozenset({"GUEST_PANICKED", "RESET", "SHUTDOWN"})


@dataclass(frozen=True)
class GuestTrouble:
    """``what``: "panic", "reboot", "poweroff", "QEMU exited", "the device server exited" or another reason
    the session broke; ``report``: the console's crash, if any."""

    what: str
    report: CrashReport | None


@dataclass
class GuestWatch:
    """Call it to poll; None while the guest is fine."""

    machine: Machine
    since: int = -1  # QMP event index to watch from; -1: now
    console_from: int = -1  # console characters to skip (earlier boots' text); -1: what is there now
    warnings: dict[str, CrashReport] = field(default_factory=dict)  # non-fatal reports, by signature

    def __post_init__(self) -> None:
        if self.since < 0:
            self.since = self.machine.event_index()
        if self.console_from < 0:
            self.console_from = len(self.machine.console_text())
        self._console_len = self.console_from

    def _new_console_report(self) -> CrashReport | None:
        text = self.machine.console_text()
        if len(text) == self._console_len:
            return None
        self._console_len = len(text)
        return crash_report(text[self.console_from:])

    def __call__(self) -> GuestTrouble | None:
        ev = self.machine.wait_event(EVENTS, timeout=0, since=self.since)
        if isinstance(ev, QmpEvent) and ev.name == "GUEST_PANICKED":
            return GuestTrouble("panic", self.machine.crash_after_event())
        if isinstance(ev, QmpEvent):
            what = {"RESET": "reboot", "SHUTDOWN": "poweroff"}[ev.name]
            return GuestTrouble(what if ev.data.get("guest") else f"QEMU {ev.name} {ev.data}", None)
        if isinstance(ev, str):
            return GuestTrouble(ev, crash_report(self.machine.console_text()[self.console_from:]))
        report = self._new_console_report()
        if report is None:
            return None
        if report.is_panic:
            return GuestTrouble("panic", self.machine.crash_after_event())
        self.warnings.setdefault(report.signature, report)
        return None

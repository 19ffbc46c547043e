"""What can end an interactive session from the guest's side: a panic, QEMU or the device server dying.

Polled by the terminal relay (``mlx5lab.vm.terminal.relay``'s ``watch``) while the user types; it never
blocks. A panic is the QMP ``GUEST_PANICKED`` event (pvpanic) or a fatal crash report on the console,
whichever is seen first; non-fatal reports (a lone WARNING) do not end the session and are collected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..crash import CrashReport, crash_report
from .machine import Machine
from .qmp import QmpEvent


@dataclass(frozen=True)
class GuestTrouble:
    """``what``: "panic", "QEMU exited" or "the device server exited"; ``report``: the console's crash."""

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
        ev = self.machine.wait_event({"GUEST_PANICKED"}, timeout=0, since=self.since)
        if isinstance(ev, QmpEvent):
            return GuestTrouble("panic", self.machine.crash_after_event())
        if isinstance(ev, str):
            return GuestTrouble(ev, crash_report(self.machine.console_text()[self.console_from:]))
        report = self._new_console_report()
        if report is None:
            return None
        if report.is_panic:
            return GuestTrouble("panic", self.machine.crash_after_event())
        self.warnings.setdefault(report.signature, report)
        return None

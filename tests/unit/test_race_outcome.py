"""How an iteration's outcome follows from the QMP evidence (no QEMU needed)."""

from __future__ import annotations

import pytest

from mlx5lab.scenarios.reboot_race import decide
from mlx5lab.vm.qmp import QmpEvent


def ev(name: str, **data: object) -> QmpEvent:
    return QmpEvent(name, dict(data), 0.0)


@pytest.mark.parametrize(("verdict", "outcome"), [
    (ev("RESET", guest=True, reason="guest-reset"), "clean"),
    (ev("GUEST_PANICKED", action="pause"), "panic"),
    (None, "hang"),
    (ev("RESET", guest=False, reason="host-qmp-system-reset"), "infra"),  # not the guest's reboot
    (ev("SHUTDOWN", guest=False, reason="host-signal"), "infra"),  # someone killed QEMU
    ("QEMU exited", "infra"),
    ("the device server exited", "infra"),
])
def test_outcome_from_evidence(verdict: QmpEvent | str | None, outcome: str) -> None:
    assert decide(verdict, 30)[0] == outcome


def test_infra_details_say_what_happened() -> None:
    assert decide("the device server exited", 30) == ("infra", "the device server exited")
    assert "host-signal" in decide(ev("SHUTDOWN", guest=False, reason="host-signal"), 30)[1]
    assert "30s" in decide(None, 30)[1]


def test_graceful_poweroff_is_clean_only_when_the_guest_shuts_down() -> None:
    assert decide(ev("SHUTDOWN", guest=True, reason="guest-shutdown"), 30, "poweroff")[0] == "clean"
    assert decide(ev("RESET", guest=True, reason="guest-reset"), 30, "poweroff")[0] == "infra"
    assert decide(ev("RESET", guest=True, reason="guest-reset"), 30, "reboot")[0] == "clean"
    assert decide(ev("SHUTDOWN", guest=False, reason="host-signal"), 30, "poweroff")[0] == "infra"

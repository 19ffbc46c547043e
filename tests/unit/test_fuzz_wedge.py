"""The wedge check's exception: a function the program left with fatal firmware and no driver, or with a
firmware still dead, is the driver staying down by design, not a wedged driver."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from mlx5lab.scenarios.fuzz_program import firmware_left_fatal

PROBE_FAILED = "[ 22.5] mlx5_core 0000:01:00.0: probe_one:1778:(pid 292): mlx5_init_one failed with error code -67\n"


def machine(health: dict[str, Any], console: str) -> Any:  # noqa: ANN401 - a stand-in for vm.machine.Machine
    control = SimpleNamespace(request=lambda op: {"health": health})
    card = SimpleNamespace(alive=lambda: True, control=control)
    return SimpleNamespace(card=card, console_text=lambda: console)


def test_fatal_firmware_and_a_failed_probe_is_by_design() -> None:
    why = firmware_left_fatal(machine({"synd": 0x80, "rfr": True, "fw_ver_dead": False}, PROBE_FAILED))
    assert "syndrome 0x80" in why and "by design" in why
    assert "dead" in firmware_left_fatal(machine({"synd": 0, "rfr": False, "fw_ver_dead": True}, PROBE_FAILED))


def test_a_firmware_still_dead_is_by_design_even_with_the_driver_loaded_when_it_died() -> None:
    # fw_dead while the driver ran: its health recovery reset and reloaded the function, and the load failed
    # on the dead firmware (no probe failure in the console, the netdevs gone)
    why = firmware_left_fatal(machine({"synd": 0, "rfr": False, "fw_ver_dead": True}, "Fatal error 1 detected\n"))
    assert "still dead" in why and "by design" in why


def test_anything_else_stays_a_finding() -> None:
    assert firmware_left_fatal(machine({"synd": 0x80, "rfr": True, "fw_ver_dead": False}, "no probe failure\n")) == ""
    assert firmware_left_fatal(machine({"synd": 0x80, "rfr": False, "fw_ver_dead": False}, PROBE_FAILED)) == ""
    assert firmware_left_fatal(machine({"synd": 0, "rfr": False, "fw_ver_dead": False}, PROBE_FAILED)) == ""
    assert firmware_left_fatal(SimpleNamespace(card=None)) == ""

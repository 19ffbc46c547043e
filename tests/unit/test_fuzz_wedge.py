"""The wedge check's exceptions: a function the program left with fatal firmware and no driver, with a
firmware still dead, or unloaded because the health reporter declined a recovery, is the driver staying
down by design, not a wedged driver."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from mlx5lab.scenarios.fuzz_program import firmware_left_fatal, recovery_declined

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


# Two fw_dead events 4 s apart (a fuzz program's console, cut): the first is recovered, the second comes
# within the fw_fatal reporter's grace period, so devlink declines and the driver unloads both functions.
DECLINED = """\
[    7.875581] mlx5_core 0000:01:00.0: firmware version: 16.35.2000
[    8.335920] mlx5_core 0000:01:00.1: firmware version: 16.35.2000
[   12.344588] mlx5_core 0000:01:00.0: poll_health:836:(pid 231): Fatal error 1 detected
[   13.370743] mlx5_core 0000:01:00.1: poll_health:836:(pid 231): Fatal error 1 detected
[   14.891385] mlx5_core 0000:01:00.0: firmware version: 16.35.2000
[   14.895717] mlx5_core 0000:01:00.1: firmware version: 16.35.2000
[   15.075307] mlx5_core 0000:01:00.0: health recovery succeeded
[   15.254150] mlx5_core 0000:01:00.1: health recovery succeeded
[   16.920607] mlx5_core 0000:01:00.0: poll_health:836:(pid 0): Fatal error 3 detected
[   16.921770] mlx5_core 0000:01:00.1: poll_health:836:(pid 0): Fatal error 3 detected
[   16.924116] mlx5_core 0000:01:00.0: mlx5_fw_fatal_reporter_err_work:713:(pid 16): Driver is in error state. Unloading
[   16.926090] mlx5_core 0000:01:00.1: mlx5_fw_fatal_reporter_err_work:713:(pid 9): Driver is in error state. Unloading
"""
ONLY_FN0_DECLINED = "\n".join(line for line in DECLINED.splitlines()
                               if not ("01:00.1" in line and "Unloading" in line)) + "\n"


def test_a_declined_recovery_is_the_drivers_policy() -> None:
    why = recovery_declined(DECLINED, "only 0 of 2 functions have a netdev (none)", 2)
    assert "0000:01:00.0, 0000:01:00.1" in why and "on purpose" in why
    assert recovery_declined(ONLY_FN0_DECLINED, "only 1 of 2 functions have a netdev (0000:01:00.1)", 2)
    assert recovery_declined(DECLINED, "a port's speed cannot be read: 0000:01:00.1 -1", 2)


def test_a_function_missing_for_another_reason_stays_a_finding() -> None:
    # fn0 was unloaded on purpose, but fn1 is the one missing (or both are, and only one was unloaded)
    assert recovery_declined(ONLY_FN0_DECLINED, "only 1 of 2 functions have a netdev (0000:01:00.0)", 2) == ""
    assert recovery_declined(ONLY_FN0_DECLINED, "only 0 of 2 functions have a netdev (none)", 2) == ""
    assert recovery_declined(ONLY_FN0_DECLINED, "a port's speed cannot be read: 0000:01:00.1 -1", 2) == ""
    # a load after the declined recovery (a bind, a reload): the function came back, so a missing netdev
    # afterwards is not explained by it
    later = DECLINED + "[   20.1] mlx5_core 0000:01:00.0: firmware version: 16.35.2000\n"
    assert recovery_declined(later, "only 1 of 2 functions have a netdev (0000:01:00.1)", 2) == ""
    assert recovery_declined("[ 1.0] mlx5_core 0000:01:00.0: firmware version: 16.35.2000\n",
                             "only 1 of 2 functions have a netdev (0000:01:00.1)", 2) == ""


def card_with_links(*links: bool) -> Any:  # noqa: ANN401 - a stand-in for vm.machine.Machine
    control = SimpleNamespace(status=lambda: [{"function": f"fn{i}", "link_up": up} for i, up in enumerate(links)])
    return SimpleNamespace(card=SimpleNamespace(alive=lambda: True, control=control))


def test_a_port_whose_cable_the_program_unplugged_reads_speed_minus_one_by_design() -> None:
    from mlx5lab.scenarios.fuzz_program import cable_unplugged

    problem = "a port's speed cannot be read: 0000:01:00.0 5000, 0000:01:00.1 -1"
    assert "0000:01:00.1" in cable_unplugged(card_with_links(True, False), problem)
    assert cable_unplugged(card_with_links(True, True), problem) == ""  # cable in: -1 is a finding
    both = "a port's speed cannot be read: 0000:01:00.0 -1, 0000:01:00.1 -1"
    assert cable_unplugged(card_with_links(True, False), both) == ""  # fn0's cable is in
    assert cable_unplugged(card_with_links(False, False), both)
    unreadable = "a port's speed cannot be read: 0000:01:00.0 5000, 0000:01:00.1 -"
    assert cable_unplugged(card_with_links(True, False), unreadable) == ""  # the read itself failed
    assert cable_unplugged(card_with_links(False, False), "only 1 of 2 functions have a netdev (0000:01:00.0)") == ""

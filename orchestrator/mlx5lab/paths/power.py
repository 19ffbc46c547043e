"""Reboot and poweroff: the kernel's shutdown path, through init (graceful) or ``-f``.

busybox ``reboot``/``poweroff`` signal init, which runs its shutdown actions, kills every process and calls
reboot(2); ``-f`` calls reboot(2) at once (the race's trigger). Either way the kernel runs device_shutdown,
and for each mlx5 function ``shutdown`` prints "Shutdown was called" (main.c). The card advertises fast
teardown by default (CardConfig.fast_teardown), so mlx5_try_fast_unload tears the function down with one
command; a card without fast and force teardown gets the full unload (mlx5_unload_one).

The console between the two boots must hold that line for every function and no crash report. A reboot
ends when the guest is back (its next SSH-READY marker) with every port up; a poweroff when QEMU has
reported the guest's SHUTDOWN and exited (the Machine is then finished: ``ends_machine``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

from ..crash import crash_report
from ..vm.machine import Machine
from ..vm.qmp import QmpEvent
from . import ports
from .health import shutdown_segment
from .registry import DriverPath, PathError, arg, register_path

SHUTDOWN_FUNCTIONS = (
    "kernel/reboot.c: kernel_restart / kernel_power_off -> kernel_shutdown_prepare -> "
    "drivers/base/core.c: device_shutdown -> drivers/pci/pci-driver.c: pci_device_shutdown",
    "main.c: shutdown (\"Shutdown was called\") -> mlx5_drain_fw_reset, mlx5_drain_health_wq, mlx5_try_fast_unload",
    "with the fast_teardown cap (the card's default): fw.c: mlx5_cmd_fast_teardown_hca (TEARDOWN_HCA "
    "PREPARE_FAST_TEARDOWN, nic_interface DISABLED) -> main.c: mlx5_enter_error_state, eq.c: mlx5_core_eq_free_irqs; "
    "force_teardown only: fw.c: mlx5_cmd_force_teardown_hca; neither: -EOPNOTSUPP -> main.c: mlx5_unload_one",
    "main.c: mlx5_pci_disable_device",
)
SHUTDOWN_DEVICE = ("TEARDOWN_HCA with profile PREPARE_FAST_TEARDOWN, then nic_interface reads DISABLED; no other "
                   "command (with fast_teardown=false force_teardown=false: the full unload's commands)")
SHUTDOWN_LINE = "Shutdown was called"


@dataclass(frozen=True)
class PowerArgs:
    force: bool = arg(False, "-f: reboot(2) at once, without init's shutdown (device_shutdown still runs)")
    timeout: float = arg(120.0, "seconds for the guest to go down (and, for reboot, to come back)")


def shutdown_problems(console: str, bdfs: list[str]) -> list[str]:
    """What is missing or wrong on the console between a shutdown request and the next boot."""
    segment = shutdown_segment(console)
    problems = [f"no \"mlx5_core {bdf}: {SHUTDOWN_LINE}\" on the console" for bdf in bdfs
                if f"mlx5_core {bdf}: {SHUTDOWN_LINE}" not in segment]
    report = crash_report(segment)
    if report is not None:
        problems.append(f"crash report during shutdown: {report.title}")
    return problems


def _request(m: Machine, command: str, timeout: float, want: str) -> int:
    """Start ``command``; wait for QMP ``want`` from the guest. Returns the console offset before it."""
    ports.card_bdfs(m)  # found while the guest is up, for the console check afterwards
    start = len(m.console_text())
    since = m.event_index()
    m.start_command(command)
    ev = m.wait_event({"RESET", "SHUTDOWN", "GUEST_PANICKED"}, timeout, since)
    if not isinstance(ev, QmpEvent):
        raise PathError(f"`{command}`: no QMP {want} within {timeout:.0f} s ({ev or 'timeout'})")
    if ev.name != want or not ev.data.get("guest"):
        raise PathError(f"`{command}`: QMP {ev.name} {ev.data}, expected {want} from the guest")
    return start


@register_path
class Reboot(DriverPath):
    name: ClassVar[str] = "reboot"
    summary: ClassVar[str] = "reboot through init; the guest comes back with every port up"
    trigger: ClassVar[str] = "reboot (or reboot -f)"
    device: ClassVar[str] = (f"{SHUTDOWN_DEVICE}, QEMU's system reset (VFIO_USER_DEVICE_RESET), then a boot's "
                             "probe")
    kernel_functions: ClassVar[tuple[str, ...]] = (
        *SHUTDOWN_FUNCTIONS, "next boot: main.c: probe_one -> mlx5_init_one (every function)")
    Args: ClassVar[type[PowerArgs]] = PowerArgs
    concurrent_args: ClassVar[dict[str, bool]] = {"force": True}  # init's shutdown would end them first

    def perform(self, m: Machine, args: PowerArgs) -> None:
        command = "reboot -f" if args.force else "reboot"
        start = _request(m, command, args.timeout, "RESET")
        m.wait_ssh(timeout=args.timeout)
        problems = shutdown_problems(m.console_text()[start:], ports.card_bdfs(m))
        if problems:
            raise PathError(f"`{command}`: {'; '.join(problems)}")
        # the guest's init brings the ports up at boot
        ports.wait_ports(m, range(ports.functions(m)), what=f"after `{command}`")


@register_path
class Poweroff(DriverPath):
    name: ClassVar[str] = "poweroff"
    summary: ClassVar[str] = "poweroff through init; QEMU reports the guest's SHUTDOWN and exits"
    trigger: ClassVar[str] = "poweroff (or poweroff -f)"
    device: ClassVar[str] = f"{SHUTDOWN_DEVICE}; then QEMU exits"
    kernel_functions: ClassVar[tuple[str, ...]] = SHUTDOWN_FUNCTIONS
    Args: ClassVar[type[PowerArgs]] = PowerArgs
    concurrent_args: ClassVar[dict[str, bool]] = {"force": True}
    ends_bound: ClassVar[bool] = False
    ends_machine: ClassVar[bool] = True

    def perform(self, m: Machine, args: PowerArgs) -> None:
        command = "poweroff -f" if args.force else "poweroff"
        start = _request(m, command, args.timeout, "SHUTDOWN")
        deadline = time.monotonic() + 30
        while m.alive():
            if time.monotonic() > deadline:
                raise PathError(f"`{command}`: QEMU still running 30 s after the guest's SHUTDOWN")
            time.sleep(0.05)
        problems = shutdown_problems(m.console_text()[start:], ports.card_bdfs(m))
        if problems:
            raise PathError(f"`{command}`: {'; '.join(problems)}")

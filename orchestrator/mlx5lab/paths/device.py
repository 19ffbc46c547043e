"""Paths the device starts (through the card's control channel), and the function-level reset, whose
interest is what the device does: firmware fatal errors and recovery, a dead firmware, a frozen health
counter, a firmware-initiated sync reset, command timeouts, link flaps and speed changes.

Each waits for the driver's own reaction, read from the kernel log by the lines the 6.1 driver prints
(``health.c``, ``fw_reset.c``, ``cmd.c``; paths under ``drivers/net/ethernet/mellanox/mlx5/core/``), then
brings the re-created ports up as a user would (the driver re-creates them admin-down) and waits for them.
The lines each path makes the driver print are its ``expected_dmesg``: the health check does not count
them as problems after that path.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass
from typing import ClassVar

from ..vm.machine import Machine
from . import ports
from .registry import DriverPath, PathError, arg, fn_arg, register_path, select_functions

RECOVERED = "health recovery succeeded"  # health.c: mlx5_health_try_recover
# health.c: mlx5_fw_fatal_reporter_err_work, when devlink_health_report refused to auto-recover: a PF's
# fw_fatal reporter has a grace period of 60 s (MLX5_FW_REPORTER_PF_GRACEFUL_PERIOD), so a second fatal
# error within a minute of the last recovery leaves the function unloaded until someone recovers it
ABORTED = "Driver is in error state. Unloading"
RELOADED = "firmware version: "  # main.c: mlx5_function_setup, on every (re)load of a function
# What the card refuses while the driver does not know yet that the function was reset or the firmware
# halted (health.c: poll_health notices within its poll interval, about 2 s): command doorbells, EQ and
# SQ doorbells on UAR pages the reset dropped, events it no longer writes.
RECOVERY_TRACE = (
    r"command doorbell 0x[0-9a-f]+ while nic_interface is [17]",
    r"command doorbell 0x[0-9a-f]+ ignored: the firmware is halted",
    r"write to BAR0 0x[0-9a-f]+ \(page \d+ is not an allocated UAR\)",
    r"not written: the firmware is halted",
    r"doorbell for slot \d+ before the command queue address was set",
)
RECOVERY_DMESG = (
    # cmd.c: a command in flight when the function was reset or the firmware halted is never completed:
    # wait_func times out (or the EQ recovery finds its completion), as on hardware
    r"wait_func_handle_exec_timeout:\d+:\(pid \d+\): cmd\[\d+\]: \S+ (recovered after timeout|No done completion)",
    r"wait_func:\d+:\(pid \d+\): \S+ timeout\. Will cause a leak of a command resource",
    r"mlx5_cmd_comp_handler:\d+:\(pid \d+\): Command completion arrived after timeout",
    r"mlx5_cmd_out_err:\d+:\(pid \d+\): ",
    # en_ethtool.c: mlx5e_ethtool_get_link_ksettings, a speed read while the function is in error state
    # (cmd.c: mlx5_internal_err_ret_value answers -ENOLINK), its command interface down (cmd.c:
    # mlx5_cmd_exec -> -ENXIO) or its command lost in the reset (-ETIMEDOUT)
    r"mlx5e_ethtool_get_link_ksettings: query port ptys failed: -(67|6|110)\b",
    r"mlx5e_update_carrier_work|mlx5e_tx_reporter|mlx5e_reporter_",
    # health.c: poll_health / print_health_info: the fatal sensor and the health buffer
    r"poll_health:\d+:\(pid \d+\): Fatal error \d+ detected",
    r"print_health_info:\d+:\(pid \d+\): ",
    # health.c: mlx5_health_try_recover, mlx5_handle_bad_state, mlx5_error_sw_reset, reset_fw_if_needed
    r"mlx5_health_try_recover:\d+:\(pid \d+\): ",
    r"mlx5_fw_fatal_reporter_err_work:\d+:\(pid \d+\): Driver is in error state\. Unloading",
    r"mlx5_handle_bad_state:\d+:\(pid \d+\): ",
    r"mlx5_error_sw_reset:\d+:\(pid \d+\): ",
    r"reset_fw_if_needed:\d+:\(pid \d+\): ",
    # health.c: mlx5_error_sw_reset waits for DISABLED; a dead firmware reads all-ones (nic_interface 7)
    r"NIC IFC still \d+ after \d+ms\.",
    # pagealloc.c: mlx5_wait_for_pages during the unload of a function in error state
    r"mlx5_wait_for_pages:\d+:\(pid \d+\): Skipping wait for vf pages stage",
    # main.c: mlx5_pci_slot_reset and wait_vital, from mlx5_recover_device
    r"mlx5_pci_slot_reset Device state",
    r"wait vital counter value",
    # devlink health: the fw_fatal reporter's dump has no crdump without a vendor-specific capability
    r"mlx5_fw_fatal_reporter_dump:\d+:\(pid \d+\): ",
    r"mlx5_crdump_collect:\d+:\(pid \d+\): ",
)


def count_lines(m: Machine, text: str, bdf: str | None = None) -> int:
    """How many kernel log lines hold ``text`` (of function ``bdf`` only, if given)."""
    pattern = shlex.quote(text)
    where = f" | grep -F -- {shlex.quote(bdf)}" if bdf else ""
    return int(ports.sh(m, f"dmesg | grep -F -- {pattern}{where} | wc -l").strip() or 0)


def wait_lines(m: Machine, text: str, bdfs: list[str], before: dict[str, int], timeout: float, what: str) -> None:
    """Wait until each function in ``bdfs`` has printed ``text`` once more than ``before``."""
    def missing() -> list[str]:
        return [f"{b} has not printed {text!r} yet" for b in bdfs if count_lines(m, text, b) <= before[b]]

    ports.wait_until(missing, timeout, what)


def recover_and_bring_up(m: Machine, fns: list[int], before: dict[str, int], text: str, timeout: float,
                         what: str, *, aborted_before: dict[str, int] | None = None) -> None:
    """Wait for each function's recovery line, then bring its re-created ports up.

    With ``aborted_before`` (the count of ``ABORTED`` lines before the fault), a function whose fw_fatal
    reporter refused to recover because its previous recovery is younger than the reporter's grace period
    is recovered by hand, as an operator does: ``devlink health recover`` (devlink: devlink_health_report
    returns -ECANCELED inside the grace period; health.c: mlx5_fw_fatal_reporter_err_work then unloads the
    function and waits for mlx5_fw_fatal_reporter_recover).
    """
    bdfs = [ports.bdf(m, fn) for fn in fns]
    recovered_by_hand: set[str] = set()

    def missing() -> list[str]:
        waiting = []
        for b in bdfs:
            if count_lines(m, text, b) > before[b]:
                continue
            if aborted_before is not None and b not in recovered_by_hand \
                    and count_lines(m, ABORTED, b) > aborted_before[b]:
                # the line comes before mlx5_unload_one: recovering earlier would be undone by the unload
                fn = fns[bdfs.index(b)]
                ports.wait_ports(m, [], absent=[fn], timeout=30, what=f"the unload of {b} in error state")
                recovered_by_hand.add(b)
                ports.sh(m, f"devlink health recover pci/{b} reporter fw_fatal", timeout=timeout)
                if count_lines(m, text, b) > before[b]:
                    continue
            waiting.append(f"{b} has not printed {text!r} yet")
        return waiting

    ports.wait_until(missing, timeout, what)
    ports.bring_up(m, fns, timeout=60)
    ports.wait_ports(m, range(ports.functions(m)), what=f"after {what}")


def _counts(m: Machine, text: str, fns: list[int]) -> dict[str, int]:
    return {ports.bdf(m, fn): count_lines(m, text, ports.bdf(m, fn)) for fn in fns}


def _control(m: Machine, op: str, **fields: object) -> object:
    if m.card is None:
        raise PathError("the machine has no emulated card")
    return m.card.control.request(op, **fields)


def _status(m: Machine) -> list[dict]:
    if m.card is None:
        raise PathError("the machine has no emulated card")
    return m.card.control.status()


HEALTH_FUNCTIONS = (
    "health.c: poll_health -> mlx5_health_check_fatal_sensors -> mlx5_trigger_health_work",
    "health.c: mlx5_fw_fatal_reporter_err_work -> devlink_health_report (auto-recover) -> "
    "mlx5_fw_fatal_reporter_recover -> mlx5_health_try_recover",
    "health.c: mlx5_error_sw_reset -> reset_fw_if_needed; main.c: mlx5_disable_device -> "
    "mlx5_unload_one (commands completed by cmd.c: mlx5_cmd_flush)",
    "health.c: mlx5_health_wait_pci_up; main.c: mlx5_recover_device -> mlx5_pci_slot_reset (wait_vital) -> "
    "mlx5_load_one (new netdevs)",
)


@dataclass(frozen=True)
class FlrArgs:
    fn: str = fn_arg("1", "the function to reset")


@register_path
class FunctionLevelReset(DriverPath):
    name: ClassVar[str] = "flr"
    summary: ClassVar[str] = "function-level reset under the bound driver; its health poll notices and recovers"
    trigger: ClassVar[str] = "echo 1 > /sys/bus/pci/devices/BDF/reset"
    device: ClassVar[str] = ("FLR (PCIe DEVCTL): the function's state and queues are gone, the card's firmware "
                             "(health, other function) untouched; its NIC interface reads DISABLED until the "
                             "driver programs the command queue again")
    kernel_functions: ClassVar[tuple[str, ...]] = (
        "drivers/pci/pci-sysfs.c: reset_store -> pci.c: pci_reset_function -> pcie_flr "
        "(mlx5 has no reset_prepare/reset_done)",
        "health.c: poll_health: sensor NIC_DISABLED", *HEALTH_FUNCTIONS[1:])
    Args: ClassVar[type[FlrArgs]] = FlrArgs
    side: ClassVar[str] = "guest"
    expected_dmesg: ClassVar[tuple[str, ...]] = RECOVERY_DMESG
    expected_trace: ClassVar[tuple[str, ...]] = RECOVERY_TRACE
    variants: ClassVar[tuple[dict[str, str], ...]] = ({"fn": "1"}, {"fn": "0"})

    def perform(self, m: Machine, args: FlrArgs) -> None:
        fns = select_functions(args.fn, "forward", ports.functions(m))
        before, aborted = _counts(m, RECOVERED, fns), _counts(m, ABORTED, fns)
        for fn in fns:
            ports.sh(m, f"echo 1 > /sys/bus/pci/devices/{ports.bdf(m, fn)}/reset")
        recover_and_bring_up(m, fns, before, RECOVERED, 90, "the health recovery after the FLR",
                             aborted_before=aborted)


@dataclass(frozen=True)
class FwFatalArgs:
    synd: int = arg(1, "health syndrome (health.c: hsynd_str; 1 firmware internal error, 7 irisc not "
                       "responding, 8 unrecoverable hardware error, ...)", minimum=1)


@register_path
class FirmwareFatal(DriverPath):
    name: ClassVar[str] = "fw-fatal"
    summary: ClassVar[str] = "a firmware assert: every function recovers through the driver's firmware reset"
    trigger: ClassVar[str] = "mlx5lab control RUN fw_fatal synd=N"
    device: ClassVar[str] = ("health syndrome with rfr on the card (every function sees it); the firmware "
                             "halts until the driver writes nic_interface SW_RESET, then resets every "
                             "function and reads DISABLED")
    kernel_functions: ClassVar[tuple[str, ...]] = HEALTH_FUNCTIONS
    Args: ClassVar[type[FwFatalArgs]] = FwFatalArgs
    side: ClassVar[str] = "device"
    expected_dmesg: ClassVar[tuple[str, ...]] = RECOVERY_DMESG
    expected_trace: ClassVar[tuple[str, ...]] = RECOVERY_TRACE

    def perform(self, m: Machine, args: FwFatalArgs) -> None:
        fns = list(range(ports.functions(m)))
        before, aborted = _counts(m, RECOVERED, fns), _counts(m, ABORTED, fns)
        _control(m, "fw_fatal", synd=args.synd)
        recover_and_bring_up(m, fns, before, RECOVERED, 120, "the health recovery after a firmware assert",
                             aborted_before=aborted)


@dataclass(frozen=True)
class FwDeadArgs:
    seconds: float = arg(3.0, "how long every read returns all-ones before the firmware comes back, reset "
                              "(the driver waits up to its FW reset timeout, 60 s: health.c: "
                              "mlx5_health_wait_pci_up)")


@register_path
class FirmwareDead(DriverPath):
    name: ClassVar[str] = "fw-dead"
    summary: ClassVar[str] = "the card stops answering (all-ones reads), comes back reset; the driver recovers"
    trigger: ClassVar[str] = "mlx5lab control RUN fw_dead seconds=S"
    device: ClassVar[str] = ("every BAR0 read of every function returns 0xffffffff (the driver's 'PCI slot is "
                             "unavailable'); after S seconds the firmware is back, every function reset")
    kernel_functions: ClassVar[tuple[str, ...]] = ("health.c: poll_health: sensor PCI_COMM_ERR",
                                                   *HEALTH_FUNCTIONS[1:])
    Args: ClassVar[type[FwDeadArgs]] = FwDeadArgs
    side: ClassVar[str] = "device"
    expected_dmesg: ClassVar[tuple[str, ...]] = RECOVERY_DMESG
    expected_trace: ClassVar[tuple[str, ...]] = RECOVERY_TRACE

    def perform(self, m: Machine, args: FwDeadArgs) -> None:
        if not 0 < args.seconds <= 50:
            raise PathError("fw-dead: seconds must be in (0, 50] (the driver gives up after 60 s)")
        fns = list(range(ports.functions(m)))
        before, aborted = _counts(m, RECOVERED, fns), _counts(m, ABORTED, fns)
        _control(m, "fw_dead", seconds=args.seconds)
        recover_and_bring_up(m, fns, before, RECOVERED, 120 + args.seconds, "the recovery of a dead firmware",
                             aborted_before=aborted)


MISS = "device's health compromised - reached miss count"  # health.c: poll_health, MAX_MISSES


@dataclass(frozen=True)
class CounterArgs:
    seconds: float = arg(10.0, "how long the health counter stays frozen (the driver reports after 3 "
                               "polls, about 6 to 9 s)")


@register_path
class FrozenHealthCounter(DriverPath):
    name: ClassVar[str] = "health-counter-freeze"
    summary: ClassVar[str] = "the health counter stops: the driver reports a miss, the function stays up"
    trigger: ClassVar[str] = "mlx5lab control RUN freeze_health_counter frozen=true"
    device: ClassVar[str] = "health_counter (iseg 0x1010) reads the same value until unfrozen"
    kernel_functions: ClassVar[tuple[str, ...]] = (
        "health.c: poll_health: miss_counter reaches MAX_MISSES -> print_health_info, report_work "
        "(the fw reporter: not fatal)",)
    Args: ClassVar[type[CounterArgs]] = CounterArgs
    side: ClassVar[str] = "device"
    expected_dmesg: ClassVar[tuple[str, ...]] = (re.escape(MISS),)

    def perform(self, m: Machine, args: CounterArgs) -> None:
        fns = list(range(ports.functions(m)))
        before = _counts(m, MISS, fns)
        _control(m, "freeze_health_counter", frozen=True)
        try:
            wait_lines(m, MISS, [ports.bdf(m, fn) for fn in fns], before, max(args.seconds, 15),
                       "the miss report of a frozen health counter")
        finally:
            _control(m, "freeze_health_counter", frozen=False)
        # poll_health resets its miss counter only when it sees the counter move: until each function has
        # polled twice more, another freeze would continue the old miss count, which never equals
        # MAX_MISSES again, and the driver would not report it
        reads = {s["function"]: s["health_counter_reads"] for s in _status(m)}
        ports.wait_until(lambda: [f"{s['function']} has not polled its health counter twice yet"
                                  for s in _status(m) if s["health_counter_reads"] < reads[s["function"]] + 2],
                         15, "the health polls after the counter came back")
        ports.wait_ports(m, fns, what="after the health counter came back")


SYNC_RESET_DMESG = (
    # fw_reset.c: mlx5_sync_reset_request_event / mlx5_sync_reset_now_event: warnings by design
    r"mlx5_sync_reset_request_event:\d+:\(pid \d+\): PCI Sync FW Update Reset Ack",
    r"mlx5_sync_reset_now_event:\d+:\(pid \d+\): Sync Reset now",
    # fw_reset.c: mlx5_pci_link_toggle: QEMU's root port never reports the link as active again
    r"mlx5_pci_link_toggle:\d+:\(pid \d+\): PCI link not ready",
    r"mlx5_wait_for_pages:\d+:\(pid \d+\): Skipping wait for vf pages stage",
    # a command in flight when the card reset is never completed, as after any reset
    *RECOVERY_DMESG,
)


@register_path
class SyncReset(DriverPath):
    name: ClassVar[str] = "sync-reset"
    summary: ClassVar[str] = "a firmware-initiated sync reset: every function acks, tears down fast, reloads"
    trigger: ClassVar[str] = "mlx5lab control RUN sync_reset"
    device: ClassVar[str] = ("GENERAL_EVENT PCI_SYNC_FOR_FW_UPDATE REQUEST to every function, NOW once all "
                             "acked through MFRL; the card resets when every function disabled its NIC "
                             "interface (QEMU's root port ignores the driver's link toggle)")
    kernel_functions: ClassVar[tuple[str, ...]] = (
        "fw_reset.c: fw_reset_event_notifier -> mlx5_sync_reset_request_event -> "
        "mlx5_fw_reset_set_reset_sync_ack (MFRL)",
        "fw_reset.c: mlx5_sync_reset_now_event -> fw.c: mlx5_cmd_fast_teardown_hca -> mlx5_pci_link_toggle "
        "-> health.c: mlx5_enter_error_state -> mlx5_fw_reset_complete_reload -> main.c: mlx5_unload_one, "
        "mlx5_load_one",
    )
    side: ClassVar[str] = "device"
    expected_dmesg: ClassVar[tuple[str, ...]] = SYNC_RESET_DMESG
    expected_trace: ClassVar[tuple[str, ...]] = RECOVERY_TRACE

    def perform(self, m: Machine, args: object) -> None:
        fns = list(range(ports.functions(m)))
        before = _counts(m, RELOADED, fns)
        if not _control(m, "sync_reset"):
            raise PathError("the card refused to start a sync reset (one is under way, or sync_reset=false)")
        recover_and_bring_up(m, fns, before, RELOADED, 60, "the reload after a sync reset")


TIMEOUT_LINE = "Will cause a leak of a command resource"  # cmd.c: wait_func / cmd_work_handler
LATE_LINE = "Command completion arrived after timeout"  # cmd.c: mlx5_cmd_comp_handler


@dataclass(frozen=True)
class TimeoutArgs:
    fn: str = fn_arg("0", "the function whose command times out")
    mode: str = arg("hold", "hold: the completion arrives after the timeout; drop: it never does (the slot "
                            "leaks, as on hardware)", ("hold", "drop"))


@register_path
class CommandTimeout(DriverPath):
    name: ClassVar[str] = "cmd-timeout"
    summary: ClassVar[str] = "a command (PTYS of a speed read) times out; late or never completed"
    trigger: ClassVar[str] = ("mlx5lab control RUN add_fault function=F opcode=ACCESS_REG register=PTYS "
                              "hold=true count=1; cat /sys/class/net/IF/speed; mlx5lab control RUN release_held")
    device: ClassVar[str] = ("the card advertises its command timeout (iseg cmd_exec_to, DTOR; card setting "
                             "cmd_timeout_ms) and holds or drops one completion")
    kernel_functions: ClassVar[tuple[str, ...]] = (
        "cmd.c: cmd_exec -> wait_func -> wait_func_handle_exec_timeout -> mlx5_cmd_eq_recover",
        "cmd.c: mlx5_cmd_comp_handler (forced; then the late completion frees the leaked entry)",
        "lib/tout.c: mlx5_tout_query_iseg, mlx5_tout_query_dtor",
    )
    Args: ClassVar[type[TimeoutArgs]] = TimeoutArgs
    side: ClassVar[str] = "device"
    expected_dmesg: ClassVar[tuple[str, ...]] = (
        r"wait_func_handle_exec_timeout:\d+:\(pid \d+\): cmd\[\d+\]: ACCESS_REG\(0x805\) No done completion",
        r"wait_func:\d+:\(pid \d+\): ACCESS_REG\(0x805\) timeout\. Will cause a leak of a command resource",
        r"mlx5_cmd_comp_handler:\d+:\(pid \d+\): Command completion arrived after timeout",
        # en_ethtool.c: mlx5e_ethtool_get_link_ksettings, the speed read whose PTYS timed out
        r"mlx5e_ethtool_get_link_ksettings: query port ptys failed: -110\b",
    )
    variants: ClassVar[tuple[dict[str, str], ...]] = ({"mode": "hold"}, {"mode": "drop"})

    def perform(self, m: Machine, args: TimeoutArgs) -> None:
        assert m.card is not None
        timeout_ms = m.card.spec.cmd_timeout_ms
        if timeout_ms is None or timeout_ms > 10000:
            raise PathError(f"cmd-timeout needs a card with a short command timeout (cmd_timeout_ms is "
                            f"{timeout_ms}): boot with --card cmd_timeout_ms=2000")
        (fn,) = select_functions(args.fn, "forward", ports.functions(m))
        port = ports.port_of(m, fn)
        bdf = ports.bdf(m, fn)
        before = count_lines(m, TIMEOUT_LINE, bdf)
        _control(m, "add_fault", function=fn, opcode="ACCESS_REG", register="PTYS", count=1,
                 **({"hold": True} if args.mode == "hold" else {"drop": True}))
        t0 = time.monotonic()
        # head, not cat: busybox cat retries a failed sendfile with read, so a second PTYS would answer
        res = m.run(f"head -n1 /sys/class/net/{shlex.quote(port.ifname)}/speed", timeout=timeout_ms / 1000 + 30)
        waited = time.monotonic() - t0
        if res.status == 0 and res.stdout.strip() not in ("", "-1"):
            raise PathError(f"the speed read succeeded ({res.stdout.strip()}) though its PTYS was "
                            f"{args.mode}-ed")
        if count_lines(m, TIMEOUT_LINE, bdf) <= before:
            raise PathError(f"no command timeout in the kernel log after {waited:.1f} s")
        if args.mode == "hold":
            late = count_lines(m, LATE_LINE, bdf)
            _control(m, "release_held", function=fn)
            ports.wait_until(lambda: [] if count_lines(m, LATE_LINE, bdf) > late else ["no late completion"],
                             10, "the late completion")
        ports.wait_ports(m, [fn], what="after the command timeout")


PORT_CHANGE = "0x9"  # the event type in the card's events_posted (mlx5_ifc.h: MLX5_EVENT_TYPE_PORT_CHANGE)
# en_main.c: mlx5e_update_carrier queries the vport state when its work runs, not when the event came: a
# link that is back up by then never loses carrier, on hardware as here; shorter flaps are checked by the
# events the card posted
CARRIER_LOSS_MS = 1000


@dataclass(frozen=True)
class FlapArgs:
    fn: str = fn_arg("both", "the function(s) whose cable is pulled")
    down_ms: int = arg(1500, f"how long the link stays down (from {CARRIER_LOSS_MS} ms on, the carrier must "
                             "drop; shorter flaps may pass unseen by the driver, as on hardware)", minimum=0)


@register_path
class LinkFlap(DriverPath):
    name: ClassVar[str] = "link-flap"
    summary: ClassVar[str] = "the device takes the link down and up again; carrier and speed follow"
    trigger: ClassVar[str] = "mlx5lab control RUN flap_link function=F down_ms=MS"
    device: ClassVar[str] = "PORT_CHANGE DOWN, then ACTIVE (EQE on the async EQ)"
    kernel_functions: ClassVar[tuple[str, ...]] = (
        "events.c: forward_event -> en_main.c: async_event -> mlx5e_update_carrier_work -> "
        "mlx5e_update_carrier (QUERY_VPORT_STATE): netif_carrier_off / on",)
    Args: ClassVar[type[FlapArgs]] = FlapArgs
    side: ClassVar[str] = "device"
    variants: ClassVar[tuple[dict[str, str], ...]] = ({"fn": "both"}, {"fn": "1", "down_ms": "0"})

    def perform(self, m: Machine, args: FlapArgs) -> None:
        fns = select_functions(args.fn, "forward", ports.functions(m))
        function = None if args.fn == "both" else fns[0]

        def events() -> dict[int, int]:
            return {i: int(s["events_posted"].get(PORT_CHANGE, 0)) for i, s in enumerate(_status(m))}

        before = {fn: count_lines(m, "Link down", ports.bdf(m, fn)) for fn in fns}
        events_before = events()
        _control(m, "flap_link", function=function, down_ms=args.down_ms)
        ports.wait_until(lambda: [f"function {fn}: {n - events_before[fn]} of 2 port change events posted"
                                  for fn, n in events().items() if fn in fns and n < events_before[fn] + 2],
                         15 + args.down_ms / 1000, "the port change events")
        if args.down_ms >= CARRIER_LOSS_MS:
            ports.wait_until(lambda: [f"{ports.bdf(m, fn)}: no Link down yet" for fn in fns
                                      if count_lines(m, "Link down", ports.bdf(m, fn)) <= before[fn]],
                             15, "the carrier loss")
        ports.wait_ports(m, fns, timeout=30, what="after the link came back")


@dataclass(frozen=True)
class SpeedArgs:
    fn: str = fn_arg("0", "the function whose speed changes")
    mbps: int = arg(40000, "the new speed in Mb/s (one of the link modes PTYS knows)", minimum=1000)


@register_path
class SpeedChange(DriverPath):
    name: ClassVar[str] = "speed-change"
    summary: ClassVar[str] = "the device renegotiates another speed and back; sysfs speed follows"
    trigger: ClassVar[str] = "mlx5lab control RUN set_speed function=F mbps=N"
    device: ClassVar[str] = "PTYS eth_proto_oper changes; a PORT_CHANGE event"
    kernel_functions: ClassVar[tuple[str, ...]] = (
        "en_main.c: async_event -> mlx5e_update_carrier_work; net-sysfs.c: speed_show -> "
        "en_ethtool.c: mlx5e_get_link_ksettings (PTYS)",)
    Args: ClassVar[type[SpeedArgs]] = SpeedArgs
    side: ClassVar[str] = "device"

    def perform(self, m: Machine, args: SpeedArgs) -> None:
        assert m.card is not None
        (fn,) = select_functions(args.fn, "forward", ports.functions(m))
        configured = m.card.spec.functions[fn].speed_mbps
        for mbps in (args.mbps, configured):
            _control(m, "set_speed", function=fn, mbps=mbps)
            ports.wait_until(lambda mbps=mbps: [] if ports.port_of(m, fn).speed == str(mbps)
                             else [f"speed reads {ports.port_of(m, fn).speed}, want {mbps}"], 15,
                             f"the speed change to {mbps}")

"""Is the stock driver healthy after a path? Ports, device traces and kernel log, since a mark.

:func:`mark` notes where the path starts: a line ``MLX5LAB-PATH-<n>`` written to /dev/kmsg (the guest boots
with printk.devkmsg=on), the byte offset of each function's trace file, the console length and the QMP
event index. :func:`check_healthy` then looks only at what came after, so a fuzzer can run thousands of
paths in one boot and blame each problem on the path that caused it:

- ports: every function of the card has one mlx5 netdev, oper up, whose ``speed`` reads the configured
  value of its function (only when the path ends bound; otherwise the ports that exist must be so);
- traces: no unknown opcode (BAD_OP), no command answered with a status a real card would not give
  (injected faults, records with ``fault``, excluded; :data:`TRACE_STATUS_ALLOWED` for expected ones), no
  delivery error, no guest input the device refused;
- kernel log: no mlx5_core line matching :data:`DMESG_BAD` beyond :data:`DMESG_ALLOWED` (and, for a path
  that makes the driver report errors on purpose, its ``expected_dmesg``), no crash report, no panic.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlx5dev.mlx5.trace import format_record

from ..crash import crash_report
from ..vm.console import SSH_MARKER, count_markers
from ..vm.machine import Machine
from . import ports as guest_ports
from .registry import PathError

# dmesg lines from mlx5_core that are expected with this emulated card, each for a reason:
DMESG_ALLOWED = [
    # lib/pci_vsc.c: mlx5_pci_vsc_init, at every probe: no vendor-specific PCI capability (0x09) is
    # emulated, so crdump and the SW-reset semaphore are off
    r"mlx5_pci_vsc_init:\d+:\(pid \d+\): Failed to get valid vendor specific ID",
    # lib/clock.c: mlx5_init_clock, at every load: device_frequency_khz = 0 by design (no PTP hardware clock)
    r"mlx5_init_clock:\d+:\(pid \d+\): invalid device_frequency_khz, aborting HW clock init",
    # en/tc/post_act.c: mlx5e_tc_post_act_init, at every mlx5e init: no TC offload caps, the post-action
    # table is skipped
    r"mlx5e_tc_post_act_init:\d+:\(pid \d+\): firmware level support is missing",
]
MLX5_LINE = re.compile(r"\bmlx5_core[ :]")  # lines the driver printed (not the command line)
DMESG_BAD = re.compile(r"error|fail|warn|timeout|call trace|bug", re.IGNORECASE)

# Non-zero command statuses a real card gives and the driver expects on these paths, as
# (opcode name, status name, register name or None), each with the driver function that expects it.
# None found so far: every path runs on the emulated card with only status OK.
TRACE_STATUS_ALLOWED: list[tuple[str, str, str | None]] = []

# Guest input the card refuses (trace records of kind "reject") that a real card absorbs without a trace,
# each with the driver function that causes it and the context in which it is allowed:
REJECT_ALLOWED_AFTER_FAST_TEARDOWN = [
    # eq.c: mlx5_eq_async_int -> eq_update_ci arms its EQ (UAR page offset 0x40, eq.c: MLX5_EQ_DOORBEL_OFFSET).
    # The cmd, async and pages EQs share the control IRQ (eq.c: create_async_eqs; pci_irq.c: irq_int_handler
    # calls all three handlers), so the interrupt of the last command of a shutdown, TEARDOWN_HCA with
    # profile PREPARE_FAST_TEARDOWN (fw.c: mlx5_cmd_fast_teardown_hca from main.c: shutdown ->
    # mlx5_try_fast_unload), re-arms three EQs after the card has dropped its UARs. A real card ignores
    # these posted writes. Allowed only after such a teardown, with no other command after it until the
    # function is enabled again.
    r"write to BAR0 0x[0-9a-f]*040 \(page \d+ is not an allocated UAR\)",
]

MARKER = "MLX5LAB-PATH"
MAX_PROBLEMS = 20  # distinct problems kept per check (a broken device can fail every command)
_counter = itertools.count(1)


@dataclass(frozen=True)
class Mark:
    """Where a path started: the kernel-log marker, per-function trace offsets, console and QMP positions."""

    marker: str | None  # None: the guest could not be marked (then its whole log is checked)
    trace_offsets: tuple[int, ...]
    console_offset: int
    boot: int  # SSH-READY markers on the console so far: a higher count later means the guest rebooted
    event_index: int


def trace_end(path: Path) -> int:
    """Byte offset just after the last complete line of a trace file (0 if there is none)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    return data.rfind(b"\n") + 1


def mark(m: Machine) -> Mark:
    """Note where the next path starts; write the marker into the guest's kernel log."""
    marker = f"{MARKER}-{next(_counter)}"
    try:
        guest_ports.sh(m, f"echo {marker} > /dev/kmsg", timeout=30)
    except Exception:  # noqa: BLE001 - a dead guest is the health check's finding, not the mark's
        marker = None
    if m.card is None:
        raise PathError("the machine has no emulated card")
    offsets = tuple(trace_end(m.card.trace_file(i)) for i in range(len(m.card.spec.functions)))
    console = m.console_text()
    return Mark(marker, offsets, len(console), count_markers(console, SSH_MARKER),
                m.event_index() if m.qmp is not None else 0)


# -- traces ---------------------------------------------------------------------------------------------
def read_records(path: Path, offset: int = 0) -> list[dict[str, Any]]:
    """The complete records of a trace file from byte ``offset`` (a torn last line is left for later)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            if f.tell() < offset:
                offset = 0  # the file was started again
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return []
    records = []
    for line in data[: data.rfind(b"\n") + 1].splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            records.append({"kind": "unreadable", "detail": line[:200].decode(errors="replace")})
    return records


def _allowed(r: dict[str, Any]) -> bool:
    return (r.get("op"), r.get("status_name"), r.get("reg")) in TRACE_STATUS_ALLOWED


def _epoch_start(r: dict[str, Any]) -> bool:
    """A record after which the function starts from scratch (enabled again, or reset)."""
    return ((r.get("kind") == "cmd" and r.get("op") == "ENABLE_HCA")
            or (r.get("kind") == "info" and "reset" in str(r.get("detail", ""))))


def benign_rejects(records: list[dict[str, Any]]) -> set[int]:
    """Indices of reject records allowed by REJECT_ALLOWED_AFTER_FAST_TEARDOWN: in a span between two
    epoch starts that holds a fast teardown, the rejects after its last command other than TEARDOWN_HCA
    (the trace line of a command is written just after its interrupt, so a reject caused by that interrupt
    may come before it)."""
    allowed: set[int] = set()
    spans, start = [], 0
    for i, r in enumerate(records):
        if _epoch_start(r):
            spans.append((start, i))
            start = i + 1
    spans.append((start, len(records)))
    for lo, hi in spans:
        span = range(lo, hi)
        cmds = [i for i in span if records[i].get("kind") == "cmd"]
        fast = any(records[i].get("op") == "TEARDOWN_HCA" and "fast teardown" in str(records[i].get("detail"))
                   for i in cmds)
        if not fast:
            continue
        last_other = max((i for i in cmds if records[i].get("op") != "TEARDOWN_HCA"), default=lo - 1)
        allowed |= {i for i in span if i > last_other and records[i].get("kind") == "reject"
                    and any(re.search(p, str(records[i].get("detail", "")))
                            for p in REJECT_ALLOWED_AFTER_FAST_TEARDOWN)}
    return allowed


def trace_problems(records: Iterable[dict[str, Any]], expected: Iterable[str] = ()) -> list[str]:
    """Problems in command-trace records (see the module docstring); records matching an ``expected``
    regex (a path's expected_trace, against format_record's line) are none."""
    records = list(records)
    benign = benign_rejects(records)
    expected = tuple(expected)
    found: list[str] = []
    for i, r in enumerate(records):
        kind = r.get("kind")
        if expected and kind in ("cmd", "reject") and any(re.search(p, format_record(r)) for p in expected):
            continue
        if kind == "unreadable":
            found.append(f"unreadable trace line: {r['detail']}")
        elif kind == "reject" and i not in benign:
            found.append(f"the device refused guest input: {format_record(r)}")
        elif kind == "cmd" and not r.get("fault"):  # a fault was injected on purpose
            if r.get("status_name") == "BAD_OP":
                found.append(f"unknown opcode: {format_record(r)}")
            elif r.get("status") and not _allowed(r):
                found.append(f"command failed: {format_record(r)}")
            elif r.get("delivery"):
                found.append(f"command delivery error: {format_record(r)}")
    return _summarise(found)


def _summarise(found: list[str]) -> list[str]:
    """Distinct problems with a count, in order of first appearance, at most MAX_PROBLEMS."""
    counts = Counter(_strip_varying(p) for p in found)
    out, seen = [], set()
    for p in found:
        key = _strip_varying(p)
        if key in seen:
            continue
        seen.add(key)
        out.append(p if counts[key] == 1 else f"{p} (x{counts[key]})")
    if len(out) > MAX_PROBLEMS:
        out = [*out[:MAX_PROBLEMS], f"... and {len(out) - MAX_PROBLEMS} more distinct problems"]
    return out


def _strip_varying(problem: str) -> str:
    """A problem without its slot, latency and pid, so repeats of one problem count as one."""
    return re.sub(r"slot \d+|[\d.]+us|\(pid \d+\)|\[\s*\d+\.\d+\]", "", problem)


# -- kernel log -----------------------------------------------------------------------------------------
def mlx5_bad_lines(lines: Iterable[str], expected: Iterable[str] = ()) -> list[str]:
    """mlx5_core lines that look like errors and are neither on the allow-list nor ``expected`` (the
    path's own expected_dmesg)."""
    allowed = [*DMESG_ALLOWED, *expected]
    return [line for line in lines
            if MLX5_LINE.search(line) and DMESG_BAD.search(line)
            and not any(re.search(pat, line) for pat in allowed)]


def after_marker(text: str, marker: str | None) -> str | None:
    """The kernel log after ``marker``'s line (all of it when marker is None); None if the marker is absent."""
    if marker is None:
        return text
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].rstrip().endswith(f"] {marker}") or lines[i].strip() == marker:
            return "\n".join(lines[i + 1:])
    return None


def kernel_log_problems(text: str, marker: str | None, where: str = "dmesg",
                        expected: Iterable[str] = ()) -> list[str]:
    """mlx5_core error lines in a kernel log (dmesg or console) after ``marker``."""
    since = after_marker(text, marker)
    if since is None:
        return [f"{where}: marker {marker} not found (the log wrapped, or the marker was never written)"]
    return _summarise([f"{where}: {line.strip()}" for line in mlx5_bad_lines(since.splitlines(), expected)])


def shutdown_segment(console: str) -> str:
    """The console text up to the next boot's first kernel line (all of it if the guest did not boot again)."""
    m = re.search(r"^.*\] Linux version \d", console, re.MULTILINE)
    return console[: m.start()] if m else console


# -- the whole check -----------------------------------------------------------------------------------
def check_healthy(m: Machine, speeds: list[int], *, since: Mark | None, ends_bound: bool = True,
                  guest: bool = True, expected_dmesg: Iterable[str] = (),
                  expected_trace: Iterable[str] = ()) -> list[str]:
    """Problems after a path (empty: healthy). ``since``: its :func:`mark` (None: everything since boot).
    ``guest=False`` for a path after which the guest is gone (poweroff): traces and console only.
    ``expected_dmesg``, ``expected_trace``: what the path causes on purpose (registry.DriverPath)."""
    expected_dmesg = tuple(expected_dmesg)
    assert m.card is not None
    offsets = since.trace_offsets if since else (0,) * len(m.card.spec.functions)
    problems = [f"fn{i} trace: {p}" for i, offset in enumerate(offsets)
                for p in trace_problems(read_records(m.card.trace_file(i), offset), expected_trace)]
    if not m.card.alive():
        problems.append(f"the device server exited: {m.card.log_tail(5)}")
    console = m.console_text()[since.console_offset if since else 0:]
    report = crash_report(console)  # the console has every crash since the mark, of either boot
    if report is not None:
        problems.append(f"console: crash report: {report.title}")
    rebooted = since is not None and count_markers(m.console_text(), SSH_MARKER) > since.boot
    if rebooted or not guest:
        # the kernel log of the boot that ended is only on the console: its shutdown part
        problems += kernel_log_problems(shutdown_segment(console), None, "console", expected_dmesg)
    if not guest:
        return problems
    if m.qmp is not None and m.qmp.events.wait_for({"GUEST_PANICKED"}, timeout=0,
                                                   start=since.event_index if since else 0) is not None:
        return [*problems, "the guest panicked (QMP GUEST_PANICKED)"]
    if not m.alive():
        return [*problems, "QEMU is not running"]
    return problems + guest_problems(m, speeds, since, rebooted, ends_bound, expected_dmesg)


def guest_problems(m: Machine, speeds: list[int], since: Mark | None, rebooted: bool, ends_bound: bool,
                   expected_dmesg: tuple[str, ...] = ()) -> list[str]:
    """The running guest's side: its kernel log since the mark, and its ports."""
    assert m.card is not None
    problems = []
    # after a reboot the marker went with the old boot: the new boot's whole log is since the path
    marker = None if rebooted or since is None else since.marker
    if since is not None and since.marker is None and not rebooted:
        problems.append("the guest's kernel log could not be marked before the path; all of it is checked")
    problems += kernel_log_problems(guest_ports.sh(m, "dmesg", timeout=60), marker, "dmesg", expected_dmesg)
    ports = guest_ports.read_ports(m)
    want = range(len(m.card.spec.functions)) if ends_bound else sorted({p.function for p in ports})
    return problems + guest_ports.port_state_problems(ports, want, speeds)

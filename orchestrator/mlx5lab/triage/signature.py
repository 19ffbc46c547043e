"""Console triage: turn an oops text into a kind, a crashing task, frames, a title and a stable signature.

Titles follow syzkaller's style ("general protection fault in dma_pool_alloc"): the kind of report and the
first frame that is not generic crash, trap, locking or scheduling machinery. The signature hashes the kind
and the first few such frames (function names only, no offsets or addresses), so the same crash groups
together across iterations, boots (KASLR) and campaigns.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..vm.console import extract_oops

SIGNATURE_FRAMES = 4

_TS = re.compile(r"^\s*(?:<\d>)?\[\s*\d+\.\d+\]\s?")

# Report openers, most specific first: (regex on a line without its timestamp, kind or None = from group 1).
_KINDS: list[tuple[re.Pattern[str], str | None]] = [
    (re.compile(r"^BUG: kernel NULL pointer dereference"), "BUG: kernel NULL pointer dereference"),
    (re.compile(r"^BUG: unable to handle page fault"), "BUG: unable to handle page fault"),
    (re.compile(r"^BUG: unable to handle kernel (paging request|NULL pointer dereference)"), None),
    (re.compile(r"^general protection fault"), "general protection fault"),
    (re.compile(r"^kernel BUG at "), "kernel BUG"),
    (re.compile(r"^(?:watchdog: )?BUG: soft lockup"), "soft lockup"),
    (re.compile(r"^INFO: task .* blocked for more than"), "hung task"),
    (re.compile(r"^INFO: rcu_(?:sched|preempt) (?:self-)?detected stall"), "RCU stall"),
    (re.compile(r"^rcu: INFO: rcu_(?:sched|preempt) (?:self-)?detected stall"), "RCU stall"),
    (re.compile(r"^sysrq: Trigger a crash"), "deliberate crash from sysrq"),
    (re.compile(r"^Kernel panic - not syncing: sysrq triggered crash"), "deliberate crash from sysrq"),
    (re.compile(r"^Uhhuh\. NMI received for unknown reason"), "panic on NMI"),
    (re.compile(r"^Kernel panic - not syncing: NMI"), "panic on NMI"),
    (re.compile(r"^BUG: KASAN: ([\w-]+)"), "KASAN: {0}"),
    (re.compile(r"^BUG: ([^,:]+?)(?: in |,|:|$)"), "BUG: {0}"),
    (re.compile(r"^WARNING: (?:CPU: \d+ PID: \d+ at|.* at )"), "WARNING"),
    (re.compile(r"^Oops: "), "Oops"),
    (re.compile(r"^Kernel panic - not syncing"), "kernel panic"),
]
# Kinds that stop the machine on their own; a WARNING before one of them is context, not the crash.
_NON_FATAL = {"WARNING"}

_TASK = re.compile(r"CPU: (\d+) PID: (\d+) Comm: (.*?) (?:Not tainted|Tainted: ?([A-Z ]*?))\s+\d")
_RIP = re.compile(r"^RIP: (?:0010:)?([\w.$]+)\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[([\w-]+)[^\]]*\])?")
_FRAME = re.compile(r"^(\? )?([\w.$]+)\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[([\w-]+)[^\]]*\])?\s*$")
_SUFFIX = re.compile(r"(?:\.(?:cold|isra|constprop|part|llvm|lto_priv|localalias)(?:\.\d+)?)+$")
_PANIC = re.compile(r"^Kernel panic - not syncing: (.*)$")
_FAULT_ADDR = re.compile(r"(?:address: |non-canonical address )(0x)?([0-9a-f]{8,16})")
_WARN_AT = re.compile(r"^WARNING: CPU: \d+ PID: \d+ at (\S+) ([\w.$]+)\+0x")
_BUG_AT = re.compile(r"^kernel BUG at (\S+)!")
_SOFTLOCKUP = re.compile(r"soft lockup - CPU#(\d+) stuck for \d+s! \[(.*):(\d+)\]")
_HUNG = re.compile(r"^INFO: task (.*):(\d+) blocked for more than")

# Frames that say how the kernel crashed, not where: skipped when choosing the guilty function.
_GENERIC_EXACT = {
    "panic", "nmi_panic", "dump_stack", "dump_stack_lvl", "show_stack", "show_trace_log_lvl", "die", "die_addr",
    "__die", "__die_body", "oops_begin", "oops_end", "no_context", "page_fault_oops", "kernelmode_fixup_or_oops",
    "__bad_area_nosemaphore", "bad_area_nosemaphore", "bad_area", "do_user_addr_fault", "do_kern_addr_fault",
    "handle_page_fault", "fixup_exception", "do_trap", "do_error_trap", "handle_bug", "report_bug", "__warn",
    "warn_slowpath_fmt", "__warn_printk", "queued_spin_lock_slowpath", "native_queued_spin_lock_slowpath",
    "__x86_return_thunk", "do_syscall_64", "syscall_exit_to_user_mode", "exit_to_user_mode_prepare",
    "unknown_nmi_error", "default_do_nmi", "nmi_handle", "watchdog_timer_fn", "__hrtimer_run_queues",
    "hrtimer_interrupt", "__sysvec_apic_timer_interrupt", "sysvec_apic_timer_interrupt", "irq_exit_rcu",
    "__schedule", "schedule", "schedule_timeout", "schedule_preempt_disabled", "schedule_hrtimeout_range_clock",
    "io_schedule", "io_schedule_timeout", "preempt_schedule_common", "__cond_resched", "mutex_lock",
    "mutex_lock_interruptible", "mutex_lock_killable", "__mutex_lock", "__mutex_lock_slowpath", "down", "up",
    "down_read", "down_write", "rwsem_down_read_slowpath", "rwsem_down_write_slowpath", "check_hung_task",
    "check_hung_uninterruptible_tasks", "watchdog", "kthread", "ret_from_fork", "print_report", "kasan_report",
    "__kasan_check_read", "__kasan_check_write", "check_memory_region", "rcu_dump_cpu_stacks", "print_cpu_stall",
    "rcu_sched_clock_irq", "update_process_times", "tick_sched_timer", "tick_sched_handle", "end_repeat_nmi",
    # the idle loop: an NMI or a stall report that lands here says the CPU was idle, not where a bug is
    "native_safe_halt", "arch_safe_halt", "default_idle", "default_idle_call", "arch_cpu_idle", "cpuidle_idle_call",
    "do_idle", "cpu_startup_entry", "rest_init", "arch_call_rest_init", "start_kernel", "start_secondary",
}
_GENERIC_PREFIXES = (
    "exc_", "asm_exc_", "asm_sysvec_", "_raw_spin_lock", "_raw_spin_unlock", "_raw_read_lock", "_raw_write_lock",
    "entry_SYSCALL", "dump_stack", "wait_for_completion", "__wait_for_common", "wait_for_common", "__asan_",
    "kasan_", "__kasan_", "lockdep_", "lock_acquire", "lock_release", "sysvec_", "rcu_", "secondary_startup_64",
)


@dataclass(frozen=True)
class Frame:
    function: str
    module: str | None = None

    def __str__(self) -> str:
        return f"{self.function} [{self.module}]" if self.module else self.function


@dataclass
class OopsSignature:
    """What the console says about one crash."""

    kind: str
    title: str
    signature: str  # stable hash of kind + first non-generic frames
    guilty: str | None = None
    guilty_module: str | None = None
    first_line: str = ""
    task: dict[str, Any] | None = None  # {"comm", "pid", "cpu"} from the "CPU: N PID: N Comm: X" line
    rip: str | None = None
    frames: list[Frame] = field(default_factory=list)
    fault_address: str | None = None
    poisoned_address: bool = False
    panic_reason: str | None = None
    tainted: str | None = None
    location: str | None = None  # file:line from "kernel BUG at" / "WARNING: ... at"
    earlier_reports: list[str] = field(default_factory=list)  # e.g. WARNINGs before the fatal report

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["frames"] = [str(f) for f in self.frames]
        return data


def normalize_function(name: str) -> str:
    """``__handle_sysrq.cold`` -> ``__handle_sysrq``; ``foo.isra.0.constprop.1`` -> ``foo``."""
    return _SUFFIX.sub("", name)


def is_generic(function: str) -> bool:
    return function in _GENERIC_EXACT or function.startswith(_GENERIC_PREFIXES)


def strip_timestamp(line: str) -> str:
    return _TS.sub("", line, count=1).rstrip()


def _kind_of(line: str) -> str | None:
    for regex, kind in _KINDS:
        m = regex.search(line)
        if m:
            if kind is None:
                return "BUG: unable to handle page fault" if "paging" in m.group(1) else \
                    "BUG: kernel NULL pointer dereference"
            return kind.format(*m.groups()) if "{" in kind else kind
    return None


def _split_reports(lines: list[str]) -> list[tuple[str, list[str]]]:
    """Cut the oops lines into reports at each opener; "Kernel panic" lines stay with the report before them."""
    reports: list[tuple[str, list[str]]] = []
    for line in lines:
        kind = _kind_of(line)
        # "Kernel panic - not syncing" and "Oops: 0000 [#1]" end or continue the report before them.
        continues = bool(reports) and line.startswith(("Kernel panic", "Oops: "))
        if kind is not None and not continues:
            reports.append((kind, [line]))
        elif reports:
            reports[-1][1].append(line)
    return reports


def _frames(lines: list[str]) -> tuple[str | None, str | None, list[Frame]]:
    """(RIP function, its module, call-trace frames without unreliable ``?`` ones) of one report."""
    rip = rip_mod = None
    reliable: list[Frame] = []
    unreliable: list[Frame] = []
    in_trace = False
    for line in lines:
        s = line.strip()
        m = _RIP.match(s)
        if m and rip is None and not s.startswith("RIP: 0033:"):
            rip, rip_mod = normalize_function(m.group(1)), m.group(2)
            continue
        if s.startswith("Call Trace:"):
            if reliable:  # a second trace (e.g. the panic's own dump_stack) adds nothing
                break
            in_trace = True
            continue
        if not in_trace:
            continue
        fm = _FRAME.match(s)
        if fm:
            frame = Frame(normalize_function(fm.group(2)), fm.group(3))
            (unreliable if fm.group(1) else reliable).append(frame)
    return rip, rip_mod, (reliable or unreliable)


def _signature(kind: str, frames: list[Frame]) -> str:
    key = kind + "|" + "|".join(f.function for f in frames[:SIGNATURE_FRAMES])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def parse_oops(text: str) -> OopsSignature | None:
    """Parse an oops text (oops.txt, or any text that starts at a report line); None if it holds no report."""
    lines = [strip_timestamp(x) for x in text.splitlines()]
    reports = _split_reports(lines)
    if not reports:
        return None
    fatal = [r for r in reports if r[0] not in _NON_FATAL]
    kind, body = fatal[0] if fatal else reports[0]
    rip, rip_mod, trace = _frames(body)
    frames = list(trace)
    if rip and (not frames or frames[0].function != rip):
        frames.insert(0, Frame(rip, rip_mod))
    specific = [f for f in frames if not is_generic(f.function)]
    guilty = specific[0] if specific else None
    sig = OopsSignature(kind=kind, title="", signature=_signature(kind, specific or frames), first_line=body[0],
                        rip=str(Frame(rip, rip_mod)) if rip else None, frames=frames,
                        guilty=guilty.function if guilty else None, guilty_module=guilty.module if guilty else None,
                        earlier_reports=[r[1][0] for r in reports if r[1] is not body])
    _fill_details(sig, body)
    sig.title = f"{kind} in {sig.guilty}" if sig.guilty else kind
    return sig


def _fill_details(sig: OopsSignature, body: list[str]) -> None:
    for line in body:
        if sig.task is None and (m := _TASK.search(line)):
            sig.task = {"cpu": int(m.group(1)), "pid": int(m.group(2)), "comm": m.group(3).strip()}
            sig.tainted = " ".join((m.group(4) or "").split()) or None
        if sig.panic_reason is None and (m := _PANIC.match(line)):
            sig.panic_reason = m.group(1).strip()
        if sig.fault_address is None and (m := _FAULT_ADDR.search(line)):
            sig.fault_address = "0x" + m.group(2)
            sig.poisoned_address = m.group(2).lower().startswith("dead0000")
        if sig.location is None and (m := _BUG_AT.match(line) or _WARN_AT.match(line)):
            sig.location = m.group(1)
    first = body[0]
    # Reports whose own first line names the task that is stuck, rather than the one that printed.
    if (m := _HUNG.match(first)) is not None:
        sig.task = {"comm": m.group(1), "pid": int(m.group(2)), "cpu": None}
    elif (m := _SOFTLOCKUP.search(first)) is not None:
        sig.task = {"comm": m.group(2), "pid": int(m.group(3)), "cpu": int(m.group(1))}


def parse_console(text: str) -> OopsSignature | None:
    """Parse the last crash in a whole console log (or an oops text); None if there is none."""
    oops = extract_oops(text)
    return parse_oops(oops) if oops else None

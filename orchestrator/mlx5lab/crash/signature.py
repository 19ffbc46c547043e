"""Oops text -> kind, crashing task, frames, title and a stable signature, driven by :data:`.kinds.TABLE`.

Titles follow syzkaller's style ("general protection fault in dma_pool_alloc"): the kind text and the first
frame that is not generic crash, trap, locking or scheduling machinery (nor the reporting machinery of that
kind, the row's ``skip``). The signature hashes the kind text and the first few such frames (function
names only, no offsets or addresses), so the same crash groups together across iterations, boots (KASLR)
and campaigns.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .cut import extract_oops
from .kinds import TABLE, CrashKind, Rule, match_line, strip_timestamp

SIGNATURE_FRAMES = 4

_TASK = re.compile(r"CPU: (\d+) PID: (\d+) Comm: (.*?)(?: Kdump: loaded)? (?:Not tainted|Tainted: ?([A-Z ]*?))\s+\d")
_RIP = re.compile(r"^RIP: (?:0010:)?([\w.$]+)\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[([\w-]+)[^\]]*\])?")
_FRAME = re.compile(r"^(\? )?([\w.$]+)\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[([\w-]+)[^\]]*\])?\s*$")
# The end of the crashing stack: the task section is the outermost one on x86 (arch/x86/kernel/dumpstack.c:
# show_trace_log_lvl); KASAN's allocation and free stacks follow (mm/kasan/report.c: print_track).
_FREED = re.compile(r"^Freed by task \d+:")
_FREE_MACHINERY = ("kasan_", "__kasan_", "____kasan_", "kmem_cache_free", "__kmem_cache_free", "kfree",
                   "slab_free", "__slab_free", "do_slab_free", "qlist_", "quarantine_")
_TRACE_END = re.compile(r"^(?:</TASK>|(?:Allocated|Freed) by task \d+:)")
_SUFFIX = re.compile(r"(?:\.(?:cold|isra|constprop|part|llvm|lto_priv|localalias)(?:\.\d+)?)+$")
_PANIC = re.compile(r"^Kernel panic - not syncing: (.*)$")
_FAULT_ADDR = re.compile(r"(?:address: |non-canonical address |at addr )(0x)?([0-9a-f]{8,16})")
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
    # lib/nmi_backtrace.c: a stall or lockup report that dumps a CPU through an NMI (nmi_cpu_backtrace), and
    # kernel/watchdog_hld.c: the perf NMI that detects a hard lockup
    "nmi_cpu_backtrace", "nmi_cpu_backtrace_handler", "nmi_trigger_cpumask_backtrace",
    "arch_trigger_cpumask_backtrace", "watchdog_overflow_callback", "__perf_event_overflow",
    "perf_event_overflow", "handle_pmi_common", "intel_pmu_handle_irq", "perf_event_nmi_handler",
    "check_panic_on_warn",
    # lib/iomap.c: MMIO accessors; their caller is where the device was touched
    "ioread8", "ioread16", "ioread16be", "ioread32", "ioread32be", "iowrite8", "iowrite16", "iowrite16be",
    "iowrite32", "iowrite32be",
}
_GENERIC_PREFIXES = (
    "exc_", "asm_exc_", "asm_sysvec_", "_raw_spin_lock", "_raw_spin_unlock", "_raw_read_lock", "_raw_write_lock",
    "entry_SYSCALL", "dump_stack", "wait_for_completion", "__wait_for_common", "wait_for_common", "__asan_",
    "kasan_", "__kasan_", "lockdep_", "lock_acquire", "lock_release", "sysvec_", "rcu_", "secondary_startup_64",
    # CONFIG_PROVE_LOCKING (the debug kernel): lock_acquire's worker reads the lock's dep_map first
    # (kernel/locking/lockdep.c: __lock_acquire, __lock_release, hlock_class), and DEBUG_SPINLOCK, which it
    # selects, checks the lock's magic (kernel/locking/spinlock_debug.c: do_raw_spin_lock,
    # debug_spin_lock_before): a use-after-free of a lock's owner is reported there, not in its user.
    "__lock_acquire", "__lock_release", "hlock_class", "do_raw_spin_", "do_raw_read_", "do_raw_write_",
    "debug_spin_lock_",
)


@dataclass(frozen=True)
class Frame:
    function: str
    module: str | None = None

    def __str__(self) -> str:
        return f"{self.function} [{self.module}]" if self.module else self.function


@dataclass
class OopsSignature:
    """What the console says about one crash.

    ``kind`` is the kind text (``CrashKind`` value or the row's formatted text, e.g. ``KASAN:
    use-after-free``); ``crash_kind`` and ``is_panic`` are for Python callers and stay out of
    :meth:`to_json`, whose shape triage.json readers rely on.
    """

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
    # KASAN's "Freed by task N:" stack (mm/kasan/report.c: print_track), its own machinery left out:
    # who freed the object the report is about
    freed_by: list[Frame] = field(default_factory=list)
    # The crashing task's frames in the first module of its stack, innermost first: the way the task went
    # through the driver. Its last one is where the task entered the driver (its entry): one freed object is often
    # reached from several entries (a work item, an ethtool call), and a reproducer should keep the one
    # that was found.
    route: list[str] = field(default_factory=list)
    crash_kind: CrashKind = CrashKind.KERNEL_PANIC
    is_panic: bool = False  # a "Kernel panic - not syncing" line ends this crash

    @property
    def entry(self) -> str | None:
        """The outermost frame of :attr:`route`: where the crashing task entered the driver."""
        return self.route[-1] if self.route else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["crash_kind"], data["is_panic"]
        data["frames"] = [str(f) for f in self.frames]
        data["freed_by"] = [str(f) for f in self.freed_by]
        return data


def normalize_function(name: str) -> str:
    """``__handle_sysrq.cold`` -> ``__handle_sysrq``; ``foo.isra.0.constprop.1`` -> ``foo``."""
    return _SUFFIX.sub("", name)


def is_generic(function: str, skip: Sequence[str] = ()) -> bool:
    """Crash, trap, locking or scheduling machinery (plus ``skip``, a kind's reporting machinery)."""
    return function in _GENERIC_EXACT or function.startswith(_GENERIC_PREFIXES) or function.startswith(tuple(skip))


@dataclass
class _Report:
    """One report of an oops text: the row that opened it, its lines, and the rows that continued it."""

    rule: Rule
    match: re.Match[str]
    lines: list[str]
    rules: list[Rule]

    @property
    def fatal(self) -> bool:
        return any(r.fatal for r in self.rules)

    @property
    def panicked(self) -> bool:
        return any(r.panic for r in self.rules)


def _split_reports(lines: list[str], table: Sequence[Rule]) -> list[_Report]:
    """Cut the oops lines into reports at each opening line, unless its row continues the open report."""
    reports: list[_Report] = []
    for line in lines:
        hit = match_line(line, table)
        if hit is not None:
            rule, m = hit
            if reports and rule.continues(reports[-1].rule):
                reports[-1].lines.append(line)
                reports[-1].rules.append(rule)
                continue
            reports.append(_Report(rule, m, [line], [rule]))
        elif reports:
            reports[-1].lines.append(line)
    return reports


def _choose(reports: list[_Report]) -> tuple[int, int]:
    """(first, last) index of the crash: the first fatal report, with the same-kind reports right before it.

    Reports before a fatal one that do not stop the machine (a WARNING) are context. A report that is fatal
    only through a panic that names its kind (``hung_task: blocked tasks`` after the last of several hung
    tasks) is titled after the first of that run, as syzkaller does.
    """
    last = next((i for i, r in enumerate(reports) if r.fatal), None)
    if last is None:
        return 0, 0
    first = last
    if not reports[last].rule.fatal:
        while first > 0 and reports[first - 1].rule.kind is reports[last].rule.kind:
            first -= 1
    return first, last


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
        if _TRACE_END.match(s):
            if reliable or unreliable:
                in_trace = False
            continue
        fm = _FRAME.match(s)
        if fm:
            frame = Frame(normalize_function(fm.group(2)), fm.group(3))
            (unreliable if fm.group(1) else reliable).append(frame)
    return rip, rip_mod, (reliable or unreliable)


def _signature(kind: str, frames: list[Frame]) -> str:
    key = kind + "|" + "|".join(f.function for f in frames[:SIGNATURE_FRAMES])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _route(frames: list[Frame]) -> list[str]:
    """The frames of the first module among ``frames`` (the driver the crash came through, e.g. mlx5_core
    under a fault in dma_pool_alloc), innermost first; none for a stack of the core kernel only."""
    module = next((f.module for f in frames if f.module), None)
    return [f.function for f in frames if module is not None and f.module == module]


def _freed_by(body: list[str]) -> list[Frame]:
    """The frames under KASAN's "Freed by task N:" up to the next blank or section line, without the
    KASAN and slab functions that record the free (kasan_save_stack ... __kmem_cache_free)."""
    out: list[Frame] = []
    inside = False
    for line in body:
        s = line.strip()
        if _FREED.match(s):
            inside = True
            continue
        if not inside:
            continue
        fm = _FRAME.match(s)
        if fm is None:
            if out:
                break
            continue
        name = normalize_function(fm.group(2))
        if not fm.group(1) and not name.startswith(_FREE_MACHINERY):
            out.append(Frame(name, fm.group(3)))
    return out


def parse_oops(text: str, table: Sequence[Rule] = TABLE) -> OopsSignature | None:
    """Parse an oops text (oops.txt, or any text that starts at a report line); None if it holds no report."""
    lines = [strip_timestamp(x) for x in text.splitlines()]
    reports = _split_reports(lines, table)
    if not reports:
        return None
    first, last = _choose(reports)
    crash = reports[first]
    rule = crash.rule
    kind = rule.kind_text(crash.match)
    rip, rip_mod, trace = _frames(crash.lines)
    frames = list(trace)
    if rip and (not frames or frames[0].function != rip):
        frames.insert(0, Frame(rip, rip_mod))
    specific = [f for f in frames if not is_generic(f.function, rule.skip)]
    guilty = specific[0] if specific else None
    sig = OopsSignature(kind=kind, title=rule.title_of(kind, guilty.function if guilty else None),
                        signature=_signature(kind, specific or frames), first_line=crash.lines[0],
                        rip=str(Frame(rip, rip_mod)) if rip else None, frames=frames,
                        guilty=guilty.function if guilty else None, guilty_module=guilty.module if guilty else None,
                        earlier_reports=[r.lines[0] for r in reports if r is not crash], crash_kind=rule.kind,
                        is_panic=any(r.panicked for r in reports[first:last + 1]),
                        route=_route(specific))
    _fill_details(sig, crash.lines, [x for r in reports[first:last + 1] for x in r.lines])
    return sig


def _fill_details(sig: OopsSignature, body: list[str], run: list[str]) -> None:
    for line in body:
        if sig.task is None and (m := _TASK.search(line)):
            sig.task = {"cpu": int(m.group(1)), "pid": int(m.group(2)), "comm": m.group(3).strip()}
            sig.tainted = " ".join((m.group(4) or "").split()) or None
        if sig.fault_address is None and (m := _FAULT_ADDR.search(line)):
            sig.fault_address = "0x" + m.group(2)
            sig.poisoned_address = m.group(2).lower().startswith("dead0000")
        if sig.location is None and (m := _BUG_AT.match(line) or _WARN_AT.match(line)):
            sig.location = m.group(1)
    sig.panic_reason = next((m.group(1).strip() for line in run if (m := _PANIC.match(line))), None)
    sig.freed_by = _freed_by(body)
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

"""The crash kinds and the one table that recognises them, in the style of syzkaller's ``pkg/report`` oops table.

Each row of :data:`TABLE` is one opening line of a kernel report: its regexes (matched on a console line
without its timestamp), the kind it opens, how the kind text and the title are formed, whether it stops the
machine on its own, which lines continue it instead of opening a report of their own, and which functions
on a panicking stack (drgn, no console) identify it. The cutter (:mod:`.cut`), the parser
(:mod:`.signature`) and :func:`kind_from_stack` all read this table and nothing else, so a campaign and
``mlx5lab triage`` name the same crash the same way.

Row order matters twice, and the table satisfies both: a line takes the first row that matches it (so the
specific ``BUG: KASAN:`` comes before the generic ``BUG:``), and :func:`kind_from_stack` takes the first row
whose ``stack`` functions are on the stack (so a hard lockup's ``watchdog_overflow_callback`` wins over the
``nmi_panic`` it calls, and ``refcount_warn_saturate`` over the ``__warn`` it reaches).

Line formats are those of the Debian 6.1 kernels the guest runs; each row cites where the kernel prints it.
"""

from __future__ import annotations

import enum
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


class CrashKind(enum.Enum):
    """What kind of report a crash is; the value is the kind text used in titles.

    Kinds with a variable part (KASAN's bug type, the text after ``BUG:``, a panic's reason, the refcount_t
    event, the list operation, the SLUB message) keep a generic member here; their row's ``text`` rule forms
    the variable kind text (``KASAN: use-after-free``, ``kernel panic: Attempted to kill init!``).
    """

    SYSRQ = "deliberate crash from sysrq"
    HARD_LOCKUP = "hard lockup"
    NMI = "panic on NMI"
    SOFT_LOCKUP = "soft lockup"
    RCU_STALL = "RCU stall"
    HUNG_TASK = "hung task"
    KASAN = "KASAN"
    REFCOUNT = "refcount bug"
    LIST_CORRUPTION = "list corruption"
    WARNING = "WARNING"
    GPF = "general protection fault"
    NULL_DEREF = "BUG: kernel NULL pointer dereference"
    PAGE_FAULT = "BUG: unable to handle page fault"
    SLAB = "slab corruption"
    KERNEL_BUG = "kernel BUG"
    BUG = "BUG"
    OOPS = "Oops"
    KERNEL_PANIC = "kernel panic"


# "[    7.779451] ", "<4>[    7.779451] ", and with CONFIG_PRINTK_CALLER "[    7.779451][  T156] ".
_TS = re.compile(r"^\s*(?:<\d>)?\[\s*\d+\.\d+\](?:\[\s*[CT]\d+\])?\s?")


def strip_timestamp(line: str) -> str:
    """A console line as the table's regexes see it: without its printk timestamp, trailing space stripped."""
    return _TS.sub("", line, count=1).rstrip()


# The rest of a "Kernel panic - not syncing: <reason>" line (kernel/panic.c: panic).
PANIC_PREFIX = r"^Kernel panic - not syncing: "

_OFFSET = re.compile(r"\+0x[0-9a-fA-F]+/0x[0-9a-fA-F]+")
_KEY_NUMBER = re.compile(r"\S+=\S*\d\S*")
_NUMBER = re.compile(r"-?\b(?:0x[0-9a-fA-F]+|\d+)\b")
_EMPTY_BRACKETS = re.compile(r"\(\s*[,\s]*\)|\[\s*[,\s]*\]")
_SPACE_BEFORE_CLOSE = re.compile(r"\s+([)\]])")


def strip_numbers(text: str) -> str:
    """Drop what differs between two occurrences of one crash: offsets, ``key=0x..`` tokens, numbers.

    ``Attempted to kill init! exitcode=0x0000000b`` -> ``Attempted to kill init!``;
    ``VFS: Unable to mount root fs on unknown-block(0,0)`` -> ``VFS: Unable to mount root fs on unknown-block``.
    """
    text = _OFFSET.sub("", text)
    text = _KEY_NUMBER.sub("", text)
    text = _NUMBER.sub("", text)
    text = _EMPTY_BRACKETS.sub("", text)
    text = _SPACE_BEFORE_CLOSE.sub(r"\1", " ".join(text.split()))
    return text.rstrip(" ,:;-")


class _KindFormatter(string.Formatter):
    """``str.format`` plus the conversion ``!n``: the field with :func:`strip_numbers` applied."""

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion == "n":
            return strip_numbers(str(value))
        return super().convert_field(value, conversion)


_FORMATTER = _KindFormatter()


@dataclass(frozen=True)
class Rule:
    """One row of the table: one opening line of a report.

    ``text`` forms the kind text from the opener's named groups (``{type}``; ``{reason!n}`` strips numbers);
    ``title`` forms the title from it: ``{kind}`` is the kind text, ``{func}`` the guilty function, and a
    title whose ``{func}`` is unknown is the kind text alone.
    """

    kind: CrashKind
    opens: tuple[re.Pattern[str], ...]
    text: str = ""  # "" = the kind's value
    title: str = "{kind} in {func}"
    fatal: bool = False  # the report stops the machine (or kills the task) on its own; a WARNING does not
    panic: bool = False  # this line is a "Kernel panic - not syncing" line: the machine stops here
    panic_continues: bool = False  # a "Kernel panic" line that names no kind (tail rows) continues this report
    joins: frozenset[CrashKind] = frozenset()  # this line continues an open report of one of these kinds
    tail: bool = False  # this line continues any open report whose rule has panic_continues
    stack: frozenset[str] = frozenset()  # functions on a panicking stack that identify this kind (drgn)
    skip: tuple[str, ...] = ()  # frame prefixes that are this kind's reporting machinery, not its culprit

    def kind_text(self, match: re.Match[str]) -> str:
        groups = {k: v or "" for k, v in match.groupdict().items()}
        return _FORMATTER.format(self.text or self.kind.value, **groups).strip()

    def title_of(self, kind_text: str, func: str | None) -> str:
        if func is None and "{func}" in self.title:
            return kind_text
        return self.title.format(kind=kind_text, func=func)

    def continues(self, open_rule: Rule) -> bool:
        """Whether a line of this rule belongs to the report that ``open_rule`` opened."""
        return open_rule.kind in self.joins or (self.tail and open_rule.panic_continues)


def _rule(kind: CrashKind, *patterns: str, **columns: Any) -> Rule:
    for key in ("joins", "stack"):
        if key in columns:
            columns[key] = frozenset(columns[key])
    return Rule(kind, tuple(re.compile(p) for p in patterns), **columns)


def _panic(reason: str, kind: CrashKind, **columns: Any) -> Rule:
    """A "Kernel panic - not syncing: <reason>" row: always fatal, always a panic line."""
    return _rule(kind, PANIC_PREFIX + reason, fatal=True, panic=True, **columns)


_K = CrashKind
_WARN_AT = r"^WARNING: CPU: \d+ PID: \d+ at "
# The reporting machinery of a WARN (include/asm-generic/bug.h: __WARN_printf; kernel/panic.c: __warn).
_WARN_SKIP = ("__warn", "warn_slowpath", "report_bug", "handle_bug", "check_panic_on_warn")
_REFCOUNT_SKIP = ("refcount_warn_saturate", "__refcount_", "refcount_")
_LIST_SKIP = ("__list_add_valid", "__list_del_entry_valid", "__list_del_entry", "__list_add", "list_del",
              "list_add", "list_move", "list_replace")
# mm/kasan/report.c (kasan_report -> print_report) and the instrumentation that calls it.
_KASAN_SKIP = ("kasan_", "__kasan_", "__asan_", "print_report", "print_address_description", "check_region",
               "end_report", "memcpy", "memset", "memmove")
# mm/slub.c: the debug checks that end in slab_bug(), and the free/alloc entry points that run them.
_SLAB_SKIP = ("free_debug_processing", "free_to_partial_list", "free_consistency_checks", "on_freelist",
              "object_err", "slab_err", "print_trailer", "check_object", "check_bytes_and_report",
              "alloc_debug_processing", "___slab_alloc", "__slab_alloc", "__slab_free", "do_slab_free", "slab_free",
              "__kmem_cache_free", "kmem_cache_free", "kfree", "kmem_cache_alloc", "__kmalloc", "kmalloc")
# kernel/sched/core.c: __might_resched, __schedule_bug, and the might_sleep() annotations around them.
_BUG_SKIP = ("__might_resched", "__might_sleep", "__might_fault", "might_alloc", "__schedule_bug",
             "schedule_debug", "__cant_sleep", "__cant_migrate")

TABLE: tuple[Rule, ...] = (
    # drivers/tty/sysrq.c: __handle_sysrq prints the op's action_msg, then sysrq_handle_crash panics.
    _rule(_K.SYSRQ, r"^sysrq: Trigger a crash", fatal=True, panic_continues=True, stack={"sysrq_handle_crash"}),
    _panic(r"sysrq triggered crash", _K.SYSRQ, joins={_K.SYSRQ}),
    # kernel/watchdog_hld.c: watchdog_overflow_callback (pr_fmt "NMI watchdog: "), then nmi_panic(regs,
    # "Hard LOCKUP") with hardlockup_panic; before the NMI row, which shares nmi_panic.
    _rule(_K.HARD_LOCKUP, r"^NMI watchdog: Watchdog detected hard LOCKUP on cpu \d+",
          stack={"watchdog_overflow_callback"}),
    _panic(r"Hard LOCKUP", _K.HARD_LOCKUP, joins={_K.HARD_LOCKUP}),
    # arch/x86/kernel/nmi.c: unknown_nmi_error, then nmi_panic(regs, "NMI: Not continuing") with
    # unknown_nmi_panic (how the orchestrator breaks a hang); pci_serr_error / io_check_error panic alike.
    _rule(_K.NMI, r"^Uhhuh\. NMI received for unknown reason", stack={"unknown_nmi_error", "nmi_panic",
                                                                    "pci_serr_error", "io_check_error"}),
    _panic(r"NMI", _K.NMI, joins={_K.NMI}),
    # kernel/watchdog.c: watchdog_timer_fn (pr_fmt "watchdog: "); panic("softlockup: hung tasks").
    _rule(_K.SOFT_LOCKUP, r"^(?:watchdog: )?BUG: soft lockup - CPU#\d+ stuck", stack={"watchdog_timer_fn"}),
    _panic(r"softlockup: hung tasks", _K.SOFT_LOCKUP, joins={_K.SOFT_LOCKUP}),
    # kernel/rcu/tree_stall.h: print_other_cpu_stall ("INFO: %s detected stalls on CPUs/tasks:"),
    # print_cpu_stall ("INFO: %s self-detected stall on CPU"), pr_fmt "rcu: " since 5.1; and
    # panic_on_rcu_stall: panic("RCU Stall\n") with kernel.panic_on_rcu_stall=1.
    _rule(_K.RCU_STALL, r"^(?:rcu: )?INFO: rcu_(?:sched|preempt|bh) (?:self-)?detected (?:expedited )?stalls?",
          stack={"panic_on_rcu_stall", "print_other_cpu_stall", "print_cpu_stall", "check_cpu_stall"}),
    _panic(r"RCU Stall", _K.RCU_STALL, joins={_K.RCU_STALL}),
    # kernel/hung_task.c: check_hung_task; check_hung_uninterruptible_tasks panics after reporting them all.
    _rule(_K.HUNG_TASK, r"^INFO: task .+:\d+ blocked for more than \d+ seconds",
          stack={"check_hung_uninterruptible_tasks", "check_hung_task"}),
    _panic(r"hung_task: blocked tasks", _K.HUNG_TASK, joins={_K.HUNG_TASK}),
    # mm/kasan/report.c: print_error_description ("BUG: KASAN: %s in %pS"); end_report panics through
    # check_panic_on_warn("KASAN") or with kasan.fault=panic.
    _rule(_K.KASAN, r"^BUG: KASAN: (?P<type>.+?)(?: in |$)", text="KASAN: {type}", panic_continues=True,
          stack={"kasan_report", "end_report"}, skip=_KASAN_SKIP),
    _panic(r"KASAN: panic_on_warn set", _K.KASAN, joins={_K.KASAN}, skip=_KASAN_SKIP),
    _panic(r"kasan\.fault=panic set", _K.KASAN, joins={_K.KASAN}, skip=_KASAN_SKIP),
    # lib/refcount.c: refcount_warn_saturate, REFCOUNT_WARN(): WARN_ONCE(1, "refcount_t: <what>.\n"); the
    # message comes before the WARNING line (include/asm-generic/bug.h: __WARN_printf -> __warn_printk).
    _rule(_K.REFCOUNT, r"^refcount_t: (?P<what>[^;.]+)", text="refcount_t: {what}", stack={"refcount_warn_saturate"},
          skip=_REFCOUNT_SKIP + _WARN_SKIP),
    _rule(_K.REFCOUNT, _WARN_AT + r"lib/refcount\.c:\d+", joins={_K.REFCOUNT}, skip=_REFCOUNT_SKIP + _WARN_SKIP),
    # lib/list_debug.c: __list_add_valid, __list_del_entry_valid: CHECK_DATA_CORRUPTION (include/linux/bug.h)
    # pr_err()s the message then BUG()s with CONFIG_BUG_ON_DATA_CORRUPTION=y (Debian's config), else WARNs.
    _rule(_K.LIST_CORRUPTION, r"^(?P<op>list_(?:add|del)) (?:corruption|double add)", text="{op} corruption",
          panic_continues=True, stack={"__list_add_valid", "__list_del_entry_valid"}, skip=_LIST_SKIP + _WARN_SKIP),
    _rule(_K.LIST_CORRUPTION, r"^kernel BUG at lib/list_debug\.c:\d+!", fatal=True, panic_continues=True,
          joins={_K.LIST_CORRUPTION}, skip=_LIST_SKIP),
    _rule(_K.LIST_CORRUPTION, _WARN_AT + r"lib/list_debug\.c:\d+", joins={_K.LIST_CORRUPTION},
          skip=_LIST_SKIP + _WARN_SKIP),
    # kernel/panic.c: __warn ("WARNING: CPU: %d PID: %d at %s:%d %pS"); anchored on that shape so that an
    # unwinder's "WARNING: can't access registers at ..." (arch/x86/kernel/unwind_orc.c) opens nothing.
    _rule(_K.WARNING, _WARN_AT, r"^WARNING: at ", stack={"__warn"}, skip=_WARN_SKIP),
    # kernel/panic.c: check_panic_on_warn(origin): "<origin>: panic_on_warn set ..." / "... warned too often".
    _panic(r"(?:[\w ]+: )?(?:panic_on_warn set|system warned too often)", _K.KERNEL_PANIC,
           text="kernel panic: panic_on_warn set", title="{kind}",
           joins={_K.WARNING, _K.REFCOUNT, _K.LIST_CORRUPTION, _K.BUG, _K.SLAB}),
    # arch/x86/kernel/traps.c: exc_general_protection -> die_addr("general protection fault, ...").
    _rule(_K.GPF, r"^general protection fault", fatal=True, panic_continues=True,
          stack={"exc_general_protection", "asm_exc_general_protection"}),
    # arch/x86/mm/fault.c: show_fault_oops ("BUG: kernel NULL pointer dereference, address: %px" /
    # "BUG: unable to handle page fault for address: %px"); the older x86 and the arm64 wordings too.
    _rule(_K.NULL_DEREF, r"^BUG: kernel NULL pointer dereference", r"^BUG: unable to handle kernel NULL pointer",
          r"^Unable to handle kernel NULL pointer dereference", fatal=True, panic_continues=True),
    _rule(_K.PAGE_FAULT, r"^BUG: unable to handle page fault", r"^BUG: unable to handle kernel paging request",
          r"^Unable to handle kernel paging request", fatal=True, panic_continues=True,
          stack={"exc_page_fault", "asm_exc_page_fault"}),
    # mm/slub.c: slab_bug ("BUG %s (%s): %pV", cache name and print_tainted()), only with slub_debug.
    _rule(_K.SLAB, r"^BUG (?P<cache>[\w.:-]+) \((?:Not tainted|Tainted: [^)]*)\): (?P<what>[^.]+)",
          text="SLUB: {what!n}", panic_continues=True, skip=_SLAB_SKIP),
    # lib/bug.c: report_bug ("kernel BUG at %s:%u!"), from handle_bug on the BUG()'s ud2
    # (arch/x86/kernel/traps.c), which then dies with "invalid opcode".
    _rule(_K.KERNEL_BUG, r"^kernel BUG at ", fatal=True, panic_continues=True,
          stack={"handle_bug", "exc_invalid_op", "asm_exc_invalid_op"}),
    # Any other "BUG: <what>": kernel/sched/core.c: __schedule_bug ("BUG: scheduling while atomic: ..."),
    # __might_resched ("BUG: sleeping function called from invalid context at %s:%d"), mm/page_alloc.c:
    # bad_page ("BUG: Bad page state in process ..."), kernel/workqueue.c ("BUG: workqueue lockup - ...").
    _rule(_K.BUG, r"^BUG: (?P<what>[^,:]+?)(?: in | at | - |,|:|$)", text="BUG: {what!n}", panic_continues=True,
          stack={"__schedule_bug"}, skip=_BUG_SKIP),
    # arch/x86/kernel/dumpstack.c: __die_header ("%s: %04lx [#%d]"): "Oops" for a page fault, after the
    # show_fault_oops line; alone only when that line was lost.
    _rule(_K.OOPS, r"^Oops: ", fatal=True, panic_continues=True, tail=True),
    # Panics that open their own report: init/do_mounts.c (mount_block_root), init/main.c
    # (kernel_init), mm/oom_kill.c (out_of_memory, check_panic_on_oom).
    _panic(r"(?P<reason>VFS: Unable to mount root fs|No working init found|Requested init .* failed"
           r"|Out of memory.*|System is deadlocked on memory)", _K.KERNEL_PANIC, text="kernel panic: {reason!n}",
           title="{kind}"),
    # Every other reason, e.g. arch/x86/kernel/dumpstack.c: oops_end ("Fatal exception", "Fatal exception in
    # interrupt"), kernel/exit.c: do_exit ("Attempted to kill init! exitcode=0x%08x"), make_task_dead:
    # after an oops they continue its report; alone, the reason is the title.
    _panic(r"(?P<reason>.*)", _K.KERNEL_PANIC, text="kernel panic: {reason!n}", title="{kind}", tail=True),
)


def match_line(line: str, table: Sequence[Rule] = TABLE) -> tuple[Rule, re.Match[str]] | None:
    """The first row whose regex matches ``line`` (a console line without its timestamp), and the match."""
    for rule in table:
        for regex in rule.opens:
            m = regex.search(line)
            if m:
                return rule, m
    return None


def kind_from_stack(function_names: Iterable[str], table: Sequence[Rule] = TABLE) -> CrashKind:
    """The kind of crash as a panicking stack shows it (drgn, when the console has no report)."""
    names = set(function_names)
    for rule in table:
        if names & rule.stack:
            return rule.kind
    return CrashKind.KERNEL_PANIC


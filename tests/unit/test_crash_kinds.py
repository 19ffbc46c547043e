"""The crash-kind table (mlx5lab.crash): every kind has a console sample, and every sample gets its title.

Samples are in tests/data/oops/: ``<name>.console.log`` (a whole serial console), ``<name>.oops.txt`` (an
oops.txt as a campaign keeps it), ``<name>.printk.txt`` (a vmcore's printk buffer), each with
``<name>.title``. They go through :func:`crash_report` on the whole file, as a campaign's evidence does.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlx5lab.crash import TABLE, CrashKind, crash_report, extract_oops, kind_from_stack, parse_oops
from mlx5lab.crash.kinds import match_line, strip_numbers
from mlx5lab.triage.report import triage_iteration

DATA = Path(__file__).parent.parent / "data" / "oops"
SAMPLES = sorted(p for p in DATA.iterdir() if p.suffix != ".title")

# The kind each sample is a case of (a new sample must say which).
KIND_OF = {
    "bug-sleeping.console.log": CrashKind.BUG,
    "hard-lockup.console.log": CrashKind.HARD_LOCKUP,
    "hung-task-cmd.console.log": CrashKind.HUNG_TASK,
    "kasan-uaf.console.log": CrashKind.KASAN,
    "kernel-bug-slub.console.log": CrashKind.KERNEL_BUG,
    "kill-init.console.log": CrashKind.KERNEL_PANIC,
    "list-del-corruption.console.log": CrashKind.LIST_CORRUPTION,
    "nmi-hang.console.log": CrashKind.NMI,
    "nmi-panic.printk.txt": CrashKind.NMI,
    "null-deref.console.log": CrashKind.NULL_DEREF,
    "oops-truncated.oops.txt": CrashKind.OOPS,
    "page-fault-health.oops.txt": CrashKind.PAGE_FAULT,
    "rcu-self-stall.oops.txt": CrashKind.RCU_STALL,
    "rcu-stall-panic.console.log": CrashKind.RCU_STALL,
    "refcount-underflow.console.log": CrashKind.REFCOUNT,
    "slub-double-free.console.log": CrashKind.SLAB,
    "soft-lockup.console.log": CrashKind.SOFT_LOCKUP,
    "sysrq-crash.console.log": CrashKind.SYSRQ,
    "vulnerable-gpf.oops.txt": CrashKind.GPF,
    "vulnerable-reboot.console.log": CrashKind.GPF,
    "warning-mlx5.console.log": CrashKind.WARNING,
}
# Samples whose crash does not stop the machine: no "Kernel panic - not syncing" line ends them.
NOT_PANICS = {"bug-sleeping.console.log", "rcu-self-stall.oops.txt", "slub-double-free.console.log",
              "warning-mlx5.console.log"}
RCU_PANIC = DATA / "rcu-stall-panic.console.log"
WARNING = DATA / "warning-mlx5.console.log"
GPF_OOPS = DATA / "vulnerable-gpf.oops.txt"


def _title(sample: Path) -> str:
    return sample.with_name(sample.name.split(".")[0] + ".title").read_text().strip()


def test_every_kind_has_a_sample_and_a_row() -> None:
    assert sorted(p.name for p in SAMPLES) == sorted(KIND_OF), "each sample needs its kind in KIND_OF"
    without_sample = set(CrashKind) - set(KIND_OF.values())
    assert not without_sample, f"kinds with no sample in tests/data/oops: {sorted(k.name for k in without_sample)}"
    assert set(CrashKind) == {rule.kind for rule in TABLE}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_sample_gets_its_title_and_kind(sample: Path) -> None:
    report = crash_report(sample.read_text())
    assert report is not None
    assert report.title == _title(sample)
    assert report.kind is KIND_OF[sample.name]
    assert report.kind_text == report.detail.kind and report.title.startswith(report.kind_text)
    assert report.is_panic is (sample.name not in NOT_PANICS)
    assert ("Kernel panic - not syncing" in report.oops) is report.is_panic
    assert len(report.signature) == 16
    assert "Linux version" not in report.oops
    # what a campaign keeps as oops.txt gives the same report again
    again = crash_report(report.oops)
    assert again is not None and (again.title, again.signature) == (report.title, report.signature)


def test_rcu_stall_panic_has_one_title_in_the_campaign_and_in_triage(tmp_path: Path) -> None:
    report = crash_report(RCU_PANIC.read_text())
    assert report is not None and report.kind is CrashKind.RCU_STALL and report.is_panic
    assert report.title == "RCU stall in cmd_exec"  # the old cutter started at the panic line: "kernel panic"
    assert report.detail.panic_reason == "RCU Stall"
    assert report.detail.task == {"cpu": 1, "pid": 161, "comm": "mlx5-reader"}  # the stalled CPU, not CPU 0
    folder = tmp_path / "iter-0001"
    folder.mkdir()
    shutil.copy(RCU_PANIC, folder / "console.log")
    triaged = triage_iteration(folder, vmcore=False, write=False)
    assert (triaged.title, triaged.kind, triaged.signature) == (report.title, report.kind_text,
                                                                        report.signature)
    assert triaged.console_source == "console.log"
    # the campaign's oops.txt (report.oops) is preferred by triage and says the same
    (folder / "oops.txt").write_text(report.oops)
    again = triage_iteration(folder, vmcore=False, write=False)
    assert again.console_source == "oops.txt" and again.title == report.title


def test_a_warning_before_a_fatal_report_is_context() -> None:
    warning = extract_oops(WARNING.read_text())
    assert warning is not None
    report = crash_report(warning + GPF_OOPS.read_text())
    assert report is not None
    assert report.kind is CrashKind.GPF and report.title == "general protection fault in dma_pool_alloc"
    assert report.is_panic
    assert report.detail.earlier_reports[0].startswith("WARNING: CPU: 0 PID: 153 at drivers/net/ethernet/mellanox")
    assert report.oops.startswith("[    6.148220] ------------[ cut here ]")  # the cut keeps the context


def test_a_console_with_only_a_warning_is_a_report_but_not_a_panic() -> None:
    report = crash_report(WARNING.read_text())
    assert report is not None
    assert report.kind is CrashKind.WARNING and not report.is_panic
    assert report.detail.guilty_module == "mlx5_core"
    assert report.detail.location == "drivers/net/ethernet/mellanox/mlx5/core/pagealloc.c:727"


def test_panic_on_warn_makes_the_warning_the_crash() -> None:
    report = crash_report((DATA / "refcount-underflow.console.log").read_text())
    assert report is not None and report.kind is CrashKind.REFCOUNT and report.is_panic
    assert report.detail.panic_reason == "kernel: panic_on_warn set ..."
    assert report.detail.earlier_reports == []  # the message, WARNING and panic lines are one report


def test_several_hung_tasks_are_titled_after_the_first() -> None:
    report = crash_report((DATA / "hung-task-cmd.console.log").read_text())
    assert report is not None
    assert report.detail.task == {"comm": "reboot", "pid": 153, "cpu": None}
    assert report.detail.earlier_reports == ["INFO: task mlx5-reader:161 blocked for more than 120 seconds."]
    assert report.detail.panic_reason == "hung_task: blocked tasks" and report.is_panic


def test_list_corruption_message_and_bug_line_are_one_report() -> None:
    report = crash_report((DATA / "list-del-corruption.console.log").read_text())
    assert report is not None
    assert report.detail.first_line.startswith("list_del corruption, ")
    assert report.detail.location == "lib/list_debug.c:55" and report.detail.poisoned_address is False
    assert report.detail.rip == "__list_del_entry_valid"  # the RIP frame is the check, not the culprit
    assert report.detail.guilty == "dma_pool_destroy"


def test_kasan_keeps_the_accessing_stack_not_the_alloc_and_free_stacks() -> None:
    report = crash_report((DATA / "kasan-uaf.console.log").read_text())
    assert report is not None
    names = [f.function for f in report.detail.frames]
    assert "dma_pool_create" not in names and "mlx5lab_cmd_destroy_pool" not in names
    assert names[:6] == ["dump_stack_lvl", "print_report", "kasan_report", "kasan_check_range",
                         "_raw_spin_lock_irqsave", "dma_pool_alloc"]
    assert report.detail.fault_address == "0xffff8880073c0190"


def test_an_earlier_boots_crash_is_not_reported() -> None:
    crashed = (DATA / "vulnerable-reboot.console.log").read_text()
    clean_boot = ("[    0.000000] Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org) #1 SMP\n"
                  "MLX5LAB-INIT 2.29\nSSH-READY 3.95\n")
    assert crash_report(crashed) is not None
    assert crash_report(crashed + clean_boot) is None
    sysrq = (DATA / "sysrq-crash.console.log").read_text()
    report = crash_report(crashed + sysrq)
    assert report is not None and report.kind is CrashKind.SYSRQ
    assert "general protection fault" not in report.oops


@pytest.mark.parametrize(("line", "kind", "title"), [
    ("Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b", CrashKind.KERNEL_PANIC,
     "kernel panic: Attempted to kill init!"),
    ("Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)", CrashKind.KERNEL_PANIC,
     "kernel panic: VFS: Unable to mount root fs"),
    ("Kernel panic - not syncing: Out of memory and no killable processes...", CrashKind.KERNEL_PANIC,
     "kernel panic: Out of memory and no killable processes..."),
    ("Kernel panic - not syncing: Fatal exception", CrashKind.KERNEL_PANIC, "kernel panic: Fatal exception"),
    ("Kernel panic - not syncing: Fatal exception in interrupt", CrashKind.KERNEL_PANIC,
     "kernel panic: Fatal exception in interrupt"),
    ("Kernel panic - not syncing: kernel: panic_on_warn set ...", CrashKind.KERNEL_PANIC,
     "kernel panic: panic_on_warn set"),
    ("Kernel panic - not syncing: hung_task: blocked tasks", CrashKind.HUNG_TASK, "hung task"),
    ("Kernel panic - not syncing: softlockup: hung tasks", CrashKind.SOFT_LOCKUP, "soft lockup"),
    ("Kernel panic - not syncing: Hard LOCKUP", CrashKind.HARD_LOCKUP, "hard lockup"),
    ("Kernel panic - not syncing: RCU Stall", CrashKind.RCU_STALL, "RCU stall"),
    ("Kernel panic - not syncing: NMI: Not continuing", CrashKind.NMI, "panic on NMI"),
    ("Kernel panic - not syncing: sysrq triggered crash", CrashKind.SYSRQ, "deliberate crash from sysrq"),
    ("BUG: scheduling while atomic: swapper/0/0/0x00000002", CrashKind.BUG, "BUG: scheduling while atomic"),
    ("BUG: workqueue lockup - pool cpus=0 node=0 flags=0x0 nice=0 stuck for 41s!", CrashKind.BUG,
     "BUG: workqueue lockup"),
    ("BUG: KASAN: slab-out-of-bounds in mlx5_cmd_out_err+0x1b/0x2d0 [mlx5_core]", CrashKind.KASAN,
     "KASAN: slab-out-of-bounds"),
    ("BUG: KASAN: double-free or invalid-free in kfree+0x7b/0x120", CrashKind.KASAN,
     "KASAN: double-free or invalid-free"),
    ("list_add corruption. next->prev should be prev (ffff8880073c01d8), but was 0000000000000000. "
     "(next=ffff8880073c0298).", CrashKind.LIST_CORRUPTION, "list_add corruption"),
    ("refcount_t: addition on 0; use-after-free.", CrashKind.REFCOUNT, "refcount_t: addition on 0"),
    ("BUG kmalloc-64 (Not tainted): Poison overwritten", CrashKind.SLAB, "SLUB: Poison overwritten"),
    ("INFO: rcu_sched detected stalls on CPUs/tasks:", CrashKind.RCU_STALL, "RCU stall"),
    ("rcu: INFO: rcu_preempt self-detected stall on CPU", CrashKind.RCU_STALL, "RCU stall"),
    ("BUG: unable to handle kernel paging request at ffffc90000c40810", CrashKind.PAGE_FAULT,
     "BUG: unable to handle page fault"),
])
def test_a_lone_opening_line(line: str, kind: CrashKind, title: str) -> None:
    report = crash_report(f"[   12.000001] {line}\n")
    assert report is not None
    assert report.kind is kind and report.title == title


def test_a_warning_then_an_unrelated_panic_is_the_panic() -> None:
    warning = extract_oops(WARNING.read_text())
    assert warning is not None
    report = crash_report(warning + "[    6.900001] Kernel panic - not syncing: Attempted to kill init! "
                                    "exitcode=0x00000100\n")
    assert report is not None
    assert report.kind is CrashKind.KERNEL_PANIC and report.title == "kernel panic: Attempted to kill init!"
    assert report.detail.earlier_reports[0].startswith("WARNING: CPU: 0 PID: 153")


def test_lines_that_look_like_openers_but_are_not() -> None:
    for line in ("WARNING: can't access registers at asm_exc_page_fault+0x26/0x30",
                 "NMI watchdog: Enabled. Permanently consumes one hw-PMU counter.",
                 "rcu: Hierarchical RCU implementation.", "INFO: lockdep is turned off."):
        assert match_line(line) is None, line
    assert parse_oops("[    1.0] hello\n") is None


@pytest.mark.parametrize(("names", "kind"), [
    (["panic", "sysrq_handle_crash", "__handle_sysrq"], CrashKind.SYSRQ),
    (["panic", "nmi_panic", "watchdog_overflow_callback", "__perf_event_overflow"], CrashKind.HARD_LOCKUP),
    (["panic", "nmi_panic", "unknown_nmi_error", "default_do_nmi"], CrashKind.NMI),
    (["panic", "watchdog_timer_fn", "__hrtimer_run_queues"], CrashKind.SOFT_LOCKUP),
    (["panic", "panic_on_rcu_stall", "rcu_sched_clock_irq"], CrashKind.RCU_STALL),
    (["panic", "check_hung_uninterruptible_tasks", "watchdog", "kthread"], CrashKind.HUNG_TASK),
    (["panic", "check_panic_on_warn", "end_report", "kasan_report", "dma_pool_alloc"], CrashKind.KASAN),
    (["panic", "check_panic_on_warn", "__warn", "report_bug", "handle_bug", "refcount_warn_saturate"],
     CrashKind.REFCOUNT),
    (["panic", "oops_end", "die", "do_trap", "handle_bug", "__list_del_entry_valid", "dma_pool_destroy"],
     CrashKind.LIST_CORRUPTION),
    (["panic", "check_panic_on_warn", "__warn", "report_bug", "handle_bug", "exc_invalid_op"], CrashKind.WARNING),
    (["panic", "oops_end", "die_addr", "exc_general_protection", "asm_exc_general_protection"], CrashKind.GPF),
    (["panic", "oops_end", "page_fault_oops", "exc_page_fault"], CrashKind.PAGE_FAULT),
    (["panic", "oops_end", "die", "do_trap", "handle_bug", "exc_invalid_op", "__kmem_cache_free"],
     CrashKind.KERNEL_BUG),
    (["panic", "check_panic_on_warn", "__schedule_bug", "__schedule"], CrashKind.BUG),
    (["panic", "do_exit", "do_group_exit"], CrashKind.KERNEL_PANIC),
    ([], CrashKind.KERNEL_PANIC),
])
def test_kind_from_stack(names: list[str], kind: CrashKind) -> None:
    assert kind_from_stack(names) is kind


@pytest.mark.parametrize(("raw", "clean"), [
    ("Attempted to kill init! exitcode=0x00000100", "Attempted to kill init!"),
    ("VFS: Unable to mount root fs on unknown-block(0,0)", "VFS: Unable to mount root fs on unknown-block"),
    ("Requested init /init failed (error -2).", "Requested init /init failed (error)."),
    ("stack-protector: Kernel stack is corrupted in: mlx5_cmd_exec+0x1b/0x30", "stack-protector: Kernel stack is "
                                                                               "corrupted in: mlx5_cmd_exec"),
    ("Fatal exception", "Fatal exception"),
])
def test_strip_numbers(raw: str, clean: str) -> None:
    assert strip_numbers(raw) == clean


def test_kasan_on_a_lockdep_kernel_is_titled_by_the_locks_user() -> None:
    # On the debug kernel (CONFIG_PROVE_LOCKING, DEBUG_SPINLOCK) the first touch of a freed lock is in
    # lockdep or the spinlock debug checks; the title names the function that took the lock.
    text = (DATA / "kasan-uaf.console.log").read_text()
    for frame in ("__lock_acquire", "do_raw_spin_lock"):
        lockdep = text.replace("use-after-free in _raw_spin_lock_irqsave+0x8b/0xf0",
                               f"use-after-free in {frame}+0x4e/0x1c0")
        lockdep = lockdep.replace("  _raw_spin_lock_irqsave+0x8b/0xf0\n",
                                  f"  {frame}+0x4e/0x1c0\n  lock_acquire+0x1a0/0x2f0\n"
                                  "  _raw_spin_lock_irqsave+0x8b/0xf0\n", 1)
        assert lockdep != text
        report = crash_report(lockdep)
        assert report is not None
        assert frame in [f.function for f in report.detail.frames]
        assert report.title == "KASAN: use-after-free in dma_pool_alloc"

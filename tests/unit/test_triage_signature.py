"""Console triage (mlx5lab.crash): oops text -> kind, task, frames, title, signature, on real and sample oopses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlx5lab.crash import CrashKind, is_generic, normalize_function, parse_console, parse_oops
from mlx5lab.triage.verdict import console_verdict

DATA = Path(__file__).parent.parent / "data" / "oops"
SYSRQ = DATA / "sysrq-crash.console.log"
VULN_OOPS = DATA / "vulnerable-gpf.oops.txt"  # oops.txt of a positive-control iteration (real)
NMI = DATA / "nmi-panic.printk.txt"  # from the printk buffer of a vmcore: NMI output never reaches the console
VULN_CONSOLE = DATA / "vulnerable-reboot.console.log"  # added by the campaign work; used when present


def test_sysrq_console_log() -> None:
    sig = parse_console(SYSRQ.read_text())
    assert sig is not None
    assert sig.kind == "deliberate crash from sysrq" and sig.crash_kind is CrashKind.SYSRQ
    assert sig.title == "deliberate crash from sysrq in sysrq_handle_crash"
    assert sig.task == {"cpu": 1, "pid": 119, "comm": "sh"}
    assert sig.panic_reason == "sysrq triggered crash"
    names = [f.function for f in sig.frames]
    assert names[:5] == ["dump_stack_lvl", "panic", "sysrq_handle_crash", "__handle_sysrq", "write_sysrq_trigger"]
    assert "_printk" not in names  # "? " frames are dropped
    assert all("+0x" not in n and not n.endswith(".cold") for n in names)
    assert console_verdict(sig).endswith("not an mlx5 race.")


def test_positive_control_gpf() -> None:
    sig = parse_oops(VULN_OOPS.read_text())
    assert sig is not None
    assert sig.kind == "general protection fault" and sig.crash_kind is CrashKind.GPF and sig.is_panic
    assert sig.title == "general protection fault in dma_pool_alloc"
    assert sig.guilty == "dma_pool_alloc" and sig.guilty_module is None
    assert sig.task == {"cpu": 0, "pid": 156, "comm": "mlx5-reader"}
    assert sig.tainted == "G OE"
    assert sig.rip == "_raw_spin_lock_irqsave"
    assert sig.fault_address == "0xdead000000006b10" and sig.poisoned_address
    frames = [str(f) for f in sig.frames]
    assert frames[:4] == ["_raw_spin_lock_irqsave", "dma_pool_alloc", "mlx5_alloc_cmd_msg [mlx5_core]",
                          "cmd_exec [mlx5_core]"]
    assert "speed_show" in frames and "exit_to_user_mode_prepare" not in frames
    assert frames.count("mlx5_access_reg [mlx5_core]") == 1  # the "? mlx5_access_reg" copy is gone
    verdict = console_verdict(sig)
    assert verdict.startswith("likely use-after-free of an mlx5 command dma_pool")
    assert "speed_show -> mlx5e_ethtool_get_link_ksettings" in verdict


def _reboot_again(text: str) -> str:
    """The same crash as another boot would print it: other timestamps, addresses, pid, CPU and offsets."""
    text = re.sub(r"\[\s*\d+\.\d+\]", "[   42.000001]", text)
    text = re.sub(r"ffff[0-9a-f]{12}", "ffff888012345678", text)
    text = re.sub(r"\+0x[0-9a-f]+/0x", "+0x11/0x", text)
    return text.replace("PID: 156", "PID: 999").replace("CPU: 0 ", "CPU: 1 ")


def test_signature_is_stable_across_boots_and_differs_across_crashes() -> None:
    a = parse_oops(VULN_OOPS.read_text())
    b = parse_oops(_reboot_again(VULN_OOPS.read_text()))
    c = parse_console(SYSRQ.read_text())
    assert a is not None and b is not None and c is not None
    assert a.signature == b.signature and len(a.signature) == 16
    assert b.task == {"cpu": 1, "pid": 999, "comm": "mlx5-reader"}
    assert a.signature != c.signature


def test_nmi_panic_from_the_vmcore_log() -> None:
    sig = parse_oops(NMI.read_text())
    assert sig is not None
    assert sig.kind == "panic on NMI" and sig.crash_kind is CrashKind.NMI
    assert sig.title == "panic on NMI"  # the CPU was idle: no non-generic frame
    assert sig.task == {"cpu": 0, "pid": 0, "comm": "swapper/0"}
    assert sig.rip == "native_safe_halt"


@pytest.mark.skipif(not VULN_CONSOLE.exists(), reason="vulnerable-reboot.console.log not captured yet")
def test_positive_control_console_log() -> None:
    sig = parse_console(VULN_CONSOLE.read_text())
    assert sig is not None
    assert sig.title == "general protection fault in dma_pool_alloc"
    assert any(f.module == "mlx5_core" for f in sig.frames)


# Shapes of 6.1 reports the guest cannot be made to print on demand (no lkdtm in the image); each keeps the
# lines the parser reads, in the kernel's own format.
NULL_DEREF = """\
[   12.345678] BUG: kernel NULL pointer dereference, address: 0000000000000008
[   12.345679] #PF: supervisor read access in kernel mode
[   12.345680] #PF: error_code(0x0000) - not-present page
[   12.345681] PGD 0 P4D 0
[   12.345682] Oops: 0000 [#1] PREEMPT SMP NOPTI
[   12.345683] CPU: 1 PID: 321 Comm: kworker/1:2 Tainted: G           OE      6.1.0-56-amd64 #1  Debian 6.1.192-2
[   12.345684] Workqueue: mlx5_health0000:01:00.0 mlx5_fw_fatal_reporter_err_work [mlx5_core]
[   12.345685] RIP: 0010:mlx5_health_report.isra.0+0x1c/0x90 [mlx5_core]
[   12.345686] Call Trace:
[   12.345687]  <TASK>
[   12.345688]  ? __die+0x23/0x70
[   12.345689]  ? page_fault_oops+0x17d/0x4c0
[   12.345690]  ? exc_page_fault+0x7f/0x180
[   12.345691]  ? asm_exc_page_fault+0x26/0x30
[   12.345692]  mlx5_fw_fatal_reporter_err_work+0x4b/0x80 [mlx5_core]
[   12.345693]  process_one_work+0x1c7/0x380
[   12.345694]  worker_thread+0x4d/0x380
[   12.345695]  kthread+0xd7/0x100
[   12.345696]  ret_from_fork+0x22/0x30
[   12.345697]  </TASK>
[   12.345698] Kernel panic - not syncing: Fatal exception
"""

WARN_LINE = ("[    8.000001] WARNING: CPU: 0 PID: 150 at drivers/net/ethernet/mellanox/mlx5/core/cmd.c:1100 "
             "cmd_work_handler+0x2f1/0x3a0 [mlx5_core]\n")
WARN_THEN_BUG = WARN_LINE + """\
[    8.000002] CPU: 0 PID: 150 Comm: reboot Tainted: G           OE      6.1.0-56-amd64 #1  Debian 6.1.192-2
[    8.000003] RIP: 0010:cmd_work_handler+0x2f1/0x3a0 [mlx5_core]
[    8.000004] Call Trace:
[    8.000005]  <TASK>
[    8.000006]  process_one_work+0x1c7/0x380
[    8.000007]  </TASK>
[    8.000008] ---[ end trace 0000000000000000 ]---
[    8.100001] kernel BUG at mm/slub.c:379!
[    8.100002] invalid opcode: 0000 [#2] PREEMPT SMP NOPTI
[    8.100003] CPU: 1 PID: 160 Comm: mlx5-reader Tainted: G      D    OE      6.1.0-56-amd64 #1  Debian 6.1.192-2
[    8.100004] RIP: 0010:__slab_free+0x2a1/0x2b0
[    8.100005] Call Trace:
[    8.100006]  <TASK>
[    8.100007]  ? die+0x36/0x90
[    8.100008]  ? do_trap+0xda/0x100
[    8.100009]  kfree+0x1c3/0x1e0
[    8.100010]  mlx5_free_cmd_msg+0x3e/0x70 [mlx5_core]
[    8.100011]  cmd_exec+0x5d2/0x890 [mlx5_core]
[    8.100012]  </TASK>
[    8.100013] Kernel panic - not syncing: Fatal exception
"""

SOFT_LOCKUP = """\
[   60.000001] watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [mlx5-reader:161]
[   60.000002] CPU: 1 PID: 161 Comm: mlx5-reader Tainted: G           OE      6.1.0-56-amd64 #1  Debian 6.1.192-2
[   60.000003] RIP: 0010:cmd_exec+0x3f0/0x890 [mlx5_core]
[   60.000004] Call Trace:
[   60.000005]  <TASK>
[   60.000006]  mlx5_cmd_do+0x1e/0x40 [mlx5_core]
[   60.000007]  mlx5_access_reg+0xf0/0x160 [mlx5_core]
[   60.000008]  </TASK>
[   60.000009] Kernel panic - not syncing: softlockup: hung tasks
"""

HUNG_TASK = """\
[  243.000001] INFO: task reboot:153 blocked for more than 120 seconds.
[  243.000002]       Tainted: G           OE      6.1.0-56-amd64 #1 Debian 6.1.192-2
[  243.000003] "echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.
[  243.000004] task:reboot          state:D stack:0     pid:153   ppid:1      flags:0x00004000
[  243.000005] Call Trace:
[  243.000006]  <TASK>
[  243.000007]  __schedule+0x34d/0x9e0
[  243.000008]  schedule+0x5a/0xd0
[  243.000009]  schedule_timeout+0x118/0x150
[  243.000010]  wait_for_completion_timeout+0x7a/0x140
[  243.000011]  cmd_exec+0x71c/0x890 [mlx5_core]
[  243.000012]  mlx5_cmd_do+0x1e/0x40 [mlx5_core]
[  243.000013]  </TASK>
[  243.000014] Kernel panic - not syncing: hung_task: blocked tasks
"""

PAGE_FAULT = """\
[    9.000001] BUG: unable to handle page fault for address: ffffc90000abc000
[    9.000002] #PF: supervisor write access in kernel mode
[    9.000003] Oops: 0002 [#1] PREEMPT SMP NOPTI
[    9.000004] CPU: 0 PID: 1 Comm: init Not tainted 6.1.0-56-amd64 #1  Debian 6.1.192-2
[    9.000005] RIP: 0010:memset_orig+0x33/0xb0
[    9.000006] Call Trace:
[    9.000007]  <TASK>
[    9.000008]  mlx5_alloc_cmd_msg.constprop.0+0x100/0x1d0 [mlx5_core]
[    9.000009]  </TASK>
"""


@pytest.mark.parametrize(("text", "kind", "title", "task"), [
    (NULL_DEREF, "BUG: kernel NULL pointer dereference",
     "BUG: kernel NULL pointer dereference in mlx5_health_report", ("kworker/1:2", 321, 1)),
    (WARN_THEN_BUG, "kernel BUG", "kernel BUG in __slab_free", ("mlx5-reader", 160, 1)),
    (SOFT_LOCKUP, "soft lockup", "soft lockup in cmd_exec", ("mlx5-reader", 161, 1)),
    (HUNG_TASK, "hung task", "hung task in cmd_exec", ("reboot", 153, None)),
    (PAGE_FAULT, "BUG: unable to handle page fault", "BUG: unable to handle page fault in memset_orig",
     ("init", 1, 0)),
])
def test_report_kinds(text: str, kind: str, title: str, task: tuple[str, int, int | None]) -> None:
    sig = parse_oops(text)
    assert sig is not None
    assert (sig.kind, sig.title) == (kind, title)
    assert sig.task == {"comm": task[0], "pid": task[1], "cpu": task[2]}


def test_warning_before_the_fatal_report_is_context() -> None:
    sig = parse_oops(WARN_THEN_BUG)
    assert sig is not None and sig.kind == "kernel BUG"
    assert sig.location == "mm/slub.c:379"
    assert sig.earlier_reports and sig.earlier_reports[0].startswith("WARNING: CPU: 0 PID: 150")
    assert str(sig.frames[2]) == "mlx5_free_cmd_msg [mlx5_core]"
    assert sig.is_panic
    warn = parse_oops(WARN_THEN_BUG.split("kernel BUG")[0])
    assert warn is not None and warn.title == "WARNING in cmd_work_handler" and warn.guilty_module == "mlx5_core"
    assert warn.crash_kind is CrashKind.WARNING and not warn.is_panic


def test_page_fault_address_and_suffixes() -> None:
    sig = parse_oops(PAGE_FAULT)
    assert sig is not None
    assert sig.fault_address == "0xffffc90000abc000" and not sig.poisoned_address
    assert str(sig.frames[1]) == "mlx5_alloc_cmd_msg [mlx5_core]"


@pytest.mark.parametrize(("raw", "clean"), [
    ("__handle_sysrq.cold", "__handle_sysrq"), ("mlx5_health_report.isra.0", "mlx5_health_report"),
    ("foo.constprop.0.isra.1", "foo"), ("bar.part.3", "bar"), ("plain", "plain"),
])
def test_normalize_function(raw: str, clean: str) -> None:
    assert normalize_function(raw) == clean


def test_generic_frames() -> None:
    for name in ("panic", "dump_stack_lvl", "die_addr", "exc_general_protection", "asm_exc_page_fault", "do_trap",
                 "_raw_spin_lock_irqsave", "queued_spin_lock_slowpath", "__x86_return_thunk",
                 "entry_SYSCALL_64_after_hwframe", "do_syscall_64"):
        assert is_generic(name), name
    for name in ("dma_pool_alloc", "cmd_exec", "speed_show", "sysrq_handle_crash"):
        assert not is_generic(name), name
    # a kind's own reporting machinery is skipped only for that kind (its table row's skip)
    assert not is_generic("refcount_warn_saturate") and is_generic("refcount_warn_saturate", ("refcount_",))


def test_json_shape() -> None:
    sig = parse_oops(VULN_OOPS.read_text())
    assert sig is not None
    data = sig.to_json()
    assert set(data) == {"kind", "title", "signature", "guilty", "guilty_module", "first_line", "task", "rip",
                         "frames", "fault_address", "poisoned_address", "panic_reason", "tainted", "location",
                         "earlier_reports", "freed_by", "route"}
    assert data["kind"] == "general protection fault" and data["frames"][1] == "dma_pool_alloc"
    # the driver frames under the fault in the core kernel, down to where the speed read entered mlx5_core
    assert data["route"] == ["mlx5_alloc_cmd_msg", "cmd_exec", "mlx5_cmd_do", "mlx5_access_reg",
                             "mlx5_query_port_ptys", "mlx5e_ethtool_get_link_ksettings"]
    assert sig.entry == "mlx5e_ethtool_get_link_ksettings"


def test_no_report() -> None:
    assert parse_oops("[    1.0] hello\n[    2.0] world\n") is None
    assert parse_console("[    0.000000] Linux version 6.1.0\nSSH-READY 2.1\n") is None
    assert console_verdict(None) == "no crash report in the console."


def test_kasan_use_after_free_names_who_freed_the_pool() -> None:
    sig = parse_console((DATA / "kasan-uaf.console.log").read_text())
    assert sig is not None and sig.kind == "KASAN: use-after-free"
    assert [str(f) for f in sig.freed_by[:3]] == ["dma_pool_destroy", "mlx5lab_cmd_destroy_pool [mlx5_core]",
                                                  "shutdown [mlx5_core]"]
    assert "freed_by" in sig.to_json() and sig.to_json()["freed_by"][0] == "dma_pool_destroy"
    verdict = console_verdict(sig)
    assert verdict.startswith("use-after-free of an mlx5 command dma_pool: KASAN caught `mlx5-reader` (pid 166)")
    assert "at 0xffff8880073c0190 in dma_pool_alloc via speed_show" in verdict
    assert "dma_pool_destroy <- mlx5lab_cmd_destroy_pool <- shutdown" in verdict


def test_other_reports_have_no_free_stack() -> None:
    sig = parse_oops(VULN_OOPS.read_text())
    assert sig is not None and sig.freed_by == []

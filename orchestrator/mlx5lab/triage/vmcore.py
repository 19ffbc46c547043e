"""vmcore triage with drgn: the crashed task, the mlx5 objects it used, pool state, teardown tasks, verdict.

Each step is independent: one that fails (a structure drgn cannot read in this dump) is reported under
``errors`` and the others still run. One drgn Program per call, nothing global: safe to run in a thread
next to a running campaign.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import drgn
from drgn.helpers.linux.printk import get_dmesg

from ..crash import CrashKind, OopsSignature, crash_report, kind_from_stack
from .frames import stack_data
from .mlx5objs import reader_objects
from .pcidevs import Mlx5Function, mlx5_functions
from .pools import cmd_pool_state, is_poison_pointer
from .program import open_vmcore
from .tasks import blocked_tasks, crashed_task, task_summary, teardown_tasks
from .timers import TIMER_FRAMES, expiring_timer
from .verdict import vmcore_verdict

T = TypeVar("T")

# Kinds whose culprit is a task that waits, not the CPU that reported: the vmcore's blocked (D) tasks name it.
HANG_KINDS = frozenset({CrashKind.NMI, CrashKind.HUNG_TASK, CrashKind.SOFT_LOCKUP, CrashKind.HARD_LOCKUP,
                        CrashKind.RCU_STALL})


def _step(name: str, errors: list[str], fn: Callable[[], T], default: T) -> T:
    try:
        return fn()
    except (drgn.FaultError, LookupError, ValueError, TypeError, AttributeError, drgn.ObjectAbsentError) as exc:
        errors.append(f"{name}: {type(exc).__name__}: {exc}")
        return default


def _pool_states(prog: drgn.Program, functions: list[Mlx5Function]) -> dict[str, dict[str, Any]]:
    live = next((f.cmd_pool for f in functions if f.cmd_pool and not is_poison_pointer(f.cmd_pool)), None)
    return {f.bdf: cmd_pool_state(prog, f.cmd_pool, f.device, live_hint=live) for f in functions if f.mdev}


def _log_signature(prog: drgn.Program, out: dict[str, Any]) -> OopsSignature | None:
    """The crash report from the kernel's own printk buffer in the dump."""
    report = crash_report(get_dmesg(prog).decode(errors="replace"))
    if report is None:
        return None
    out["log_oops"] = report.oops
    out["log_signature"] = report.detail.to_json()
    return report.detail


def triage_vmcore(vmcore: Path, debug_files: list[Path], sig: OopsSignature | None = None) -> dict[str, Any]:
    """Analyse one vmcore; ``sig`` (the console's view of the crash) supplies the kind and title if present."""
    t0 = time.monotonic()
    prog, warnings = open_vmcore(vmcore, debug_files)
    t_open = time.monotonic() - t0
    errors: list[str] = []
    out: dict[str, Any] = {"vmcore": str(vmcore), "kernel_release": prog.cache.get("mlx5lab_release"),
                           "warnings": warnings, "errors": errors}

    def crashed() -> tuple[dict[str, Any], drgn.StackTrace]:
        thread, trace = crashed_task(prog)
        info = task_summary(thread.object)
        info["stack"] = stack_data(prog, trace)
        return info, trace

    crashed_info, trace = _step("crashed task", errors, crashed, ({}, None))
    out["crashed_task"] = crashed_info
    functions = _step("mlx5 PCI functions", errors, lambda: mlx5_functions(prog), [])
    pools = _step("command pools", errors, lambda: _pool_states(prog, functions), {})
    fn_json = []
    for f in functions:
        d = f.to_json()
        d["cmd_pool_state"] = pools.get(f.bdf)
        fn_json.append(d)
    mlx5: dict[str, Any] = {"functions": fn_json}
    if trace is not None and any(f.get("module") == "mlx5_core" for f in crashed_info.get("stack", [])):
        mlx5["reader"] = _step("reader objects", errors, lambda: reader_objects(prog, trace, functions), None)
    out["mlx5"] = mlx5
    if trace is not None and any(f.get("function") in TIMER_FRAMES for f in crashed_info.get("stack", [])):
        out["timer"] = _step("expiring timer", errors, lambda: expiring_timer(prog, trace), None)
    out["teardown_tasks"] = _step("teardown tasks", errors,
                                  lambda: teardown_tasks(prog, functions, skip_pid=crashed_info.get("pid")), [])
    out["devices_kset"] = {f.bdf: f.in_devices_kset for f in functions}
    if sig is None:  # e.g. a panic in NMI context, whose printk output never reached the serial console
        sig = _step("printk log", errors, lambda: _log_signature(prog, out), None)
    crash_kind = sig.crash_kind if sig else kind_from_stack(f["function"] for f in crashed_info.get("stack", []))
    kind = sig.kind if sig else crash_kind.value
    title = sig.title if sig else kind
    if crash_kind in HANG_KINDS:
        out["blocked_tasks"] = _step("blocked tasks", errors, lambda: blocked_tasks(prog), [])
    out["kind"] = kind
    out["verdict"] = vmcore_verdict(kind, title, crashed_info, mlx5, out["teardown_tasks"],
                                    out.get("blocked_tasks"), out.get("timer"))
    out["timings"] = {"open_s": round(t_open, 3), "total_s": round(time.monotonic() - t0, 3)}
    return out

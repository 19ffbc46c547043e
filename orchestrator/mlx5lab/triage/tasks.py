"""Tasks in a vmcore: the crashed one, and those inside a shutdown, unload or remove path."""

from __future__ import annotations

from typing import Any

import drgn
from drgn.helpers.linux.device import dev_name
from drgn.helpers.linux.pci import pci_name
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.sched import task_cpu, task_state_to_char

from ..crash import is_generic
from .frames import pointer_to, read_locals, stack_data
from .pcidevs import Mlx5Function, function_of

# Functions whose presence on a stack means the task is tearing a device down.
TEARDOWN_FUNCTIONS = frozenset({
    "device_shutdown", "pci_device_shutdown", "mlx5_unload_one", "mlx5_uninit_one", "remove_one",
    "pci_device_remove", "mlx5_try_fast_unload", "mlx5_cmd_cleanup", "mlx5lab_cmd_destroy_pool",
    "mlx5_mdev_uninit", "mlx5_pci_close", "device_release_driver_internal",
})
MODULE_TEARDOWN = {("shutdown", "mlx5_core"), ("remove_one", "mlx5_core")}
_WHY = (("kernel_restart_prepare", "reboot"), ("kernel_power_off", "power off"), ("kernel_halt", "halt"),
        ("__do_sys_delete_module", "module unload (rmmod)"), ("pci_stop_and_remove_bus_device", "PCI remove"),
        ("unbind_store", "driver unbind"), ("mlx5_unload_one", "mlx5 unload"))
_IDLE = {"context_switch", "schedule_timeout_uninterruptible", "schedule_timeout_interruptible",
         "schedule_timeout_killable"}


def task_summary(task: drgn.Object) -> dict[str, Any]:
    return {"pid": task.pid.value_(), "comm": task.comm.string_().decode(errors="replace"),
            "cpu": task_cpu(task), "state": task_state_to_char(task), "task": hex(task.value_())}


def crashed_task(prog: drgn.Program) -> tuple[drgn.Thread, drgn.StackTrace]:
    thread = prog.crashed_thread()
    return thread, thread.stack_trace()


def innermost_specific(stack: list[dict[str, Any]]) -> str | None:
    """The innermost frame that is not scheduling/locking machinery: where the task actually is."""
    for f in stack:
        if not is_generic(f["function"]) and f["function"] not in _IDLE:
            return f["function"] + (f" [{f['module']}]" if f.get("module") else "")
    return None


def _where(stack: list[dict[str, Any]]) -> str | None:
    """"msleep in shutdown [mlx5_core]": where the task is, and in which teardown step."""
    at = innermost_specific(stack)
    step = next((f for f in stack if f["function"] in TEARDOWN_FUNCTIONS
                 or (f["function"], f.get("module")) in MODULE_TEARDOWN), None)
    if step is None:
        return at
    name = step["function"] + (f" [{step['module']}]" if step.get("module") else "")
    return name if at in (None, name) else f"{at} in {name}"


def _is_teardown(stack: list[dict[str, Any]]) -> bool:
    return any(f["function"] in TEARDOWN_FUNCTIONS or (f["function"], f.get("module")) in MODULE_TEARDOWN
               for f in stack)


def _target(trace: drgn.StackTrace, stack: list[dict[str, Any]], functions: list[Mlx5Function]) -> dict[str, Any]:
    """The device a teardown task is working on, from the innermost teardown frame whose locals drgn can read."""
    by_index = {f["index"]: f for f in stack}
    for i, frame in enumerate(trace):
        f = by_index.get(i)
        if f is None or not (f["function"] in TEARDOWN_FUNCTIONS or (f["function"], f.get("module"))
                             in MODULE_TEARDOWN):
            continue
        for name, obj in read_locals(frame):
            if (addr := pointer_to(obj, "struct pci_dev")) is not None:
                return {"bdf": pci_name(obj), "via": f"{f['function']}() {name}", "pci_dev": hex(addr)}
            if (addr := pointer_to(obj, "struct mlx5_core_dev")) is not None:
                fn = function_of(functions, mdev=addr)
                bdf = fn.bdf if fn else pci_name(obj.pdev)
                return {"bdf": bdf, "via": f"{f['function']}() {name}", "mdev": hex(addr)}
            if name == "dev" and (addr := pointer_to(obj, "struct device")) is not None:
                return {"bdf": dev_name(obj).decode(errors="replace"), "via": f"{f['function']}() {name}",
                        "device": hex(addr)}
    return {"bdf": None, "via": None}


def teardown_tasks(prog: drgn.Program, functions: list[Mlx5Function],
                   skip_pid: int | None = None) -> list[dict[str, Any]]:
    """Every task whose stack is inside a device shutdown, unload or remove path."""
    out = []
    for task in for_each_task(prog):
        try:
            trace = prog.stack_trace(task)
            stack = stack_data(prog, trace)
        except (ValueError, LookupError, drgn.FaultError):
            continue
        if not _is_teardown(stack):
            continue
        names = {f["function"] for f in stack}
        entry = task_summary(task)
        entry.update(why=next((why for fn, why in _WHY if fn in names), "teardown"),
                     at=_where(stack), target=_target(trace, stack, functions), stack=stack,
                     crashed=entry["pid"] == skip_pid)
        out.append(entry)
    return out


def blocked_tasks(prog: drgn.Program, limit: int = 20) -> list[dict[str, Any]]:
    """Tasks in uninterruptible sleep (D), where a hang's culprits usually are."""
    out = []
    for task in for_each_task(prog):
        try:
            if task_state_to_char(task) != "D":
                continue
            stack = stack_data(prog, prog.stack_trace(task))
        except (ValueError, LookupError, drgn.FaultError):
            continue
        entry = task_summary(task)
        entry.update(at=innermost_specific(stack), stack=stack)
        out.append(entry)
        if len(out) >= limit:
            break
    return out

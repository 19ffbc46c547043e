"""One-paragraph verdicts: from the vmcore findings when there are some, else from the console alone."""

from __future__ import annotations

from typing import Any

from ..crash import CrashKind, OopsSignature

# Kind texts the wording depends on (the kind of a crash comes from mlx5lab.crash: its table for console
# text, kind_from_stack for a vmcore with no console report).
SYSRQ = CrashKind.SYSRQ.value
NMI = CrashKind.NMI.value
BAD_POOL_STATES = ("poisoned", "freed", "destroyed", "null")


def _who(task: dict[str, Any]) -> str:
    return f"`{task.get('comm')}` (pid {task.get('pid')})"


def _teardown_clause(teardown: list[dict[str, Any]], reader_bdf: str | None) -> str:
    parts = []
    for t in teardown:
        if t.get("crashed"):
            continue
        target = (t.get("target") or {}).get("bdf")
        what = {"reboot": "shutting down", "power off": "shutting down", "halt": "shutting down"}.get(
            t.get("why", ""), "tearing down")
        if target:
            same = " (the same function)" if target == reader_bdf else ""
            where = f", now in {t['at']}" if t.get("at") else ""
            parts.append(f"{_who(t)} was {what} {target}{same}{where}")
        else:
            parts.append(f"{_who(t)} was in a {t.get('why', 'teardown')} path (device not readable)")
    return "; ".join(parts)


def _kset_clause(functions: list[dict[str, Any]]) -> str:
    gone = [f["bdf"] for f in functions if not f.get("in_devices_kset")]
    still = [f["bdf"] for f in functions if f.get("in_devices_kset")]
    bits = []
    if gone:
        bits.append(f"{', '.join(gone)} {'is' if len(gone) == 1 else 'are'} off devices_kset (shutdown reached)")
    if still:
        bits.append(f"{', '.join(still)} {'is' if len(still) == 1 else 'are'} still on it (not shut down yet)")
    return "; ".join(bits)


def vmcore_verdict(kind: str, title: str, crashed: dict[str, Any], mlx5: dict[str, Any],
                   teardown: list[dict[str, Any]], blocked: list[dict[str, Any]] | None = None,
                   timer: dict[str, Any] | None = None) -> str:
    stack = crashed.get("stack", [])
    in_mlx5 = any(f.get("module") == "mlx5_core" for f in stack)
    functions = mlx5.get("functions", [])
    reader = mlx5.get("reader") or {}
    bdf = reader.get("function")
    pool = next((f.get("cmd_pool_state") or {} for f in functions if f["bdf"] == bdf), {})
    tear = _teardown_clause(teardown, bdf)
    who = _who(crashed)
    if kind == SYSRQ:
        text = f"deliberate crash from sysrq (echo c > /proc/sysrq-trigger) by {who} on CPU {crashed.get('cpu')}; " \
               "not an mlx5 race."
        return text + (f" At that moment {tear}." if tear else "")
    if in_mlx5 and bdf and pool.get("state") in BAD_POOL_STATES:
        ifname = reader.get("ifname") or "its net device"
        names = {f["function"] for f in stack}
        verb = "read" if "speed_show" in names or "dev_attr_show" in names else "used"
        alloc = "allocated from" if "dma_pool_alloc" in names else "used"
        state = pool["state"]
        how = {"poisoned": f"pool pointer poisoned to {pool.get('pointer')}",
               "freed": f"the dma_pool at {pool.get('pointer')} is a freed slab object",
               "destroyed": f"the dma_pool at {pool.get('pointer')} was unlinked by dma_pool_destroy()",
               "null": "pool pointer NULL"}[state]
        freed = pool.get("freed_pool")
        if freed:
            slab = freed.get("slab") or {}
            how += (f"; the freed dma_pool {freed['address']} is a free {slab.get('cache', 'slab')} object "
                    f"with its pools list poisoned" if freed.get("pools_list_poisoned") else "")
        text = (f"use-after-free: {who} {verb} `{ifname}` ({bdf}) and {alloc} that function's command pool, "
                f"which its shutdown had already destroyed ({how})")
        text += f"; {tear}." if tear else "; no task was in a teardown path any more."
        fn = next((f for f in functions if f["bdf"] == bdf), {})
        if "DOWN" in (fn.get("cmd_state") or ""):
            text += (f" {bdf}'s command interface was already DOWN, so the stock cmd_exec() guard "
                     "(mlx5_cmd_is_down()) would have refused this command.")
        kset = _kset_clause(functions)
        return text + (f" {kset[0].upper()}{kset[1:]}." if kset else "")
    if timer and timer.get("module") == "mlx5_core":
        links = (" its list link was already poisoned (LIST_POISON2): the timer had been detached or "
                 "re-initialised while it was still queued, a race on the timer itself"
                 if timer.get("next_poisoned") else f" its next link was {timer.get('next')}")
        text = (f"{title} by {who} on CPU {crashed.get('cpu')} while the timer softirq expired mlx5_core's "
                f"timer {timer.get('function')} (struct timer_list at {timer.get('address')});{links}. "
                "The fault is in the timer code, but the corrupted object is the driver's")
        return text + (f"; meanwhile {tear}." if tear else ".")
    if in_mlx5:
        ifname = reader.get("ifname")
        where = (f" on `{ifname}` ({bdf})" if ifname else f" on {bdf}") if bdf else ""
        state = pool.get("state", "unknown")
        text = (f"{title} by {who}{where} in mlx5_core code; that function's command pool is {state}, "
                "so this is not the command-pool use-after-free")
        return text + (f"; {tear}." if tear else ".")
    if kind == NMI:
        comm = str(crashed.get("comm") or "")
        running = "was idle" if comm.startswith("swapper") else f"was running {who}"
        text = (f"panic on an NMI (how the orchestrator breaks a hang): CPU {crashed.get('cpu')} {running}; "
                "a hang's culprit is among the blocked tasks")
        text += f"; {tear}." if tear else "; no task was in a teardown path."
        if blocked:
            text += " Blocked (D) tasks: " + "; ".join(f"{_who(b)} in {b.get('at')}" for b in blocked[:5]) + "."
        return text
    text = f"{title} by {who} on CPU {crashed.get('cpu')}; no mlx5_core frames on its stack; not an mlx5 race"
    if timer:
        text += f" (the timer being expired: {timer.get('function')}, {timer.get('module') or 'kernel'})"
    return text + (f" (meanwhile {tear})." if tear else ".")


def console_verdict(sig: OopsSignature | None) -> str:
    """What the console alone supports; weaker than the vmcore verdict, and says so."""
    if sig is None:
        return "no crash report in the console."
    task = sig.task or {}
    who = f"`{task.get('comm')}` (pid {task.get('pid')})" if task else "an unknown task"
    if sig.kind == SYSRQ:
        return f"deliberate crash from sysrq (echo c > /proc/sysrq-trigger) by {who}; not an mlx5 race."
    names = [f.function for f in sig.frames]
    mlx5 = [f.function for f in sig.frames if f.module == "mlx5_core"]
    if mlx5 and "dma_pool_alloc" in names and sig.poisoned_address:
        path = " -> ".join(n for n in reversed(names) if n in ("speed_show", "duplex_show", *mlx5))
        return (f"likely use-after-free of an mlx5 command dma_pool: {who} faulted on the poison address "
                f"{sig.fault_address} in dma_pool_alloc via {path} (console only; the vmcore triage names the "
                "function, its pool and the task shutting it down).")
    if mlx5 and "dma_pool_alloc" in names and sig.kind == "KASAN: use-after-free":
        path = " -> ".join(n for n in reversed(names) if n in ("speed_show", "duplex_show", *mlx5))
        freer = [f.function for f in sig.freed_by]
        freed = (f"; KASAN's free stack: {' <- '.join(freer[:4])}" if freer else "")
        destroyed = "dma_pool_destroy" in freer
        return (f"{'use-after-free' if destroyed else 'likely use-after-free'} of an mlx5 command dma_pool: "
                f"KASAN caught {who} accessing the freed struct dma_pool at {sig.fault_address} in dma_pool_alloc "
                f"via {path}{freed} (console only; the vmcore triage names the function and its pool's state).")
    if mlx5:
        return f"{sig.title} by {who} in mlx5_core code ({', '.join(mlx5[:3])}); console only."
    return f"{sig.title} by {who}; no mlx5_core frames in the trace; not an mlx5 race (console only)."

"""triage.md: the triage result as a page a person reads top-down (verdict first, evidence after)."""

from __future__ import annotations

from typing import Any


def format_frame(f: dict[str, Any]) -> str:
    """``#17 dma_pool_alloc (mm/dmapool.c:324)``, ``#22 cmd_exec [mlx5_core] (...)``."""
    mod = f" [{f['module']}]" if f.get("module") else ""
    src = f" ({f['source']})" if f.get("source") else ""
    return f"#{f['index']:<2d} {f['function']}{mod}{src}"


def _stack(stack: list[dict[str, Any]]) -> list[str]:
    return ["```", *(format_frame(f) for f in stack), "```"]


def _pool_line(state: dict[str, Any] | None) -> str:
    if not state:
        return "-"
    s = state.get("state", "?")
    if s == "poisoned":
        freed = state.get("freed_pool")
        extra = f"; freed dma_pool {freed['address']} found in {(freed.get('slab') or {}).get('cache')}" \
            if freed else "; freed dma_pool not found"
        return f"poisoned pointer {state.get('pointer')}{extra}"
    return f"{s} ({state.get('pointer') or state.get('address')})"


def _pool_section(bdf: str, state: dict[str, Any]) -> list[str]:
    pool = state.get("freed_pool") if state.get("state") == "poisoned" else state
    if not pool or "pages" not in pool:
        return []
    pages = pool["pages"]
    slab = pool.get("slab") or {}
    poison = " (LIST_POISON1/2: unlinked by dma_pool_destroy)" if pool.get("pools_list_poisoned") else ""
    lines = [f"### Command pool of {bdf}: {pool['state']}", "",
             f"`struct dma_pool` {pool['address']} \"{pool.get('name')}\" in {slab.get('cache')} "
             f"({'allocated' if slab.get('allocated') else 'free'} slab object), size {pool.get('size')}, "
             f"allocation {pool.get('allocation')}, dev {pool.get('dev')}, pools list "
             f"{' / '.join(pool.get('pools', []))}{poison}.",
             "",
             f"page_list: {pages['count']} `struct dma_page`, {pages['in_use']} blocks in use, "
             f"{pages['null_vaddr']} with a NULL vaddr; slab caches {pages['slab_caches'] or '-'}"
             f"{'; ' + pages['broken'] if pages.get('broken') else ''}."]
    if pages["first"]:
        lines += ["", "| dma_page | vaddr | dma | in_use | offset | slab |", "|---|---|---|---|---|---|"]
        for p in pages["first"]:
            s = p.get("slab") or {}
            lines.append(f"| {p['address']} | {p['vaddr']} | {p['dma']} | {p['in_use']} | {p['offset']} | "
                         f"{s.get('cache')}{'' if s.get('allocated', True) else ' (free)'} |")
    return lines + [""]


def _vmcore_sections(vm: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    ct = vm.get("crashed_task") or {}
    lines += [f"## Crashed task: {ct.get('comm')} (pid {ct.get('pid')}, CPU {ct.get('cpu')})", "",
              *_stack(ct.get("stack", [])), ""]
    mlx5 = vm.get("mlx5") or {}
    reader = mlx5.get("reader")
    if reader:
        lines += ["### mlx5 objects on its stack", ""]
        for key in ("netdev", "priv", "mdev", "pool", "file"):
            if key in reader:
                lines.append(f"- {key}: {reader[key]['address']} (from {reader[key]['from']})")
        lines.append(f"- function: {reader.get('function')}, interface {reader.get('ifname')}"
                     + (f", matched by {reader['matched_by']}" if reader.get("matched_by") else ""))
        if reader.get("file_path"):
            lines.append(f"- file being read: {reader['file_path']}")
        lines.append("")
    functions = mlx5.get("functions", [])
    if functions:
        lines += ["## mlx5 PCI functions", "",
                  "| function | netdev (running, present) | mlx5_core_dev | device state | cmd state | command pool "
                  "| on devices_kset |", "|---|---|---|---|---|---|---|"]
        for f in functions:
            nds = ", ".join(f"{n['name']} ({'up' if n['running'] else 'down'}, "
                            f"{'present' if n['present'] else 'detached'})" for n in f["netdevs"]) or "-"
            lines.append(f"| {f['bdf']} | {nds} | {f['mdev']} | {f.get('device_state')} | {f.get('cmd_state')} | "
                         f"{_pool_line(f.get('cmd_pool_state'))} | {'yes' if f['in_devices_kset'] else 'no'} |")
        lines.append("")
        for f in functions:
            lines += _pool_section(f["bdf"], f.get("cmd_pool_state") or {})
    teardown = vm.get("teardown_tasks") or []
    lines += ["## Tasks in a shutdown, unload or remove path", ""]
    if not teardown:
        lines += ["None.", ""]
    for t in teardown:
        target = t.get("target") or {}
        lines += [f"### {t['comm']} (pid {t['pid']}, {t['state']}, CPU {t['cpu']}): {t['why']} of "
                  f"{target.get('bdf') or '?'}", "",
                  f"Now in {t.get('at')}; device from {target.get('via') or '-'}.", "", *_stack(t["stack"]), ""]
    for b in vm.get("blocked_tasks") or []:
        lines += [f"### blocked: {b['comm']} (pid {b['pid']}) in {b.get('at')}", "", *_stack(b["stack"]), ""]
    notes = (vm.get("warnings") or []) + (vm.get("errors") or [])
    if notes:
        lines += ["## drgn notes", "", *(f"- {n}" for n in notes), ""]
    t = vm.get("timings") or {}
    lines += [f"vmcore {vm.get('vmcore')} read in {t.get('total_s')} s (open and debug info {t.get('open_s')} s).",
              ""]
    return lines


def render_markdown(r: dict[str, Any]) -> str:
    ident = r.get("identity") or {}
    lines = [f"# Triage: {r.get('title') or 'no crash report'}", "",
             f"**Verdict** (from the {r.get('verdict_source')}): {r.get('verdict')}", "",
             "| | |", "|---|---|",
             f"| folder | {r.get('folder')} |",
             f"| outcome | {r.get('outcome') or '-'} |",
             f"| kind | {r.get('kind') or '-'} |",
             f"| signature | `{r.get('signature') or '-'}` |",
             f"| kernel | {' '.join(filter(None, (ident.get('kernel_release') or '?', ident.get('package_version'))))}"
             f", variant {ident.get('variant') or 'unknown (no result.json)'} |"]
    con = r.get("console")
    if con and con.get("task"):
        t = con["task"]
        lines.append(f"| crashing task (oops) | {t.get('comm')} (pid {t.get('pid')}, CPU {t.get('cpu')}) |")
    lines.append("")
    if r.get("vmcore_skipped"):
        lines += [f"**vmcore triage skipped:** {r['vmcore_skipped']}", ""]
    if r.get("vmcore"):
        lines += _vmcore_sections(r["vmcore"])
    if con:
        lines += [f"## Console ({r.get('console_source')})", "", f"First line: `{con['first_line']}`", ""]
        if con.get("rip"):
            lines.append(f"RIP: `{con['rip']}`" + (f", fault address {con['fault_address']}"
                                                   f"{' (poison)' if con.get('poisoned_address') else ''}"
                                                   if con.get("fault_address") else ""))
            lines.append("")
        lines += ["```", *con["frames"], "```", ""]
        if con.get("freed_by"):
            lines += ["Freed by (KASAN's free stack):", "", "```", *con["freed_by"], "```", ""]
        if con.get("earlier_reports"):
            lines += ["Earlier reports in the same log:", *(f"- `{x}`" for x in con["earlier_reports"]), ""]
    t = r.get("timings") or {}
    lines.append(f"Triage took {t.get('total_s')} s.")
    return "\n".join(lines) + "\n"

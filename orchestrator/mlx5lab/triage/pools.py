"""State of an mlx5 command ``dma_pool``: alive, destroyed, freed, or a poisoned pointer; and its pages.

``dma_pool_destroy()`` unlinks the pool from its device (``list_del(&pool->pools)`` leaves LIST_POISON1/2),
frees every ``struct dma_page`` and then the pool itself with ``kfree``. The positive control also overwrites
``dev->cmd.pool`` with a non-canonical poison pointer. When the pointer is poisoned, the freed pool can often
still be found: it is a free object in the slabs its kmalloc cache has on the per-CPU and partial lists,
with the mlx5 command pool's name and ``dev`` still in it (this kernel does not wipe freed memory).
"""

from __future__ import annotations

import contextlib
from typing import Any

import drgn
from drgn.helpers.linux.cpumask import for_each_possible_cpu
from drgn.helpers.linux.list import list_for_each_entry
from drgn.helpers.linux.mm import PageSlab, for_each_page, page_to_virt
from drgn.helpers.linux.percpu import per_cpu_ptr
from drgn.helpers.linux.slab import find_slab_cache, slab_object_info

POISON_POINTER_DELTA = 0xDEAD000000000000
LIST_POISON1 = POISON_POINTER_DELTA + 0x100
LIST_POISON2 = POISON_POINTER_DELTA + 0x122
CMD_POOL_NAME = b"mlx5_cmd"
MAX_PAGES = 4096  # a command pool holds tens of 4 KiB pages (the message cache); far more means a corrupt list
SHOWN_PAGES = 6
_KMALLOC_SIZES = (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024)


def is_poison_pointer(value: int) -> bool:
    """A pointer in the non-canonical POISON_POINTER_DELTA range (list poison, or the control's 0x...6b00)."""
    return value >> 48 == POISON_POINTER_DELTA >> 48


def _swab64(x: int) -> int:
    return int.from_bytes(x.to_bytes(8, "little"), "big")


def _freelist(prog: drgn.Program, cache: drgn.Object, head: int, limit: int) -> set[int]:
    """Objects on one SLUB freelist starting at ``head``, decoding CONFIG_SLAB_FREELIST_HARDENED pointers."""
    offset = cache.offset.value_()
    random = cache.random.value_() if hasattr(cache, "random") else 0
    out: set[int] = set()
    obj = head
    while obj and obj not in out and len(out) < limit:
        out.add(obj)
        slot = obj + offset
        try:
            stored = prog.read_u64(slot)
        except drgn.FaultError:
            break
        obj = stored ^ random ^ _swab64(slot) if random else stored
    return out


def free_objects(prog: drgn.Program, cache: drgn.Object, slab: drgn.Object) -> set[int]:
    """Free objects of ``slab``: its own freelist and the lockless freelist of every CPU that has it as its slab.

    drgn 0.3.0's slab_object_info() looks at online CPUs only; after a panic the other CPUs are offline, so an
    object freed on one of them still looks allocated there. Possible CPUs are walked here.
    """
    limit = slab.objects.value_()
    free = _freelist(prog, cache, slab.freelist.value_(), limit)
    for cpu in for_each_possible_cpu(prog):
        c = per_cpu_ptr(cache.cpu_slab, cpu)
        if c.slab.value_() == slab.value_():
            free |= _freelist(prog, cache, c.freelist.value_(), limit)
    return free


def slab_info(prog: drgn.Program, addr: int) -> dict[str, Any] | None:
    """Which slab cache ``addr`` is in and whether its object is allocated; None if not in a slab."""
    try:
        info = slab_object_info(prog, addr)
    except (drgn.FaultError, ValueError, LookupError):
        return None
    if info is None:
        return None
    try:
        cache = info.slab_cache.name.string_().decode()
    except (drgn.FaultError, AttributeError):
        cache = None
    allocated = bool(info.allocated)
    if allocated and cache is not None:
        with contextlib.suppress(drgn.FaultError, AttributeError, LookupError):
            allocated = info.address not in free_objects(prog, info.slab_cache, info.slab)
    return {"cache": cache, "object": hex(info.address), "allocated": allocated,
            "freeptr_offset": info.slab_cache.offset.value_() if cache is not None else None}


def _name(pool: drgn.Object) -> str:
    raw = pool.prog_.read(pool.name.address_of_().value_(), drgn.sizeof(pool.name)).split(b"\0", 1)[0]
    printable = bytearray()
    for b in raw:  # a freed pool has the SLUB freelist pointer written over part of the name
        if not 32 <= b < 127:
            break
        printable.append(b)
    return printable.decode()


def _pages(prog: drgn.Program, pool: drgn.Object) -> dict[str, Any]:
    """Walk ``pool->page_list`` as one would in crash's ``list dma_pool.page_list``: a summary and the first pages."""
    pages: list[dict[str, Any]] = []
    caches: dict[str, int] = {}
    out: dict[str, Any] = {"count": 0, "in_use": 0, "null_vaddr": 0, "slab_caches": caches, "first": pages}
    head = pool.page_list.address_of_()
    try:
        for page in list_for_each_entry("struct dma_page", head, "page_list"):
            addr = page.value_()
            if is_poison_pointer(addr) or out["count"] >= MAX_PAGES:
                out["broken"] = f"list ends in {hex(addr)}" if is_poison_pointer(addr) else "list too long"
                break
            out["count"] += 1
            vaddr, in_use = page.vaddr.value_(), page.in_use.value_()
            out["in_use"] += in_use
            out["null_vaddr"] += vaddr == 0
            slab = slab_info(prog, addr)
            key = (slab or {}).get("cache") or "not slab"
            if slab is not None and not slab["allocated"]:
                key += " (free)"
            caches[key] = caches.get(key, 0) + 1
            if len(pages) < SHOWN_PAGES:
                pages.append({"address": hex(addr), "vaddr": hex(vaddr), "dma": hex(page.dma.value_()),
                              "in_use": in_use, "offset": page.offset.value_(), "slab": slab})
    except drgn.FaultError as exc:
        out["broken"] = f"page list unreadable: {exc}"
    return out


def describe_pool(prog: drgn.Program, addr: int) -> dict[str, Any]:
    """Contents and slab state of the ``struct dma_pool`` at ``addr``, with its page list walked."""
    pool = drgn.Object(prog, "struct dma_pool", address=addr)
    out: dict[str, Any] = {"address": hex(addr)}
    try:
        out.update(name=_name(pool), size=pool.size.value_(), allocation=pool.allocation.value_(),
                   dev=hex(pool.dev.value_()),
                   pools=[hex(pool.pools.next.value_()), hex(pool.pools.prev.value_())])
    except drgn.FaultError as exc:
        out.update(state="unreadable", detail=str(exc))
        return out
    out["slab"] = slab_info(prog, addr)
    if out["slab"] and not out["slab"]["allocated"] and out["slab"]["freeptr_offset"] is not None:
        # SLUB keeps its freelist pointer inside a free object: the name ends where that pointer starts
        cut = out["slab"]["freeptr_offset"] - _name_offset(prog)
        if 0 <= cut < len(out["name"]):
            out["name"] = out["name"][:cut]
    unlinked = pool.pools.next.value_() == LIST_POISON1 and pool.pools.prev.value_() == LIST_POISON2
    freed = out["slab"] is not None and not out["slab"]["allocated"]
    out["state"] = "freed" if freed else "destroyed" if unlinked else "alive"
    out["pools_list_poisoned"] = unlinked
    out["pages"] = _pages(prog, pool)
    return out


def _dma_pool_cache(prog: drgn.Program, hint: int | None) -> drgn.Object | None:
    """The slab cache dma_pools live in: that of a live pool if one is given, else kmalloc-<size>."""
    if hint:
        try:
            info = slab_object_info(prog, hint)
            if info is not None:
                return info.slab_cache
        except (drgn.FaultError, ValueError):
            pass
    size = drgn.sizeof(prog.type("struct dma_pool"))
    for k in _KMALLOC_SIZES:
        if k >= size:
            return find_slab_cache(prog, f"kmalloc-{k}")
    return None


def _candidate_slabs(prog: drgn.Program, cache: drgn.Object) -> list[drgn.Object]:
    """SLUB slabs with free objects: each CPU's active and partial slabs, and each node's partial list."""
    slabs = []
    for cpu in for_each_possible_cpu(prog):
        c = per_cpu_ptr(cache.cpu_slab, cpu)
        if c.slab:
            slabs.append(c.slab)
        p = c.partial if hasattr(c, "partial") else None
        n = 0
        while p and n < 1024:
            slabs.append(p)
            p, n = p.next, n + 1
    for node in range(prog["nr_node_ids"].value_()):
        kn = cache.node[node]
        if kn:
            slabs.extend(list_for_each_entry("struct slab", kn.partial.address_of_(), "slab_list"))
    return slabs


def _all_slabs(prog: drgn.Program, cache: drgn.Object) -> list[drgn.Object]:
    """Every slab of ``cache``, found by walking all pages (~0.5 s for 1 GiB): full slabs are on no list."""
    out = []
    for page in for_each_page(prog):
        try:
            if PageSlab(page) and drgn.cast("struct slab *", page).slab_cache == cache:
                out.append(drgn.cast("struct slab *", page))
        except drgn.FaultError:
            continue
    return out


def _scan(prog: drgn.Program, cache: drgn.Object, slabs: list[drgn.Object], device: int | None,
          want_free: bool) -> list[dict[str, Any]]:
    size, name_off = cache.size.value_(), _name_offset(prog)
    found, seen = [], set()
    for slab in slabs:
        if slab.value_() in seen:
            continue
        seen.add(slab.value_())
        base = page_to_virt(drgn.cast("struct page *", slab)).value_()
        free: set[int] | None = None
        for i in range(slab.objects.value_()):
            addr = base + i * size
            try:
                if prog.read(addr + name_off, len(CMD_POOL_NAME)) != CMD_POOL_NAME:
                    continue
                pool = drgn.Object(prog, "struct dma_pool", address=addr)
                if device is not None and pool.dev.value_() != device:
                    continue
                unlinked = pool.pools.next.value_() == LIST_POISON1
                if free is None:
                    free = free_objects(prog, cache, slab)
            except (drgn.FaultError, ValueError):
                continue
            if addr in free or (not want_free and unlinked):
                found.append(describe_pool(prog, addr))
    return found


def find_freed_cmd_pools(prog: drgn.Program, device: int | None, live_hint: int | None) -> list[dict[str, Any]]:
    """Freed (or destroyed) mlx5 command dma_pools of ``device`` still in their slab, described.

    First the slabs a free object can be on (per-CPU and partial); if none is there, every slab of the
    cache, also accepting a pool whose ``pools`` list is LIST_POISONed (destroyed, its slot maybe reused).
    """
    cache = _dma_pool_cache(prog, live_hint)
    if cache is None:
        return []
    found = _scan(prog, cache, _candidate_slabs(prog, cache), device, want_free=True)
    return found or _scan(prog, cache, _all_slabs(prog, cache), device, want_free=False)


def _name_offset(prog: drgn.Program) -> int:
    return drgn.offsetof(prog.type("struct dma_pool"), "name")


def cmd_pool_state(prog: drgn.Program, pointer: int | None, device: int | None,
                   live_hint: int | None = None) -> dict[str, Any]:
    """State of a function's command pool from the ``dev->cmd.pool`` pointer value (and its struct device).

    ``live_hint``: a live command pool of another function, to find the slab cache dma_pools come from.
    """
    if pointer is None:
        return {"state": "unknown", "pointer": None}
    if pointer == 0:
        return {"state": "null", "pointer": "0x0"}
    if is_poison_pointer(pointer):
        out: dict[str, Any] = {"state": "poisoned", "pointer": hex(pointer)}
        freed = find_freed_cmd_pools(prog, device, live_hint)
        if freed:
            out["freed_pool"] = freed[0]
        return out
    out = describe_pool(prog, pointer)
    out["pointer"] = hex(pointer)
    return out

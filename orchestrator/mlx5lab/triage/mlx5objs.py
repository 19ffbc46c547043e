"""The mlx5 objects a crashed task was using, read from its stack frames' arguments and locals.

The reader's path (speed_show -> mlx5e_ethtool_get_link_ksettings -> mlx5_query_port_ptys -> ... ->
cmd_exec -> mlx5_alloc_cmd_msg -> dma_pool_alloc) passes a ``net_device``, an ``mlx5e_priv``, an
``mlx5_core_dev`` and finally the ``dma_pool``; drgn reads whichever of them the compiler kept. Objects are
recognised by type, not by name, so renamed locals in another kernel still count.
"""

from __future__ import annotations

from typing import Any

import drgn
from drgn.helpers.linux.fs import d_path

from .frames import pointer_to, read_locals
from .pcidevs import Mlx5Function, function_of


def _first(found: dict[str, tuple[int, str]], key: str, value: int, where: str) -> None:
    found.setdefault(key, (value, where))


def objects_on_stack(prog: drgn.Program, trace: drgn.StackTrace) -> dict[str, tuple[int, str]]:
    """{kind: (address, "function() local")} for the innermost readable object of each kind."""
    found: dict[str, tuple[int, str]] = {}
    for frame in trace:
        fname = frame.name or hex(frame.pc)
        for name, obj in read_locals(frame):
            where = f"{fname}() {name}"
            if (a := pointer_to(obj, "struct mlx5_core_dev")) is not None:
                _first(found, "mdev", a, where)
            elif (a := pointer_to(obj, "struct mlx5e_priv")) is not None:
                _first(found, "priv", a, where)
            elif (a := pointer_to(obj, "struct net_device")) is not None:
                _first(found, "netdev", a, where)
            elif (a := pointer_to(obj, "struct dma_pool")) is not None:
                _first(found, "pool", a, where)
            elif (a := pointer_to(obj, "struct file")) is not None:
                _first(found, "file", a, where)
            elif fname == "speed_show" and name == "dev" and (a := pointer_to(obj, "struct device")) is not None:
                # speed_show(dev): the net_device's embedded struct device
                nd = drgn.container_of(obj, "struct net_device", "dev")
                _first(found, "netdev", nd.value_(), f"{where} (container_of)")
    return found


def _file_path(prog: drgn.Program, addr: int) -> str | None:
    try:
        f = drgn.Object(prog, "struct file *", addr)
        return d_path(f.f_path.address_of_()).decode(errors="replace")
    except (drgn.FaultError, ValueError, LookupError):
        return None


def reader_objects(prog: drgn.Program, trace: drgn.StackTrace, functions: list[Mlx5Function]) -> dict[str, Any]:
    """Which mlx5 function, net_device and command pool the crashed task was using, and how we know."""
    found = objects_on_stack(prog, trace)
    out: dict[str, Any] = {k: {"address": hex(v[0]), "from": v[1]} for k, v in found.items()}
    mdev = found.get("mdev", (None, ""))[0]
    netdev = found.get("netdev", (None, ""))[0]
    if mdev is None and "priv" in found:
        try:
            priv = drgn.Object(prog, "struct mlx5e_priv *", found["priv"][0])
            mdev = priv.mdev.value_()
            netdev = netdev or priv.netdev.value_()
            out["mdev"] = {"address": hex(mdev), "from": f"{found['priv'][1]}->mdev"}
        except drgn.FaultError:
            pass
    fn = function_of(functions, mdev=mdev) if mdev else None
    if fn is None and netdev:
        fn = function_of(functions, netdev=netdev)
        if fn is not None:
            out["matched_by"] = "net_device parent"
    if fn is None and "pool" in found:  # the pool pointer the crashing dma_pool_alloc() was given
        pool = found["pool"][0]
        matches = [f for f in functions if f.cmd_pool == pool]
        if len(matches) == 1:
            fn, out["matched_by"] = matches[0], "dev->cmd.pool equals the dma_pool_alloc() argument"
    out["function"] = fn.bdf if fn else None
    if fn is not None:
        nd = next((n for n in fn.netdevs if n.address == netdev), None) or (fn.netdevs[0] if fn.netdevs else None)
        out["ifname"] = nd.name if nd else None
    if "file" in found:
        out["file_path"] = _file_path(prog, found["file"][0])
    return out

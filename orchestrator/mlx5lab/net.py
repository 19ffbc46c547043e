"""Traffic across the card's cable, driven from the host through the guest's ``mlx5lab-net``.

The guest script (``guest-images/reader/mlx5lab-net``) moves the second mlx5 port into a network namespace
so that frames between the two ports cross the emulated cable, and pings and sends TCP across it; each of
its commands prints one JSON line, which :func:`net` returns.
"""

from __future__ import annotations

import json
from typing import Any

from . import Mlx5LabError
from .vm.machine import Machine

PEER_NAMESPACE = "mlx5lab-peer"


def net(m: Machine, args: str, timeout: float = 120, check: bool = True) -> dict[str, Any]:
    """Run ``mlx5lab-net ARGS`` in the guest; its last JSON line (Mlx5LabError if it failed and ``check``)."""
    res = m.run(f"mlx5lab-net {args}", timeout=timeout)
    lines = [x for x in res.stdout.strip().splitlines() if x.startswith("{")]
    if (check and res.status != 0) or not lines:
        raise Mlx5LabError(f"mlx5lab-net {args}: exit status {res.status}: {(res.stderr or res.stdout).strip()}")
    return json.loads(lines[-1])


def port_stats(m: Machine) -> dict[str, dict[str, int]]:
    """``ethtool -S`` of every mlx5 port (both namespaces), by interface name."""
    res = m.run("mlx5lab-net stats")
    if res.status != 0:
        raise Mlx5LabError(f"mlx5lab-net stats: exit status {res.status}: {res.stderr.strip()}")
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    return {r.pop("iface"): r for r in rows}

"""Run one path and judge it: the API a fuzzer of path orderings calls.

:func:`run_path` marks the kernel log and the traces, runs the path, then checks health. Whatever goes
wrong in the path (a timeout, a command that fails, a lost SSH session) becomes an unhealthy result with the
error in ``detail``: it is never lost, and it never stops a sequence of paths. Only a bad name or argument
(a caller's mistake) raises.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..vm.machine import Machine
from . import health
from .ports import expected_speeds
from .registry import get_path


@dataclass
class PathResult:
    name: str
    args: dict[str, Any]  # every argument, defaults included
    duration_s: float  # the path alone, trigger to finished (the health check not included)
    healthy: bool
    problems: list[str] = field(default_factory=list)
    detail: str = ""  # the path's error, if it raised
    label: str = ""  # name and non-default arguments: "unbind-bind fn=1"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def explain(self) -> str:
        """Problems and detail, one per line, for an assertion message or a log."""
        return "\n".join([f"{self.label}: {'healthy' if self.healthy else 'UNHEALTHY'} "
                          f"after {self.duration_s:.2f} s", *(f"  - {p}" for p in self.problems),
                          *([f"  detail: {self.detail}"] if self.detail else [])])


def run_path(m: Machine, name: str, /, **args: Any) -> PathResult:
    """Run path ``name`` with ``args`` on ``m``, then check the driver is healthy (health.check_healthy)."""
    path = get_path(name)
    parsed = path.make_args(**args)  # a bad argument is the caller's error: raise before touching the guest
    since = health.mark(m)
    detail = ""
    t0 = time.monotonic()
    try:
        path.perform(m, parsed)
    except Exception as exc:  # noqa: BLE001 - a failed path is a result, kept in detail
        detail = f"{type(exc).__name__}: {exc}"
    duration = time.monotonic() - t0
    problems = [f"the path did not finish: {detail}"] if detail else []
    try:
        problems += health.check_healthy(m, expected_speeds(m), since=since, ends_bound=path.ends_bound,
                                         guest=not path.ends_machine, expected_dmesg=path.expected_dmesg_for(parsed),
                                         expected_trace=path.expected_trace_for(parsed))
    except Exception as exc:  # noqa: BLE001 - e.g. SSH gone: that is a finding too
        problems.append(f"the health check could not finish: {type(exc).__name__}: {exc}")
    return PathResult(name=name, args=path.arg_dict(parsed), duration_s=round(duration, 3),
                      healthy=not problems, problems=problems, detail=detail, label=path.label(parsed))

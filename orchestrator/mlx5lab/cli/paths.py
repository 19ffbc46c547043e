"""``mlx5lab paths``: every unload/reload path with its trigger, arguments and the driver functions it runs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..paths.registry import ArgInfo, DriverPath


def _choices(a: ArgInfo) -> str:
    if not a.choices:
        return f" (>= {a.minimum})" if a.minimum is not None else ""
    digits = [c for c in a.choices if isinstance(c, str) and c.isdigit()]
    rest = [str(c) or '""' for c in a.choices if c not in digits]
    shown = ([f"{digits[0]}..{digits[-1]}"] if len(digits) > 2 else digits) + rest
    return f" ({'|'.join(shown)})"


def describe(path: DriverPath) -> list[str]:
    ends = "ends the machine" if path.ends_machine else "ends bound" if path.ends_bound else "ends unbound"
    lines = [f"{path.name}  [{path.side}; {ends}]", f"  {path.summary}", f"  trigger: {path.trigger}",
             f"  device:  {path.device}"]
    infos = path.arg_infos()
    width = max((len(f"{a.name}={a.default}") for a in infos), default=0)
    for i, a in enumerate(infos):
        lines.append(f"  {'args:   ' if i == 0 else '        '} {f'{a.name}={a.default}':<{width}}  {a.help}"
                     f"{_choices(a)}")
    if not infos:
        lines.append("  args:    none")
    for i, k in enumerate(path.kernel_functions):
        lines.append(f"  {'kernel: ' if i == 0 else '        '} {k}")
    return lines


def cmd_paths(args: argparse.Namespace) -> int:
    from ..paths import get_path, path_names

    chosen = [get_path(n) for n in (args.names or path_names())]
    if args.json:
        json.dump([{"name": p.name, "summary": p.summary, "side": p.side, "trigger": p.trigger, "device": p.device,
                    "ends_bound": p.ends_bound, "ends_machine": p.ends_machine,
                    "kernel_functions": list(p.kernel_functions),
                    "args": [a.__dict__ for a in p.arg_infos()], "variants": list(p.variants)} for p in chosen],
                  sys.stdout, indent=2)
        print()
        return 0
    for p in chosen:
        print("\n".join(describe(p)))
        print()
    print("Run one from Python: mlx5lab.paths.run_path(machine, NAME, key=value, ...) (marks the kernel log, runs\n"
          "the path, checks health); benchmark them: mlx5lab bench paths [--path NAME[:key=value,...]]; the\n"
          "trigger lines are guest commands for `mlx5lab boot --run`.")
    return 0


def add_parser(sub: Any) -> None:
    sp = sub.add_parser("paths", help="list the driver's unload/reload paths: trigger, arguments, kernel functions")
    sp.add_argument("names", nargs="*", metavar="NAME", help="only these paths")
    sp.add_argument("--json", action="store_true", help="machine-readable")
    sp.set_defaults(func=cmd_paths)

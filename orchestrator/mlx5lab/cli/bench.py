"""``mlx5lab bench boot|device|race|paths``: benchmarks that print their figures."""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

from mlx5image.variants import VARIANTS

from . import common
from .cardopts import add_card, card_settings


def cmd_bench_boot(args: argparse.Namespace) -> int:
    from ..bench import bench_boot

    img = common.image(args)
    common.progress(f"{args.runs} boots of {img.kernel_release}")
    init, ssh = bench_boot(img, args.runs)
    print(init.line("QEMU start -> init reached"))
    print(ssh.line("QEMU start -> SSH ready"))
    return 0


def cmd_bench_device(args: argparse.Namespace) -> int:
    from ..bench import bench_device

    img = common.image(args)
    common.progress(f"{args.runs} boots with a card of {len(args.speeds)} functions")
    for line in bench_device(img, args.runs, args.speeds).lines():
        print(line)
    return 0


def cmd_bench_race(args: argparse.Namespace) -> int:
    from mlx5image.variants import ensure_variant

    from ..bench import bench_race

    img = ensure_variant(common.image(args), args.variant, progress=common.progress)
    common.progress(f"{args.runs} race iterations, variant {args.variant}")
    with tempfile.TemporaryDirectory(prefix="mlx5lab-bench-race-") as tmp:
        spread, counts = bench_race(img, args.runs, Path(tmp) / "campaign")
    print(spread.line("iteration, boot to verdict"))
    print(f"{'iterations per hour':<34} {3600 / statistics.median(spread.values):6.0f}   outcomes {counts}")
    return 0


def cmd_bench_paths(args: argparse.Namespace) -> int:
    from mlx5dev.card import CardConfig

    from ..bench import PathFigures, bench_paths
    from ..paths import get_path, path_names

    img = common.image(args)
    specs = []
    for name, path_args in args.paths or [(name, None) for name in path_names()]:
        # a bare name runs the path's usual argument sets; NAME:K=V,... exactly that one
        specs += [(name, v) for v in get_path(name).variants] if path_args is None else [(name, path_args)]
    common.progress(f"{len(specs)} path(s) x {args.runs} runs on a card of {len(args.speeds)} functions")
    card = CardConfig.from_speeds(args.speeds, **card_settings(args))

    def done(fig: PathFigures) -> None:  # each path's line as soon as its runs are over
        print(fig.line(), flush=True)
        for problem in fig.problems[:3]:
            print(f"    first unhealthy run: {problem}", flush=True)

    figures = bench_paths(img, args.runs, specs, card, common.progress, done)
    return 0 if all(f.healthy == len(f.durations) for f in figures) else 1


def add_parser(sub: Any) -> None:
    bp = sub.add_parser("bench", help="benchmarks that print their figures")
    bsub = bp.add_subparsers(dest="bench", required=True)
    sp = bsub.add_parser("boot", help="QEMU start -> SSH ready, next to QEMU start -> init reached")
    common.add_kernel(sp)
    common.add_runs(sp)
    sp.set_defaults(func=cmd_bench_boot)
    sp = bsub.add_parser("device", help="boot -> both ports up; command latency and rate at the device")
    common.add_kernel(sp)
    common.add_runs(sp)
    common.add_speeds(sp)
    sp.set_defaults(func=cmd_bench_device)
    sp = bsub.add_parser("race", help="race iterations: boot to verdict, and iterations per hour")
    common.add_kernel(sp)
    common.add_runs(sp)
    sp.add_argument("--variant", choices=VARIANTS, default="stock")
    sp.set_defaults(func=cmd_bench_race)
    sp = bsub.add_parser("paths", help="every unload/reload path N times: median duration, how often the driver "
                                       "came back healthy (exit 1 if not always)")
    common.add_kernel(sp)
    common.add_runs(sp)
    common.add_speeds(sp)
    add_card(sp)
    common.add_path_specs(sp)
    sp.set_defaults(func=cmd_bench_paths)

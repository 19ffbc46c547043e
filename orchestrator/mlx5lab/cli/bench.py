"""``mlx5lab bench boot|device|race``: benchmarks that print their figures."""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

from mlx5image.variants import VARIANTS

from . import common


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

"""``mlx5lab bench boot|device|traffic|race|paths|fuzz``: benchmarks that print their figures."""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from mlx5image.build import GuestImage
from mlx5image.variants import VARIANTS

from . import common
from .cardopts import add_card, card_settings
from .fuzz import parse_duration


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


def cmd_bench_traffic(args: argparse.Namespace) -> int:
    from ..bench import bench_traffic

    img = common.image(args)
    common.progress(f"one boot, {args.runs} transfers of {args.mib} MiB across the cable")
    for line in bench_traffic(img, args.runs, args.mib << 20).lines():
        print(line)
    return 0


def cmd_bench_race(args: argparse.Namespace) -> int:
    from mlx5image.variants import ensure_variant

    from ..bench import bench_race

    img = ensure_variant(common.image(args), args.variant, progress=common.progress)
    medians: dict[tuple[str, int], float] = {}
    for boot in args.boot:
        if boot == "snapshot":  # its one-time template is made here, outside the timed iterations
            t0 = time.monotonic()
            made = warm_snapshot(img)
            common.progress(f"snapshot template {'made' if made else 'found'} in {time.monotonic() - t0:.1f} s "
                            "(not counted below)")
        for jobs in args.jobs:
            label = f"--boot {boot} --jobs {jobs}"
            common.progress(f"{args.runs} race iterations, variant {args.variant}, {boot} boot, "
                            f"{jobs} guest(s) at a time")
            tmp = Path(tempfile.mkdtemp(prefix="mlx5lab-bench-race-"))
            t0 = time.monotonic()
            spread, counts = bench_race(img, args.runs, tmp / "campaign", jobs=jobs, boot=boot)
            wall = time.monotonic() - t0
            if counts.get("clean") == args.runs:
                shutil.rmtree(tmp, ignore_errors=True)
            else:  # the evidence of what was not clean is kept
                common.progress(f"not every iteration was clean: the campaign is kept in {tmp / 'campaign'}")
            medians[boot, jobs] = statistics.median(spread.values)
            print(spread.line(f"{label}: iteration, boot to verdict"))
            print(f"{f'{label}: iterations per hour':<34} {args.runs / wall * 3600:6.0f} wall "
                  f"({3600 / medians[boot, jobs]:.0f} from the median iteration)   outcomes {counts}", flush=True)
    for jobs in args.jobs:
        if ("classic", jobs) in medians and ("snapshot", jobs) in medians:
            print(f"--jobs {jobs}: snapshot iteration / classic iteration (medians, this run): "
                  f"{medians['snapshot', jobs] / medians['classic', jobs]:.2f}")
    return 0


def boot_modes(text: str) -> list[str]:
    from ..vm.snapshot import BOOT_MODES

    modes = [m for m in text.split(",") if m]
    bad = [m for m in modes if m not in BOOT_MODES]
    if bad or not modes:
        raise argparse.ArgumentTypeError(f"--boot takes {' and/or '.join(BOOT_MODES)}, comma-separated")
    return modes


def warm_snapshot(img: GuestImage) -> bool:
    """Make the race scenario's snapshot template now; True if it had to be made."""
    from ..scenarios.reboot_race import GUEST_CMDLINE
    from ..vm.accel import choose_accel
    from ..vm.machine import MachineConfig
    from ..vm.qemu import find_qemu
    from ..vm.snapshot import ensure_template, template_exists

    qemu = find_qemu()
    cfg = MachineConfig(image=img, extra_cmdline=GUEST_CMDLINE)
    kwargs = {"cmdline": " ".join(filter(None, [img.cmdline, GUEST_CMDLINE])), "memory_mb": cfg.memory_mb,
              "cpus": cfg.cpus, "accel": cfg.accel or choose_accel(qemu, img)}
    if template_exists(qemu, img, **kwargs):
        return False
    ensure_template(qemu, img, **kwargs, extra_cmdline=GUEST_CMDLINE, progress=common.progress)
    return True


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


def cmd_bench_fuzz(args: argparse.Namespace) -> int:
    """The fuzzer's figures (mlx5lab.fuzz.bench): find on the positive control per seed, a stock run, and a
    race campaign's rate, in one run; every work folder is kept under ``--out``."""
    from mlx5image.variants import ensure_variant

    from ..bench import bench_race
    from ..fuzz import bench as fb

    out = args.out or Path(tempfile.mkdtemp(prefix="mlx5lab-bench-fuzz-"))
    out.mkdir(parents=True, exist_ok=True)
    common.progress(f"fuzz benchmark in {out}: {args.seeds} seed(s) on the positive control (limit "
                    f"{args.find_limit / 60:.0f} min each), {args.stock_duration / 60:.0f} min on stock, "
                    f"{args.race_runs} race iterations; {args.boot} boots, {args.jobs} guest(s) at once")
    lines: list[str] = []
    if args.seeds:
        figs = []
        for seed in range(1, args.seeds + 1):
            fig = fb.find_seed(out / f"find-seed-{seed}", seed, limit_s=args.find_limit,
                               variant=common.driver_variant(args, "vulnerable"),
                               kernel=args.kernel, progress=common.progress, minimize_tries=args.minimize_tries,
                               repro_runs=args.repro_runs, boot=args.boot, jobs=args.jobs,
                               ptys=not args.stop_at_first)
            figs.append(fig)
            print(fig.line(), flush=True)
            for b in fig.bugs:
                print(b.line(), flush=True)
        lines += fb.find_lines(figs, args.find_limit)
    stock: fb.StockFigure | None = None
    if args.stock_duration:
        stock = fb.stock_run(out / "stock", duration_s=args.stock_duration, seed=args.stock_seed, kernel=args.kernel,
                             variant=common.driver_variant(args, "stock"), progress=common.progress,
                             minimize_tries=args.minimize_tries, repro_runs=args.repro_runs, boot=args.boot,
                             jobs=args.jobs)
        lines += fb.stock_lines(stock)
    if args.race_runs:
        img = ensure_variant(common.image(args), common.driver_variant(args, "stock"), progress=common.progress)
        t0 = time.monotonic()
        spread, counts = bench_race(img, args.race_runs, out / "race", jobs=args.jobs, boot=args.boot)
        race_h = args.race_runs / (time.monotonic() - t0) * 3600
        lines.append(f"race campaign (stock): {race_h:.0f} iterations per hour wall, outcomes {counts}")
        lines.append("  " + spread.line("race iteration, boot to verdict"))
        if stock is not None:
            lines.append(f"fuzz programs per hour (stock run, program iterations only) {stock.per_run_hour:.0f} = "
                         f"{stock.per_run_hour / race_h:.2f} x the race campaign's iterations per hour (wall "
                         f"{stock.per_hour:.0f} = {stock.per_hour / race_h:.2f} x), same machine, same run")
    print("\n".join(["", "== mlx5lab bench fuzz ==", *lines, f"work folders: {out}"]), flush=True)
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
    sp = bsub.add_parser("traffic", help="TCP Mb/s and frames per second across the card's cable, next to the "
                                         "command latency with the data path idle and busy")
    common.add_kernel(sp)
    common.add_runs(sp)
    sp.add_argument("--mib", type=int, default=8, help="size of each transfer in MiB")
    sp.set_defaults(func=cmd_bench_traffic)
    sp = bsub.add_parser("race", help="race iterations: boot to verdict, and iterations per hour")
    common.add_kernel(sp)
    common.add_runs(sp)
    sp.add_argument("--variant", choices=VARIANTS, default="stock")
    sp.add_argument("--jobs", type=lambda t: [int(x) for x in t.split(",")], default=[1], metavar="N[,N...]",
                    help="guests at once; several (1,2) are measured one after another in this run")
    sp.add_argument("--boot", type=boot_modes, default=["classic"], metavar="MODE[,MODE]",
                    help="classic, snapshot, or both (classic,snapshot): each measured in this run")
    sp.set_defaults(func=cmd_bench_race)
    sp = bsub.add_parser("paths", help="every unload/reload path N times: median duration, how often the driver "
                                       "came back healthy (exit 1 if not always)")
    common.add_kernel(sp)
    common.add_runs(sp)
    common.add_speeds(sp)
    add_card(sp)
    common.add_path_specs(sp)
    sp.set_defaults(func=cmd_bench_paths)
    sp = bsub.add_parser("fuzz", help="the fuzzer: programs and minutes to the seed case's bug on the positive "
                                      "control per seed, a stock run's infrastructure share and findings, and "
                                      "programs per hour next to race iterations per hour")
    common.add_kernel(sp)
    sp.add_argument("--seeds", type=int, default=5, help="seeds 1..N on the positive control (0: skip)")
    sp.add_argument("--find-limit", type=parse_duration, default=parse_duration("30m"),
                    help="give up on a seed after this long (default 30m)")
    sp.add_argument("--stop-at-first", action="store_true",
                    help="end each seed at its first dma_pool use-after-free, whichever way it entered the driver "
                         "(default: go on until one through a reader's PTYS query, the seed case's way in)")
    sp.add_argument("--stock-duration", type=parse_duration, default=parse_duration("1h"),
                    help="the stock driver's run (default 1h; 0: skip)")
    sp.add_argument("--stock-seed", type=int, default=1)
    sp.add_argument("--race-runs", type=int, default=20, help="race campaign iterations to compare with (0: skip)")
    sp.add_argument("--minimize-tries", type=int, default=24, help="as for mlx5lab fuzz")
    sp.add_argument("--repro-runs", type=int, default=10, help="runs that measure a reproducer's rate")
    sp.add_argument("--out", type=Path, help="folder for every work folder (default: a new temporary one, kept)")
    common.add_boot(sp)
    sp.add_argument("--jobs", type=common.jobs_arg, default=1, metavar="N|auto",
                    help="guests at once in every part (the find part's programs depend on it, as for mlx5lab fuzz)")
    sp.set_defaults(func=cmd_bench_fuzz)

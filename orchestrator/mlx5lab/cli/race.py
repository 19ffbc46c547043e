"""``mlx5lab race``: run (or resume) a reboot-versus-reader campaign."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from mlx5image.build import ensure_image
from mlx5image.cache import cache_dir
from mlx5image.variants import VARIANTS, ensure_variant

from ..campaign.campaign import EXIT_CLEAN, EXIT_FOUND, Campaign, CampaignSpec, print_progress
from ..campaign.evidence import IterationResult
from ..scenarios.reboot_race import RaceParams, run_iteration
from ..triage.background import BackgroundTriage

READER_ATTRS = ("speed", "duplex")


def _progress(msg: str) -> None:
    print(f"[mlx5lab] {msg}", file=sys.stderr, flush=True)


def parse_fault(text: str) -> dict[str, Any]:
    """``function=0,opcode=TEARDOWN_HCA,delay_ms=300`` -> control-channel add_fault arguments."""
    out: dict[str, Any] = {}
    for part in filter(None, text.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"fault fields are key=value: {part!r}")
        key = key.strip()
        if key in ("function", "count", "status", "syndrome"):
            out[key] = int(value, 0)
        elif key == "delay_ms":
            out[key] = float(value)
        elif key == "drop":
            out[key] = value.lower() in ("1", "true", "yes")
        elif key in ("opcode", "register"):
            out[key] = value.strip()
        else:
            raise argparse.ArgumentTypeError(f"unknown fault field {key!r}")
    return out


def parse_readers(text: str) -> list[str]:
    attrs = [a.strip() for a in text.split(",") if a.strip()]
    bad = [a for a in attrs if a not in READER_ATTRS]
    if not attrs or bad:
        raise argparse.ArgumentTypeError(f"readers are a comma list of {', '.join(READER_ATTRS)}")
    return attrs


def parse_delay(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition(":")
    try:
        a, b = float(lo), float(hi or lo)
    except ValueError:
        raise argparse.ArgumentTypeError("--delay is SECONDS or MIN:MAX") from None
    if not 0 <= a <= b:
        raise argparse.ArgumentTypeError("--delay needs 0 <= MIN <= MAX")
    return a, b


def pinned_kernel(kernel: str | None) -> str:
    """The kernel a campaign records: resolved now (a .deb by its path, else its release), so a resumed
    campaign runs the same kernel even if the distribution's default moved on in between."""
    if kernel and kernel.endswith(".deb"):
        return kernel
    return ensure_image(kernel, progress=_progress).kernel_release


def open_campaign(args: argparse.Namespace) -> Campaign:
    if args.resume:
        c = Campaign.resume(args.resume)
        _progress(f"resuming {c.folder}: {len(c.results)} of {c.spec.iterations} iterations done")
        return c
    spec = CampaignSpec(kernel=pinned_kernel(args.kernel), variant=args.variant, iterations=args.iterations,
                        seed=args.seed, delay_min_s=args.delay[0], delay_max_s=args.delay[1],
                        race=RaceParams(speeds=args.speeds, readers=args.readers, threads=args.threads,
                                        hang_timeout_s=args.hang_timeout, faults=args.fault))
    name = f"{args.variant}-seed{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Campaign.create(args.out or cache_dir() / "campaigns" / name, spec)


def cmd_race(args: argparse.Namespace) -> int:
    return run_campaign(open_campaign(args))


def run_campaign(campaign: Campaign) -> int:
    spec = campaign.spec
    image = ensure_variant(ensure_image(spec.kernel, progress=_progress), spec.variant, progress=_progress)
    _progress(f"campaign {campaign.folder}: {spec.iterations} iterations, variant {spec.variant}, "
              f"kernel {image.kernel_release}, seed {spec.seed}")
    started, done = time.monotonic(), 0

    def one(i: int, delay: float, folder: Path) -> IterationResult:
        return run_iteration(image, spec.race, i, delay, folder)

    # Each crash is triaged on a worker thread while the next iteration runs.
    triage = BackgroundTriage(on_done=lambda f, r: _progress(f"triage {f.name}: {r['verdict']}"[:300]))

    def on_result(c: Campaign, r: IterationResult) -> None:
        nonlocal done
        done += 1
        print_progress(c.progress_line(started, done) + (f"  last: {r.outcome} {r.title}"[:160]))
        if r.outcome in ("panic", "hang"):
            triage.submit(c.iteration_dir(r.iteration))

    try:
        status = campaign.run(one, on_result)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        _progress(f"interrupted: {len(campaign.results)} finished iterations kept; "
                  f"continue with: mlx5lab race --resume {campaign.folder}")
        raise
    finally:
        triage.close()
    print(file=sys.stderr)
    print(campaign.table())
    return status


def cmd_controls(args: argparse.Namespace) -> int:
    """The main job: a short campaign on each control; succeed only if both behave as controls must."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = args.out or cache_dir() / "campaigns" / f"controls-{stamp}"
    statuses = {}
    for variant in ("stock", "vulnerable"):
        spec = CampaignSpec(kernel=pinned_kernel(args.kernel), variant=variant, iterations=args.iterations,
                            seed=args.seed)
        statuses[variant] = run_campaign(Campaign.create(base / variant, spec))
        print()
    ok = statuses["stock"] == EXIT_CLEAN and statuses["vulnerable"] == EXIT_FOUND
    print(f"negative control (stock): {'all clean' if statuses['stock'] == EXIT_CLEAN else 'NOT clean'}; "
          f"positive control (vulnerable): {'panic found' if statuses['vulnerable'] == EXIT_FOUND else 'NO panic'}")
    print(f"evidence (vmcores, oopses, consoles, device traces): {base}")
    return 0 if ok else 1


def add_parser(sub: Any, kernel_opt: Any, speeds_type: Any) -> None:
    cp = sub.add_parser("controls", help="the main job: a short race campaign on the negative and positive control")
    kernel_opt(cp)
    cp.add_argument("--iterations", "-n", type=int, default=3)
    cp.add_argument("--seed", type=int, default=1)
    cp.add_argument("--out", type=Path, help="folder for both campaigns (default: in the cache)")
    cp.set_defaults(func=cmd_controls)

    sp = sub.add_parser("race", help="reboot -f against speed readers, many times; keep every crash's evidence",
                        description="Exit status: 0 all clean, 1 a panic or hang was found, 3 infrastructure "
                                    "failures only, 2 usage or set-up error, 130 interrupted.")
    kernel_opt(sp)
    sp.add_argument("--variant", choices=VARIANTS, default="stock",
                    help="stock Debian mlx5_core (negative control) or the guard-reverted one (positive)")
    sp.add_argument("--iterations", "-n", type=int, default=5)
    sp.add_argument("--readers", type=parse_readers, default=["speed"], metavar="ATTR[,ATTR]",
                    help="sysfs files the reader threads hammer: speed, duplex")
    sp.add_argument("--threads", type=int, default=4, help="reader threads")
    sp.add_argument("--seed", type=int, default=1, help="seed of the delay schedule (same seed, same delays)")
    sp.add_argument("--delay", type=parse_delay, default=(0.2, 1.5), metavar="MIN:MAX",
                    help="seconds between starting the readers and reboot -f (uniform in [MIN, MAX])")
    sp.add_argument("--fault", type=parse_fault, action="append", default=[], metavar="K=V,...",
                    help="device fault to widen the window, e.g. function=0,opcode=TEARDOWN_HCA,delay_ms=300")
    sp.add_argument("--hang-timeout", type=float, default=30.0, help="seconds without reset or panic = hang")
    sp.add_argument("--speeds", type=speeds_type, default=[100000, 25000], metavar="MBPS[,MBPS...]")
    where = sp.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, help="campaign folder (default: in the cache, named by variant/seed)")
    where.add_argument("--resume", type=Path, metavar="DIR", help="continue the campaign in DIR")
    sp.set_defaults(func=cmd_race)

"""``mlx5lab race``: run (or resume) a reboot-versus-reader campaign."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from mlx5image.cache import cache_dir
from mlx5image.variants import VARIANTS

from ..campaign.campaign import Campaign
from ..campaign.runner import pinned_kernel, run_campaign
from ..campaign.spec import CampaignSpec
from ..scenarios.reboot_race import READER_ATTRS, REBOOTS, RaceParams
from . import common
from .cardopts import add_card, card_settings


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


def open_campaign(args: argparse.Namespace) -> Campaign:
    if args.resume:
        c = Campaign.resume(args.resume)
        common.progress(f"resuming {c.folder}: {len(c.results)} of {c.spec.iterations} iterations done")
        return c
    params = RaceParams(speeds=args.speeds, readers=args.readers, threads=args.threads,
                        hang_timeout_s=args.hang_timeout, faults=args.fault, reboot=args.reboot,
                        card=card_settings(args))
    spec = CampaignSpec(kernel=pinned_kernel(args.kernel, common.progress), variant=args.variant,
                        iterations=args.iterations, seed=args.seed, delay_min_s=args.delay[0],
                        delay_max_s=args.delay[1], params=params, boot=args.boot)
    name = f"{args.variant.replace(':', '-')}-seed{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Campaign.create(args.out or cache_dir() / "campaigns" / name, spec)


def cmd_race(args: argparse.Namespace) -> int:
    return run_campaign(open_campaign(args), common.progress, jobs=args.jobs, cluster=args.cluster)


def add_parser(sub: Any) -> None:
    sp = sub.add_parser("race", help="reboot -f against speed readers, many times; keep every crash's evidence",
                        description="Exit status: 0 all clean, 1 a panic or hang was found, 3 infrastructure "
                                    "failures only, 2 usage or set-up error, 130 interrupted.")
    common.add_kernel(sp)
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
    sp.add_argument("--reboot", choices=REBOOTS, default="reboot -f",
                    help="how the guest goes down: reboot(2) at once (-f), or through init (reboot, poweroff)")
    common.add_speeds(sp)
    add_card(sp)
    common.add_pool(sp)
    common.add_boot(sp)
    where = sp.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, help="campaign folder (default: in the cache, named by variant/seed)")
    where.add_argument("--resume", type=Path, metavar="DIR", help="continue the campaign in DIR")
    sp.set_defaults(func=cmd_race)

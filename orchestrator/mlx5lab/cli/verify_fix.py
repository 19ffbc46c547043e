"""``mlx5lab verify-fix``: the race schedule on a base driver and on base + fix; both panic rates and the verdict."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from mlx5image.build import ensure_image
from mlx5image.cache import cache_dir
from mlx5image.driver import BASES, variant_name
from mlx5image.variants import ensure_variant

from ..campaign.runner import pinned_kernel, run_campaign
from ..verify_fix import Side, VerifyPlan, run_verify_fix
from . import common
from .cardopts import add_card, card_settings
from .race import parse_delay


def patch_file(text: str) -> Path:
    path = Path(text).resolve()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such patch file: {text}")
    return path


def positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"a count of iterations is a whole number of at least 1, not {text!r}")
    return n


def confidence(text: str) -> float:
    try:
        c = float(text)
    except ValueError:
        c = -1.0
    if not 0 < c < 1:
        raise argparse.ArgumentTypeError(f"--confidence is strictly between 0 and 1 (0.95), not {text!r}")
    return c


def plan_of(args: argparse.Namespace) -> VerifyPlan:
    """The plan of the command line (storing the patches by content: a variant name names them)."""
    base_variant = variant_name(args.base, args.base_patches)
    fix_variant = variant_name(args.base, [*args.base_patches, *args.fixes])
    return VerifyPlan(
        kernel=pinned_kernel(args.kernel, common.progress),
        base=Side("base", base_variant, args.base_iterations, tuple(str(p) for p in args.base_patches)),
        fix=Side("fix", fix_variant, args.iterations, tuple(str(p) for p in [*args.base_patches, *args.fixes])),
        seed=args.seed, delay=args.delay, confidence=args.confidence, params={"card": card_settings(args)})


def prepare(kernel: str | None, variant: str) -> None:
    ensure_variant(ensure_image(kernel, progress=common.progress), variant, progress=common.progress)


def cmd_verify_fix(args: argparse.Namespace) -> int:
    out = args.out or cache_dir() / "campaigns" / f"verify-fix-{time.strftime('%Y%m%d-%H%M%S')}"
    started = time.monotonic()
    v = run_verify_fix(plan_of(args), out, common.progress, prepare=prepare, run=run_campaign)
    print(v.text)
    print(f"evidence: {out}/base and {out}/fix; verdict: {out}/verdict.json "
          f"({(time.monotonic() - started) / 60:.1f} min)")
    return v.exit_code


def add_parser(sub: Any) -> None:
    sp = sub.add_parser(
        "verify-fix", help="run one race schedule on a base driver and on base + fix; say what the rates mean",
        description="Runs the reboot race (same seed, same delay for each iteration) on the base driver and on "
                    "the base with the fix patches, each a campaign folder under --out (base/, fix/), and prints "
                    "both panic rates and an exact binomial bound on the fixed one. Infrastructure outcomes are "
                    "not kernel results and are left out of the counts. Running it again with the same "
                    "arguments and --out continues it. Exit status: 0 verified (the base panicked, the fix "
                    "never did), 1 not verified, 3 infrastructure failures only, 2 usage or set-up error "
                    "(a fix that does not apply), 130 interrupted.")
    common.add_kernel_release(sp)
    sp.add_argument("--patch", dest="fixes", action="append", required=True, type=patch_file, metavar="FIX",
                    help="the fix: a unified diff of the mlx5 driver, applied after the base (repeatable, in order)")
    sp.add_argument("--base", choices=tuple(BASES), default="vulnerable",
                    help="the driver the fix is applied to: the positive control (default) or Debian's own")
    sp.add_argument("--base-patch", dest="base_patches", action="append", default=[], type=patch_file,
                    metavar="FILE", help="a patch that makes the base (repeatable, applied before the fix)")
    sp.add_argument("--iterations", "-n", type=positive, default=40, help="iterations with the fix (default 40)")
    sp.add_argument("--base-iterations", type=positive, default=10, help="iterations of the base (default 10)")
    sp.add_argument("--confidence", type=confidence, default=0.95, help="of the bound on the fixed panic rate")
    sp.add_argument("--seed", type=int, default=1, help="seed of the delay schedule both sides run")
    sp.add_argument("--delay", type=parse_delay, default=(0.2, 1.5), metavar="MIN:MAX",
                    help="seconds between starting the readers and reboot -f (uniform in [MIN, MAX])")
    add_card(sp)
    sp.add_argument("--out", type=Path, help="folder of both campaigns and verdict.json (default: in the cache)")
    sp.set_defaults(func=cmd_verify_fix)

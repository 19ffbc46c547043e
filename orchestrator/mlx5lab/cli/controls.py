"""``mlx5lab controls``: the main job, a short race campaign on the negative and the positive control."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from mlx5image.cache import cache_dir

from ..campaign.campaign import EXIT_CLEAN, EXIT_FOUND, Campaign
from ..campaign.runner import pinned_kernel, run_campaign
from ..campaign.spec import CampaignSpec
from . import common


def cmd_controls(args: argparse.Namespace) -> int:
    """Succeed only if both controls behave as controls must: stock all clean, vulnerable panics."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = args.out or cache_dir() / "campaigns" / f"controls-{stamp}"
    statuses = {}
    for variant in ("stock", "vulnerable"):
        spec = CampaignSpec(kernel=pinned_kernel(args.kernel, common.progress),
                            variant=common.driver_variant(args, variant),
                            iterations=args.iterations, seed=args.seed, boot=args.boot)
        statuses[variant] = run_campaign(Campaign.create(base / variant, spec), common.progress, jobs=args.jobs,
                                         cluster=args.cluster)
        print()
    ok = statuses["stock"] == EXIT_CLEAN and statuses["vulnerable"] == EXIT_FOUND
    print(f"negative control (stock): {'all clean' if statuses['stock'] == EXIT_CLEAN else 'NOT clean'}; "
          f"positive control (vulnerable): {'panic found' if statuses['vulnerable'] == EXIT_FOUND else 'NO panic'}")
    print(f"evidence (vmcores, oopses, consoles, device traces): {base}")
    return 0 if ok else 1


def add_parser(sub: Any) -> None:
    cp = sub.add_parser("controls", help="the main job: a short race campaign on the negative and positive control")
    common.add_kernel(cp)
    cp.add_argument("--iterations", "-n", type=int, default=3)
    cp.add_argument("--seed", type=int, default=1)
    cp.add_argument("--out", type=Path, help="folder for both campaigns (default: in the cache)")
    common.add_pool(cp)
    common.add_boot(cp)
    cp.set_defaults(func=cmd_controls)

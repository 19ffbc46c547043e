"""``mlx5lab triage``: triage one iteration folder or a whole campaign (console always, vmcore with debug info)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..rundir import RunDir
from ..triage.report import group_by_signature, triage_path
from . import common


def cmd_triage(args: argparse.Namespace) -> int:
    results = triage_path(args.path, vmcore=not args.no_vmcore, fetch_debuginfo=args.fetch_debuginfo,
                          progress=common.progress)
    if not results:
        print(f"{args.path}: no crashed iteration to triage")
        return 0
    for r in results:
        print(f"{r.folder.name}: {r.title or 'no crash report'}  [{r.signature or '-'}]  "
              f"({r.timings['total_s']:.1f} s)")
        print(f"  verdict ({r.verdict_source}): {r.verdict}")
        if r.vmcore_skipped:
            print(f"  vmcore: {r.vmcore_skipped}")
        print(f"  report: {RunDir(r.folder).triage_md}")
    if len(results) > 1:
        print("crashes by signature:")
        for g in group_by_signature(results):
            print(f"  {g['count']:3d} x {g['title']}  [{g['signature']}]  {', '.join(g['iterations'][:8])}")
    return 0


def add_parser(sub: Any) -> None:
    sp = sub.add_parser("triage", help="explain crashes: console signature and, with debug info, the vmcore",
                        description="Writes triage.json and triage.md into each crashed iteration folder.")
    sp.add_argument("path", type=Path, metavar="PATH", help="an iteration folder or a campaign folder (iter-*/)")
    sp.add_argument("--no-vmcore", action="store_true", help="console triage only; do not open vmcores")
    sp.add_argument("--fetch-debuginfo", action="store_true",
                    help="download and cache the kernel's -dbg package if needed (~860 MB, once per kernel)")
    sp.set_defaults(func=cmd_triage)

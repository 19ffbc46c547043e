"""``mlx5lab fuzz``: the nightly fuzzer of unload ordering; ``mlx5lab fuzz replay PROG``: run one program.

Exit status of a fuzz run: 0 nothing new, 1 a new bug, 3 infrastructure failures only, 2 usage or set-up
error, 130 interrupted (every finished program and crash is kept; run it again to go on).
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path
from typing import Any

from mlx5image.variants import VARIANTS

from .. import Mlx5LabError
from . import common
from .cardopts import add_card, card_settings


def parse_duration(text: str) -> float:
    """``8h``, ``30m``, ``90s``, ``1h30m`` or plain seconds -> seconds."""
    m = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", text.strip())
    if not m or not any(m.groups()):
        raise argparse.ArgumentTypeError(f"a duration is like 8h, 30m, 1h30m or 90s, not {text!r}")
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s


def cmd_fuzz(args: argparse.Namespace) -> int:
    from ..fuzz.manager import FuzzConfig, Fuzzer

    if args.workdir is None:
        raise Mlx5LabError("mlx5lab fuzz needs --workdir DIR (the corpus and crash store live there)")
    if args.programs is None and args.duration is None:
        raise Mlx5LabError("say how long to fuzz: --programs N or --duration 8h")
    cfg = FuzzConfig(workdir=args.workdir, seed=args.seed, programs=args.programs, duration_s=args.duration,
                     variant=args.variant, kernel=args.kernel, minimize_tries=args.minimize_tries,
                     repro_runs=args.repro_runs, card=card_settings(args) or None,
                     seed_programs=tuple(_seed_texts(args.seed_program)), triage_vmcore=not args.no_vmcore,
                     jobs=args.jobs, cluster=args.cluster, boot=args.boot)
    fuzzer = Fuzzer(cfg, common.progress)
    common.progress(f"fuzzing in {fuzzer.dir.path} from program {fuzzer.index} (seed {args.seed}, variant "
                    f"{args.variant}, kernel {fuzzer.image.kernel_release}, {fuzzer.jobs} program(s) at a time, "
                    f"{args.boot} boots); reports: {fuzzer.dir.report_md}")
    status = fuzzer.loop()
    print(f"report: {fuzzer.dir.report_md} and {fuzzer.dir.report_html}")
    return status


def _seed_texts(paths: list[Path]) -> list[str]:
    from ..fuzz.program import ProgramError, parse

    texts = []
    for p in paths:
        try:
            texts.append(parse(p.read_text()).text())
        except (OSError, ProgramError) as exc:
            raise Mlx5LabError(f"seed program {p}: {exc}") from exc
    return texts


def cmd_replay(args: argparse.Namespace) -> int:
    from ..fuzz.manager import replay
    from ..fuzz.program import ProgramError, parse

    try:
        program = parse(args.program.read_text())
    except OSError as exc:
        raise Mlx5LabError(f"cannot read {args.program}: {exc}") from exc
    except ProgramError as exc:
        raise Mlx5LabError(f"{args.program}: {exc}") from exc
    folder = args.out or Path(tempfile.mkdtemp(prefix="mlx5lab-replay-"))
    results = replay(program, folder, args.repeat, variant=args.variant, kernel=args.kernel,
                     progress=common.progress, card=card_settings(args) or None, boot=args.boot)
    found = [r for r in results if r.outcome.is_finding]
    for title in sorted({r.title for r in found}):
        print(f"{sum(r.title == title for r in found)}/{len(results)} x {title}")
    print(f"{len(found)}/{len(results)} runs found something; run folders in {folder}")
    return 1 if found else (3 if any(r.outcome.value == "infra" for r in results) else 0)


def _common(sp: argparse.ArgumentParser) -> None:
    common.add_kernel(sp)
    sp.add_argument("--variant", choices=VARIANTS, default="stock",
                    help="stock mlx5_core or the positive control (vulnerable)")
    add_card(sp)
    common.add_boot(sp)


def add_parser(sub: Any) -> None:
    sp = sub.add_parser("fuzz", help="fuzz the ordering of teardown, reload, device events and readers",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("--workdir", type=Path, help="the fuzzer's folder: corpus, crashes, runs, reports")
    sp.add_argument("--programs", type=int, help="stop after N programs")
    sp.add_argument("--duration", type=parse_duration, help="stop after this long (8h, 30m, 90s)")
    sp.add_argument("--seed", type=int, default=1, help="same seed, same programs (for the same corpus)")
    sp.add_argument("--minimize-tries", type=int, default=24,
                    help="guest runs a new bug's reproducer minimisation may spend (0: none)")
    sp.add_argument("--repro-runs", type=int, default=5, help="runs that measure a reproducer's rate")
    sp.add_argument("--seed-program", type=Path, action="append", default=[], metavar="PROG",
                    help="a program to run first (repeatable), e.g. a known reproducer to check")
    sp.add_argument("--no-vmcore", action="store_true",
                    help="triage findings from the console only (no drgn reading of the vmcore)")
    _common(sp)
    common.add_pool(sp, default_auto=False)  # the programs of a seed depend on (seed, N): k follows k - N's result
    sp.set_defaults(func=cmd_fuzz)
    fsub = sp.add_subparsers(dest="fuzz_command")
    rp = fsub.add_parser("replay", help="run one program (on any kernel, variant and card), N times")
    rp.add_argument("program", type=Path, metavar="PROG")
    rp.add_argument("--repeat", type=int, default=1)
    rp.add_argument("--out", type=Path, help="folder for the run folders (default: a temporary one, kept)")
    _common(rp)
    rp.set_defaults(func=cmd_replay)

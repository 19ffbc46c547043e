"""Options and helpers that several commands share, defined once."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mlx5image.build import GuestImage, ensure_image

DEFAULT_SPEEDS = [100000, 25000]


def progress(msg: str) -> None:
    print(f"[mlx5lab] {msg}", file=sys.stderr, flush=True)


def add_kernel(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--kernel", metavar="VERSION|PATH.deb", default=os.environ.get("MLX5LAB_KERNEL") or None,
                    help="guest kernel: a Debian kernel release (6.1.0-57-amd64) or a linux-image .deb; "
                         "default: what bookworm's linux-image-amd64 depends on")


def add_speeds(sp: argparse.ArgumentParser, help: str | None = None) -> None:
    sp.add_argument("--speeds", type=speeds, default=list(DEFAULT_SPEEDS), metavar="MBPS[,MBPS...]",
                    help=help or "one emulated mlx5 function per speed, in one slot (default: 100000,25000)")


def add_runs(sp: argparse.ArgumentParser, default: int = 5) -> None:
    sp.add_argument("-n", "--runs", type=int, default=default)


def add_path_specs(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--path", dest="paths", action="append", type=path_spec, metavar="NAME[:K=V,...]",
                    help="an unload/reload path (`mlx5lab paths` lists them), optionally with arguments, e.g. "
                         "unbind-bind:fn=1; repeat for several; default: every path")


def path_spec(s: str) -> tuple[str, dict[str, str] | None]:
    """``NAME`` (None: the path's usual argument sets) or ``NAME:K=V,...`` (exactly those arguments)."""
    from ..paths import PathArgError, parse_spec

    try:
        name, args = parse_spec(s)
    except PathArgError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name, (args if ":" in s else None)


def image(args: argparse.Namespace) -> GuestImage:
    return ensure_image(args.kernel, progress=progress)


def path(s: str) -> Path:
    return Path(s).resolve()


def speeds(s: str) -> list[int]:
    try:
        values = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"speeds are integers in Mb/s, comma-separated: {s!r}") from None
    if not 1 <= len(values) <= 8:
        raise argparse.ArgumentTypeError("a card has 1 to 8 functions")
    return values

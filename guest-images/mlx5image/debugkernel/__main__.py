"""``python -m mlx5image.debugkernel [NAME]``: build (or find) a debug kernel and print its folder."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import ImageError
from .recipe import NAME_PREFIX, SOURCES, ensure


def main(argv: Sequence[str] | None = None) -> int:
    default = NAME_PREFIX + next(iter(SOURCES))
    parser = argparse.ArgumentParser(prog="python -m mlx5image.debugkernel",
                                     description="Build (or find) the debug kernel and print its folder.")
    parser.add_argument("name", nargs="?", default=default, help=f"debug kernel name (default {default})")
    parser.add_argument("-j", "--jobs", type=int, help="make -j (default: the number of CPUs)")
    args = parser.parse_args(argv)
    try:
        dk = ensure(args.name, progress=lambda m: print(m, file=sys.stderr, flush=True), jobs=args.jobs)
    except ImageError as err:
        print(f"mlx5image.debugkernel: {err}", file=sys.stderr)
        return 2
    print(f"{dk.name}: {dk.release}, built in {dk.build_seconds / 60:.1f} min", file=sys.stderr)
    print(dk.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())

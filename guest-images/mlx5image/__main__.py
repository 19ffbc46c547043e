"""``python -m mlx5image [--kernel X]``: build (or find) the guest image and print its folder."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .build import ensure_image
from .errors import ImageError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlx5image", description="Build (or find) the guest image and print its folder."
    )
    parser.add_argument(
        "--kernel",
        help="kernel release (e.g. 6.1.0-56-amd64) or path to a linux-image .deb; "
        "default: what Debian's linux-image-amd64 depends on",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the image folder")
    args = parser.parse_args(argv)

    def progress(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    try:
        image = ensure_image(args.kernel, progress=progress)
    except ImageError as err:
        print(f"mlx5image: {err}", file=sys.stderr)
        return 2
    print(image.directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())

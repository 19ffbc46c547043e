"""``mlx5lab image``: build (or find cached) the guest image, its variants and triage's debug info."""

from __future__ import annotations

import argparse
from typing import Any

from mlx5image.variants import VARIANTS

from . import common


def cmd_image(args: argparse.Namespace) -> int:
    img = common.image(args)
    print(img.directory)
    for variant in args.variant:
        from mlx5image.variants import ensure_variant

        print(ensure_variant(img, variant, progress=common.progress).initrd.parent)
    if args.debuginfo:
        from ..triage.debuginfo import fetch_debuginfo

        print(fetch_debuginfo(img.kernel_release, progress=common.progress).vmlinux.parent)
    return 0


def add_parser(sub: Any) -> None:
    sp = sub.add_parser("image", help="build (or find cached) the guest image and print its folder")
    common.add_kernel(sp)
    sp.add_argument("--variant", action="append", default=[], choices=VARIANTS,
                    help="also build this variant (the race reader; vulnerable: the positive control's module)")
    sp.add_argument("--debuginfo", action="store_true",
                    help="also fetch the kernel's debug info for vmcore triage (about 860 MB once)")
    sp.set_defaults(func=cmd_image)

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


def add_kernel_release(sp: argparse.ArgumentParser) -> None:
    """``--kernel`` alone (``verify-fix`` takes its patches its own way)."""
    sp.add_argument("--kernel", metavar="VERSION|PATH.deb", default=os.environ.get("MLX5LAB_KERNEL") or None,
                    help="guest kernel: a Debian kernel release of any suite from bullseye to sid "
                         "(6.1.0-57-amd64, 6.12.118+deb13-amd64) or its .deb files, comma-separated, or the "
                         "debug kernel debug-6.1.192 (KASAN, lockdep; built by make debug-kernel); "
                         "default: what bookworm's linux-image-amd64 depends on")


def add_kernel(sp: argparse.ArgumentParser) -> None:
    """``--kernel``, and the driver's ``--patch``/``--module-src`` that every command with a guest takes."""
    add_kernel_release(sp)
    sp.add_argument("--patch", dest="patches", action="append", default=[], type=path, metavar="FILE",
                    help="a unified diff applied to the guest kernel's Debian mlx5 source, rebuilt out of tree "
                         "(repeatable, applied in order)")
    sp.add_argument("--module-src", type=path, default=None, metavar="DIR",
                    help="build mlx5_core from this mlx5 source tree (a kernel tree or its "
                         "drivers/net/ethernet/mellanox) instead of Debian's")


def driver_variant(args: argparse.Namespace, base: str) -> str:
    """``base`` with the command line's ``--patch`` and ``--module-src`` folded in (a variant name)."""
    patches, src = getattr(args, "patches", []), getattr(args, "module_src", None)
    if not patches and src is None:
        return base
    from mlx5image.driver import variant_name

    return variant_name(base, patches, src)


def fold_driver_options(args: argparse.Namespace) -> None:
    """After parsing: fold ``--patch``/``--module-src`` into a command's ``variant`` (a name or a list of
    names), so every command that builds its image from ``args.variant`` gets the patched driver."""
    if not getattr(args, "patches", None) and getattr(args, "module_src", None) is None:
        return
    variant = getattr(args, "variant", None)
    if isinstance(variant, str):
        args.variant = driver_variant(args, variant)
    elif isinstance(variant, list):
        args.variant = [driver_variant(args, v) for v in (variant or ["stock"])]


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
    """The guest image of ``--kernel``; with ``--patch``/``--module-src`` (commands without ``--variant``)
    the stock variant with the patched mlx5_core."""
    img = ensure_image(args.kernel, progress=progress)
    if not hasattr(args, "variant") and (getattr(args, "patches", None) or getattr(args, "module_src", None)):
        from mlx5image.variants import ensure_variant

        img = ensure_variant(img, driver_variant(args, "stock"), progress=progress)
    return img


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


def add_boot(sp: argparse.ArgumentParser) -> None:
    from ..vm.snapshot import BOOT_MODES

    sp.add_argument("--boot", choices=BOOT_MODES, default="classic",
                    help="classic: boot the kernel every iteration; snapshot: restore a guest saved without its "
                         "card and hot-plug the card (faster; README: Snapshot boots)")


def jobs_arg(text: str) -> int:
    """``--jobs N|auto`` as an argparse type: guests at once, at least one (campaign.pool.parse_jobs)."""
    from ..campaign.pool import parse_jobs

    try:
        return parse_jobs(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_pool(sp: argparse.ArgumentParser, default_auto: bool = True) -> None:
    """``--jobs`` (guests at once; not given: None, which the runner reads as what suits this machine, or 1
    where ``default_auto`` is off, as the fuzzer's programs depend on it; on a cluster, every guest slot)
    and ``--cluster`` (a Dask scheduler's address)."""
    from ..campaign.pool import default_jobs

    sp.add_argument("--jobs", "-j", type=jobs_arg, default=None, metavar="N|auto",
                    help=f"guests at once, each with its own card and folders (auto: {default_jobs()} here, one "
                         f"per 2 cores and 4 GiB free; default {'auto' if default_auto else 1}, or with "
                         "--cluster every guest slot of its workers)")
    sp.add_argument("--cluster", metavar="tcp://HOST:8786",
                    help="run the iterations on this Dask scheduler's workers (README: Campaigns at scale)")

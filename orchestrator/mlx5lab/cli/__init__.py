"""The mlx5lab command line."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from mlx5image.build import GuestImage, ImageError, ensure_image

from .. import Mlx5LabError
from . import control as controlcmd
from . import race as racecmd
from . import trace as tracecmd
from . import triage as triagecmd


def _progress(msg: str) -> None:
    print(f"[mlx5lab] {msg}", file=sys.stderr, flush=True)


def _image(args: argparse.Namespace) -> GuestImage:
    return ensure_image(args.kernel, progress=_progress)


def cmd_image(args: argparse.Namespace) -> int:
    img = _image(args)
    print(img.directory)
    for variant in args.variant:
        from mlx5image.variants import ensure_variant

        print(ensure_variant(img, variant, progress=_progress).initrd.parent)
    if args.debuginfo:
        from ..triage.debuginfo import fetch_debuginfo

        print(fetch_debuginfo(img.kernel_release, progress=_progress).vmlinux.parent)
    return 0


def cmd_boot(args: argparse.Namespace) -> int:
    from mlx5dev.card import CardConfig

    from ..vm.machine import Machine, MachineConfig

    img = _image(args)
    card = None if args.no_card else CardConfig.from_speeds(args.speeds)
    cfg = MachineConfig(image=img, workdir=args.keep, memory_mb=args.memory, card=card)
    with Machine(cfg) as m:
        _progress(f"booting {img.kernel_release} ({'PVH' if img.pvh else 'bzImage'}, {m.accel})")
        t = m.wait_ssh(timeout=args.timeout)
        _progress(f"SSH ready after {t:.2f} s")
        if args.run is None:
            res = m.run("uname -a; cat /proc/cmdline; ls /sys/class/net", timeout=args.timeout)
        else:
            res = m.run(args.run, timeout=args.timeout)
        sys.stdout.write(res.stdout)
        sys.stderr.write(res.stderr)
        sys.stdout.flush()
        return res.status


def cmd_bench_boot(args: argparse.Namespace) -> int:
    from ..bench import bench_boot

    img = _image(args)
    _progress(f"{args.runs} boots of {img.kernel_release}")
    init, ssh = bench_boot(img, args.runs)
    print(init.line("QEMU start -> init reached"))
    print(ssh.line("QEMU start -> SSH ready"))
    return 0


def cmd_bench_device(args: argparse.Namespace) -> int:
    from ..bench import bench_device

    img = _image(args)
    _progress(f"{args.runs} boots with a card of {len(args.speeds)} functions")
    for line in bench_device(img, args.runs, args.speeds).lines():
        print(line)
    return 0


def cmd_bench_race(args: argparse.Namespace) -> int:
    import tempfile

    from mlx5image.variants import ensure_variant

    from ..bench import bench_race

    img = ensure_variant(_image(args), args.variant, progress=_progress)
    _progress(f"{args.runs} race iterations, variant {args.variant}")
    with tempfile.TemporaryDirectory(prefix="mlx5lab-bench-race-") as tmp:
        spread, counts = bench_race(img, args.runs, Path(tmp) / "campaign")
    print(spread.line("iteration, boot to verdict"))
    print(f"{'iterations per hour':<34} {3600 / statistics.median(spread.values):6.0f}   outcomes {counts}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlx5lab", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    def kernel_opt(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--kernel", metavar="VERSION|PATH.deb", default=os.environ.get("MLX5LAB_KERNEL") or None,
                        help="guest kernel: a Debian kernel release (6.1.0-56-amd64) or a linux-image .deb; "
                             "default: what bookworm's linux-image-amd64 depends on")

    sp = sub.add_parser("image", help="build (or find cached) the guest image and print its folder")
    kernel_opt(sp)
    sp.add_argument("--variant", action="append", default=[], choices=("stock", "vulnerable"),
                    help="also build this variant (the race reader; vulnerable: the positive control's module)")
    sp.add_argument("--debuginfo", action="store_true",
                    help="also fetch the kernel's debug info for vmcore triage (about 860 MB once)")
    sp.set_defaults(func=cmd_image)

    sp = sub.add_parser("boot", help="boot a guest, run a command, print its output, exit with its status")
    kernel_opt(sp)
    sp.add_argument("--run", metavar="CMD", help="shell command to run in the guest")
    sp.add_argument("--timeout", type=float, default=120.0, help="seconds for boot and for the command")
    sp.add_argument("--memory", type=int, default=1024, help="guest RAM in MiB")
    sp.add_argument("--keep", type=_path, default=None, metavar="DIR",
                    help="keep the run folder (console log, QEMU stderr, device traces) in DIR")
    sp.add_argument("--speeds", type=_speeds, default=[100000, 25000], metavar="MBPS[,MBPS...]",
                    help="one emulated mlx5 function per speed, in one slot (default: 100000,25000)")
    sp.add_argument("--no-card", action="store_true", help="boot without the emulated ConnectX card")
    sp.set_defaults(func=cmd_boot)

    tracecmd.add_parser(sub)
    controlcmd.add_parser(sub)
    racecmd.add_parser(sub, kernel_opt, _speeds)
    triagecmd.add_parser(sub)

    bp = sub.add_parser("bench", help="benchmarks that print their figures")
    bsub = bp.add_subparsers(dest="bench", required=True)
    sp = bsub.add_parser("boot", help="QEMU start -> SSH ready, next to QEMU start -> init reached")
    kernel_opt(sp)
    sp.add_argument("-n", "--runs", type=int, default=5)
    sp.set_defaults(func=cmd_bench_boot)
    sp = bsub.add_parser("device", help="boot -> both ports up; command latency and rate at the device")
    kernel_opt(sp)
    sp.add_argument("-n", "--runs", type=int, default=5)
    sp.add_argument("--speeds", type=_speeds, default=[100000, 25000], metavar="MBPS[,MBPS...]")
    sp.set_defaults(func=cmd_bench_device)
    sp = bsub.add_parser("race", help="race iterations: boot to verdict, and iterations per hour")
    kernel_opt(sp)
    sp.add_argument("-n", "--runs", type=int, default=5)
    sp.add_argument("--variant", choices=("stock", "vulnerable"), default="stock")
    sp.set_defaults(func=cmd_bench_race)
    return p


def _path(s: str) -> Path:
    return Path(s).resolve()


def _speeds(s: str) -> list[int]:
    try:
        speeds = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"speeds are integers in Mb/s, comma-separated: {s!r}") from None
    if not 1 <= len(speeds) <= 8:
        raise argparse.ArgumentTypeError("a card has 1 to 8 functions")
    return speeds


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, _terminate)  # SIGTERM cleans up like Ctrl-C
    try:
        return int(args.func(args))
    except (Mlx5LabError, ImageError, FileNotFoundError, TimeoutError, ConnectionError) as exc:
        print(f"mlx5lab: error: {exc}", file=sys.stderr)
        return 2
    except argparse.ArgumentTypeError as exc:
        print(f"mlx5lab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mlx5lab: interrupted; guest and helpers stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""``mlx5lab boot``: boot a guest with the emulated card, run a command, exit with its status."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import common
from .cardopts import add_card, card_settings


def cmd_boot(args: argparse.Namespace) -> int:
    from mlx5dev.card import CardConfig

    from ..vm.machine import Machine, MachineConfig

    img = common.image(args)
    card = None if args.no_card else CardConfig.from_speeds(args.speeds, **card_settings(args))
    cfg = MachineConfig(image=img, workdir=args.keep, memory_mb=args.memory, card=card)
    with Machine(cfg) as m:
        common.progress(f"booting {img.kernel_release} ({'PVH' if img.pvh else 'bzImage'}, {m.accel})")
        t = m.wait_ssh(timeout=args.timeout)
        common.progress(f"SSH ready after {t:.2f} s")
        res = m.run(args.run if args.run is not None else "uname -a; cat /proc/cmdline; ls /sys/class/net",
                    timeout=args.timeout)
        sys.stdout.write(res.stdout)
        sys.stderr.write(res.stderr)
        sys.stdout.flush()
        return res.status


def add_parser(sub: Any) -> None:
    sp = sub.add_parser("boot", help="boot a guest, run a command, print its output, exit with its status")
    common.add_kernel(sp)
    sp.add_argument("--run", metavar="CMD", help="shell command to run in the guest")
    sp.add_argument("--timeout", type=float, default=120.0, help="seconds for boot and for the command")
    sp.add_argument("--memory", type=int, default=1024, help="guest RAM in MiB")
    sp.add_argument("--keep", type=common.path, default=None, metavar="DIR",
                    help="keep the run folder (console log, QEMU stderr, device traces) in DIR")
    common.add_speeds(sp)
    add_card(sp)
    sp.add_argument("--no-card", action="store_true", help="boot without the emulated ConnectX card")
    sp.set_defaults(func=cmd_boot)

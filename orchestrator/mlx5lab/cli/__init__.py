"""The mlx5lab command line: one module per command, each with ``add_parser(subparsers)``.

Shared options (``--kernel``, ``--speeds``, ``-n``) and the progress printer live in :mod:`.common`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from mlx5image.build import ImageError

from .. import Mlx5LabError
from . import bench, boot, common, control, controls, fuzz, image, paths, race, shell, trace, triage, verify_fix

#: In the order ``mlx5lab --help`` lists them.
COMMANDS = (image, boot, shell, trace, control, paths, controls, race, verify_fix, fuzz, triage, bench)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlx5lab", description="mlx5lab: a hardware-free test bed for mlx5_core")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return p


# paramiko and qemu.qmp log every failure they then raise to the caller at ERROR, with its traceback: an
# SSH banner refused while a guest still boots (twenty lines per retry, ten retries a second), a QMP socket
# reset as QEMU exits. The callers handle each (retry, or an error or infrastructure result that names the
# cause); --verbose shows the libraries' own lines again.
LIBRARY_LOGGERS = ("paramiko", "qemu.qmp")


def quiet_libraries(verbose: bool) -> None:
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.CRITICAL)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    quiet_libraries(args.verbose)
    signal.signal(signal.SIGTERM, _terminate)  # SIGTERM cleans up like Ctrl-C
    signal.signal(signal.SIGHUP, _terminate)  # and so does the terminal going away (children have their own
    # sessions: only this process sees it)
    try:
        common.fold_driver_options(args)
        return int(args.func(args))
    except (Mlx5LabError, ImageError, FileNotFoundError, TimeoutError, ConnectionError,
            argparse.ArgumentTypeError) as exc:
        print(f"mlx5lab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            print("mlx5lab: interrupted; guest and helpers stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

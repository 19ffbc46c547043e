"""The device server: ``python -m mlx5dev serve --dir DIR [--card JSON]``.

Creates the vfio-user sockets, the control socket and the command traces named in :mod:`mlx5dev.rundir`;
runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from .card import Card, CardConfig
from .control import ControlServer
from .rundir import CardDir
from .tap import TapError


def serve(args: argparse.Namespace) -> int:
    config = CardConfig.from_json(args.card) if args.card else CardConfig()
    args.dir.mkdir(parents=True, exist_ok=True)
    try:
        card = Card(config, args.dir)
    except TapError as e:
        print(f"mlx5dev: {e}", file=sys.stderr)
        return 2
    control = ControlServer(card, CardDir(args.dir).control_socket)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    card.start()
    threading.Thread(target=control.serve_forever, name="control", daemon=True).start()
    logging.getLogger("mlx5dev").info("serving %d functions in %s", len(config.functions), args.dir)
    try:
        stop.wait()
    finally:
        control.close()
        card.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mlx5dev", description="the emulated ConnectX card's device server")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("serve", help="serve a card over vfio-user until SIGTERM")
    sp.add_argument("--dir", type=Path, required=True, help="folder for sockets and traces")
    sp.add_argument("--card", help="card configuration as JSON (default: two functions, 100G and 25G)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return serve(args)


if __name__ == "__main__":
    raise SystemExit(main())

"""Serve a PCI function with a plain-memory BAR0 (no mlx5 model): a transport smoke-test server.

python -m mlx5dev.vfio_user --socket-path=/tmp/vfu.sock [--once] [-v]
"""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path

from ..pci import PciFunction, PciFunctionConfig, RegisterFileBar
from .server import VfioUserServer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mlx5dev.vfio_user", description=__doc__)
    ap.add_argument("--socket-path", required=True, type=Path)
    ap.add_argument("--once", action="store_true", help="exit after the first client disconnects")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    cfg = PciFunctionConfig()
    server = VfioUserServer(
        args.socket_path, lambda mem, irq: PciFunction(cfg, RegisterFileBar(cfg.bar0_size))
    )
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    signal.signal(signal.SIGINT, lambda *_: server.stop())
    try:
        if args.once:
            server.serve_one()
        else:
            server.serve_forever()
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

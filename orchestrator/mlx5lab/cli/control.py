"""``mlx5lab control``: read or change a running card through its control socket."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mlx5dev.rundir import CardDir

from ..rundir import RunDir
from ..vm.card import ControlClient


def _value(text: str) -> Any:
    """``up=false`` -> False, ``mbps=40000`` -> 40000, ``delay_ms=2.5`` -> 2.5, ``opcode=ACCESS_REG`` -> str."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def cmd_control(args: argparse.Namespace) -> int:
    socket_path: Path = args.socket
    if socket_path.is_dir():  # a run folder or its card/ folder
        candidates = (CardDir(socket_path).control_socket, RunDir(socket_path).card.control_socket)
        socket_path = next((p for p in candidates if p.exists()), candidates[0])
    fields: dict[str, Any] = {}
    for item in args.fields:
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"fields are key=value, not {item!r}")
        fields[key] = _value(value)
    print(json.dumps(ControlClient(socket_path).request(args.op, **fields), indent=2))
    return 0


def add_parser(sub: Any) -> None:
    sp = sub.add_parser(
        "control", help="read or change a running card (status, set_link, set_speed, add_fault, ...)",
        description="Examples: `mlx5lab control RUN status`; `mlx5lab control RUN set_speed function=0 "
                    "mbps=40000`; `mlx5lab control RUN set_link function=1 up=false`; `mlx5lab control RUN "
                    "add_fault function=0 opcode=ACCESS_REG register=PTYS delay_ms=500 count=3`; `mlx5lab control RUN "
                    "fw_fatal synd=1` (a firmware assert); `mlx5lab control RUN sync_reset`. RUN is a run "
                    "folder (boot --keep DIR), its card/ folder, or the control.sock itself.")
    sp.add_argument("socket", type=Path, metavar="RUN|SOCKET")
    sp.add_argument("op", help="status, set_link, set_speed, flap_link, add_fault (delay_ms, status, drop, "
                               "hold), release_held, remove_fault, clear_faults; the card's firmware: "
                               "fw_fatal, fw_dead, freeze_health_counter, sync_reset, set_health, "
                               "clear_health, firmware")
    sp.add_argument("fields", nargs="*", metavar="KEY=VALUE")
    sp.set_defaults(func=cmd_control)

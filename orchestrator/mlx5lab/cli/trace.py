"""``mlx5lab trace``: read the device's JSON-lines command traces, filtered."""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path
from typing import Any

from mlx5dev.mlx5.trace import format_record, read_trace


def _failed(r: dict[str, Any]) -> bool:
    return r.get("kind") != "cmd" or bool(r.get("status")) or bool(r.get("delivery"))


def _number_or_name(text: str | None) -> int | str | None:
    """``0x805`` / ``2053`` -> 2053; a name stays a name; None stays None."""
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        return text


def select(args: argparse.Namespace) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for path in args.files:
        if not path.is_file():
            raise FileNotFoundError(f"no trace file {path}")
        records += read_trace(path, opcode=_number_or_name(args.opcode), status=_number_or_name(args.status),
                              function=args.function)
    if args.register:
        reg = _number_or_name(args.register)
        if isinstance(reg, int):
            records = [r for r in records if r.get("reg_id") == reg]
        else:
            records = [r for r in records if str(r.get("reg", "")).upper() == reg.upper()]
    if args.failed:
        records = [r for r in records if _failed(r)]
    if len(args.files) > 1:
        records.sort(key=lambda r: r.get("ts_ns", 0))
    return records


def cmd_trace(args: argparse.Namespace) -> int:
    records = select(args)
    if args.summary:
        counts = collections.Counter((r.get("function"), r.get("op", r.get("kind")), r.get("status_name", ""))
                                     for r in records)
        for (fn, op, status), n in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0]))):
            print(f"{n:6d}  {fn}  {op}  {status}")
    else:
        for r in records:
            print(json.dumps(r) if args.json else format_record(r))
    if args.fail_on_unknown and any(r.get("status_name") == "BAD_OP" for r in records):
        print("mlx5lab: unknown opcodes in the trace", file=sys.stderr)
        return 1
    return 0


def add_parser(sub: Any) -> None:
    sp = sub.add_parser("trace", help="show a device command trace (trace-fn<i>.jsonl), filtered")
    sp.add_argument("files", nargs="+", type=Path, metavar="FILE")
    sp.add_argument("--opcode", help="opcode number or name (ACCESS_REG, 0x805)")
    sp.add_argument("--status", help="command status number or name (BAD_OP, 0x2)")
    sp.add_argument("--function", help="function name (fn0, fn1)")
    sp.add_argument("--register", help="ACCESS_REG register name or id (PTYS)")
    sp.add_argument("--failed", action="store_true", help="only failed commands and rejected input")
    sp.add_argument("--summary", action="store_true", help="counts per function, opcode and status")
    sp.add_argument("--json", action="store_true", help="print the raw JSON records")
    sp.add_argument("--fail-on-unknown", action="store_true", help="exit 1 if any command got BAD_OP")
    sp.set_defaults(func=cmd_trace)

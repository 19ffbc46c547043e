"""`mlx5lab trace` filters, on records written by the model's own CommandTrace."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from mlx5dev.mlx5.trace import CommandTrace
from mlx5lab.cli import build_parser
from mlx5lab.cli.trace import select

RECORDS = [
    {"kind": "cmd", "function": "fn0", "opcode": 0x805, "op": "ACCESS_REG", "reg": "PTYS", "reg_id": 0x5004,
     "status": 0, "status_name": "OK", "delivery": 0},
    {"kind": "cmd", "function": "fn0", "opcode": 0x805, "op": "ACCESS_REG", "reg": "PAOS", "reg_id": 0x5006,
     "status": 3, "status_name": "BAD_PARAM", "delivery": 0},
    {"kind": "cmd", "function": "fn1", "opcode": 0x104, "op": "ENABLE_HCA", "status": 0, "status_name": "OK",
     "delivery": 0},
    {"kind": "reject", "function": "fn1", "detail": "doorbell for an idle slot"},
]


@pytest.fixture
def trace_file(tmp_path: Path) -> Path:
    path = tmp_path / "trace-fn0.jsonl"
    trace = CommandTrace(path)
    for r in RECORDS:
        trace.emit(dict(r))
    trace.close()
    return path


def args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["trace", *argv])


@pytest.mark.parametrize(("argv", "expected"), [
    (["--opcode", "0x805"], 2), (["--opcode", "2053"], 2), (["--opcode", "ACCESS_REG"], 2),
    (["--register", "PTYS"], 1), (["--register", "0x5006"], 1), (["--status", "0x3"], 1),
    (["--status", "BAD_PARAM"], 1), (["--function", "fn1"], 2), (["--failed"], 2),
])
def test_filters_by_number_and_by_name(trace_file: Path, argv: list[str], expected: int) -> None:
    assert len(select(args(str(trace_file), *argv))) == expected


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no trace file"):
        select(args(str(tmp_path / "nothing.jsonl")))

"""Coverage feedback from what the device and the kernel log saw; no kernel instrumentation needed.

A key is a tuple whose first element names its family:

``("cmd", state, op, op_mod, status)``
    one command of a function's trace: the function's state when it completed (below), the opcode name
    (``ACCESS_REG/PTYS`` for a register access), op_mod and the status name (``"dropped"`` for a command
    a fault never completed).
``("order", previous, op)``
    two consecutive commands of one function when either is a teardown command (TEARDOWN_HCA,
    DISABLE_HCA, DESTROY_*, DEALLOC_*, MANAGE_PAGES with op_mod 2, i.e. reclaim): the order in which the
    driver took its objects apart, and which readers' commands got between. An op_mod other than 0 is
    part of the name here (``MANAGE_PAGES#2``).
``("log", template)``
    an mlx5 kernel log line with what differs between two boots taken out (:func:`log_template`).

The function state machine, per function, in trace order (the state names a command's key before the
command changes it)::

    probing --INIT_HCA ok------------------------> up
    any ------TEARDOWN_HCA or DISABLE_HCA--------> teardown
    any ------firmware/info "halted"/"fatal"-----> error       (the firmware answers nothing)
    up, error --firmware/info: a reset happened--> teardown    (the function's objects are gone; a reset
                                                                while probing, e.g. at power-on, changes nothing)
    teardown, error --ENABLE_HCA-----------------> probing     (a reload)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlx5dev.mlx5.trace import read_trace

from ..crash import strip_timestamp
from ..rundir import RunDir, atomic_write_json, read_json, read_text

Key = tuple[Any, ...]

PROBING, UP, TEARDOWN, ERROR = "probing", "up", "teardown", "error"

_TEARDOWN_OPS = {"TEARDOWN_HCA", "DISABLE_HCA"}
_TEARDOWN_PREFIXES = ("DESTROY_", "DEALLOC_")
_MANAGE_PAGES_RECLAIM = 2  # mlx5_ifc.h: MLX5_PAGES_TAKE
# Trace details of a reset that happened (mlx5dev: device.py _restart, firmware.py reset); "sync reset
# requested" or "SW reset requested" are negotiations, not resets.
_RESET = re.compile(r"^(?:reset \(|(?:function|function-level|firmware) reset$)")
_HALT = re.compile(r"^(?:halted\b|fatal\b)")


def op_label(record: dict[str, Any]) -> str:
    """The opcode name of a command record, with the register for ACCESS_REG (``ACCESS_REG/PTYS``)."""
    op = str(record.get("op") or f"{record.get('opcode', 0):#x}")
    return f"{op}/{record['reg']}" if record.get("reg") else op


def is_teardown(record: dict[str, Any]) -> bool:
    op = str(record.get("op") or "")
    return (op in _TEARDOWN_OPS or op.startswith(_TEARDOWN_PREFIXES)
            or (op == "MANAGE_PAGES" and record.get("op_mod") == _MANAGE_PAGES_RECLAIM))


def _status(record: dict[str, Any]) -> str:
    if record.get("status_name"):
        return str(record["status_name"])
    return "dropped" if record.get("status") is None else str(record["status"])


class FunctionState:
    """The small state machine of one function (module docstring)."""

    def __init__(self) -> None:
        self.state = PROBING

    def feed(self, record: dict[str, Any]) -> str:
        """Advance on ``record``; return the state the record is keyed with (the one before it)."""
        before = self.state
        kind = record.get("kind")
        if kind == "cmd":
            op = record.get("op")
            if op in _TEARDOWN_OPS:
                self.state = TEARDOWN
            elif op == "INIT_HCA" and record.get("status") == 0 and before == PROBING:
                self.state = UP
            elif op == "ENABLE_HCA" and before in (TEARDOWN, ERROR):
                self.state = PROBING
        elif kind in ("firmware", "info"):
            detail = str(record.get("detail") or "")
            if _HALT.match(detail):
                self.state = ERROR
            elif _RESET.match(detail) and before in (UP, ERROR):
                self.state = TEARDOWN
        return before


def trace_keys(records: Iterable[dict[str, Any]]) -> set[Key]:
    """The command and order keys of trace records (one function's trace, or several: each function's
    records go through its own state machine and order)."""
    keys: set[Key] = set()
    states: dict[str, FunctionState] = {}
    previous: dict[str, dict[str, Any]] = {}
    for r in records:
        fn = str(r.get("function", ""))
        state = states.setdefault(fn, FunctionState()).feed(r)
        if r.get("kind") != "cmd":
            continue
        keys.add(("cmd", state, op_label(r), int(r.get("op_mod") or 0), _status(r)))
        prev = previous.get(fn)
        if prev is not None and (is_teardown(prev) or is_teardown(r)):
            keys.add(("order", _order_label(prev), _order_label(r)))
        previous[fn] = r
    return keys


def _order_label(record: dict[str, Any]) -> str:
    mod = int(record.get("op_mod") or 0)
    return op_label(record) + (f"#{mod}" if mod else "")


# "mlx5_core 0000:01:00.1: ", "mlx5_core 0000:01:00.0 eth1: ", "mlx5_core: "
_MLX5_PREFIX = re.compile(r"^mlx5_\w+(?: [0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])?(?: [\w.@-]+)?: ")
# mlx5_core_warn() and friends: "func:123:(pid 45): "
_FUNC_LINE_PID = re.compile(r"\b(\w+):\d+:\(pid \d+\): ")
_HEX = re.compile(r"\b0x[0-9a-fA-F]+\b|\b[0-9a-fA-F]{8,}\b")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)*(?![\w])")
_IFNAME = re.compile(r"\beth\d+\b")


def log_template(line: str) -> str | None:
    """An mlx5 console line as a template; None for other lines.

    ``[  3.4] mlx5_core 0000:01:00.1: func:123:(pid 45): text 0x1f 12`` -> ``func: text <hex> <n>``:
    no timestamp, device name, line number, pid or number (a version ``16.35.2000`` is one ``<n>``).
    """
    text = strip_timestamp(line)
    m = _MLX5_PREFIX.match(text)
    if m is None:
        return None
    text = text[m.end():]
    text = _FUNC_LINE_PID.sub(r"\1: ", text)
    text = _IFNAME.sub("<if>", text)
    text = _HEX.sub("<hex>", text)
    text = _NUMBER.sub("<n>", text)
    return " ".join(text.split())


def console_keys(text: str) -> set[Key]:
    return {("log", t) for t in map(log_template, text.splitlines()) if t}


def run_keys(run: Path | RunDir) -> set[Key]:
    """Every key of a run folder: each function's trace (``card/trace-fn<i>.jsonl``) and console.log."""
    rd = run if isinstance(run, RunDir) else RunDir(Path(run))
    keys = console_keys(read_text(rd.console))
    i = 0
    while (path := rd.card.trace(i)).is_file():
        keys |= trace_keys(read_trace(path))
        i += 1
    return keys


def key_text(key: Key) -> str:
    """A key for people: ``cmd up ACCESS_REG/PTYS 0 OK``."""
    return " ".join(str(part) for part in key)


class Coverage:
    """The set of keys seen so far; ``coverage.json`` in the work folder."""

    def __init__(self, keys: Iterable[Key] = ()) -> None:
        self._keys: set[Key] = {tuple(k) for k in keys}

    def add(self, keys: Iterable[Key]) -> set[Key]:
        """Add ``keys``; return those not seen before."""
        new = {tuple(k) for k in keys} - self._keys
        self._keys |= new
        return new

    def new(self, keys: Iterable[Key]) -> set[Key]:
        """The keys of ``keys`` not seen yet, without adding them."""
        return {tuple(k) for k in keys} - self._keys

    def keys(self) -> set[Key]:
        return set(self._keys)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple | list) and tuple(key) in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def size(self) -> int:
        return len(self._keys)

    def save(self, path: Path) -> Path:
        ordered = sorted(self._keys, key=lambda k: json.dumps(k))
        return atomic_write_json(path, {"size": len(ordered), "keys": [list(k) for k in ordered]})

    @classmethod
    def load(cls, path: Path) -> Coverage:
        """The coverage saved at ``path``; empty if there is none."""
        return cls(tuple(k) for k in read_json(path).get("keys", []) if isinstance(k, list))

"""Command trace: one JSON object per line for every command and every rejected guest input.

The writer is thread-safe and line-buffered so a crashed run still leaves a readable file, and a
bounded in-memory ring keeps the recent records for ``status()`` and unit tests. Records are also
sent to the ``mlx5dev.mlx5`` logger: every command at DEBUG (the quickest way to see the whole
command stream while bringing up a real driver), failed commands and refused input at INFO.

Record keys (absent when not applicable):
``kind`` ("cmd", "reject", "event", "info"), ``ts_ns`` (wall clock), ``function``, ``slot``,
``opcode``, ``op`` (name), ``op_mod``, ``reg_id``, ``reg`` (name), ``reg_write``, ``status``,
``status_name``, ``syndrome``, ``delivery``, ``delivery_name``, ``eqe`` (a CMD EQE was posted),
``t_doorbell_ns`` / ``t_done_ns`` (``time.monotonic_ns``), ``latency_us``, ``fault``, ``detail``.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

from .consts import Op, Status, name_of

log = logging.getLogger("mlx5dev.mlx5")


class CommandTrace:
    """Collects trace records; writes them to ``path`` (JSON lines) when one is given."""

    def __init__(self, path: str | os.PathLike[str] | None = None, ring: int = 4096) -> None:
        self.path = os.fspath(path) if path is not None else None
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        if self.path is not None:
            self._file = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - owned
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=ring)
        self.emitted = 0  # records written so far (``since()`` uses it as a cursor)

    def emit(self, record: dict[str, Any]) -> None:
        record.setdefault("ts_ns", time.time_ns())
        line = json.dumps(record, separators=(",", ":"), sort_keys=False)
        with self._lock:
            self.recent.append(record)
            self.emitted += 1
            if self._file is not None:
                self._file.write(line + "\n")
        failed = record.get("kind") == "reject" or record.get("status") or record.get("delivery")
        level = logging.INFO if failed else logging.DEBUG  # failures show up without DEBUG logging
        if log.isEnabledFor(level):
            log.log(level, "%s", format_record(record))

    def records(self, **filters: Any) -> list[dict[str, Any]]:
        """Recent in-memory records matching every ``key=value`` filter."""
        with self._lock:
            items = list(self.recent)
        return [r for r in items if all(r.get(k) == v for k, v in filters.items())]

    def since(self, cursor: int) -> list[dict[str, Any]]:
        """Records emitted after ``emitted`` was ``cursor`` (those still in the ring)."""
        with self._lock:
            n = min(self.emitted - cursor, len(self.recent))
            return list(self.recent)[len(self.recent) - n :] if n > 0 else []

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def format_record(r: dict[str, Any]) -> str:
    """A one-line summary for the debug log."""
    fn = r.get("function", "?")
    if r.get("kind") == "cmd":
        reg = f" reg={r['reg']}{'(w)' if r.get('reg_write') else ''}" if "reg" in r else ""
        fault = f" fault={r['fault']}" if r.get("fault") else ""
        detail = f" ({r['detail']})" if r.get("detail") else ""
        return (
            f"[{fn}] slot {r.get('slot')} {r.get('op')}(0x{r.get('opcode', 0):x}) op_mod {r.get('op_mod')}"
            f"{reg} -> {r.get('status_name')} synd 0x{r.get('syndrome', 0):x}"
            f" deliv {r.get('delivery_name')} eqe={r.get('eqe')} {r.get('latency_us')}us{fault}{detail}"
        )
    return f"[{fn}] {r.get('kind')}: {r.get('detail', '')} " + json.dumps(
        {k: v for k, v in r.items() if k not in ("kind", "detail", "function", "ts_ns")}
    )


def _match_enum(value: Any, want: int | str | None, enum: type) -> bool:
    if want is None:
        return True
    if isinstance(want, str):
        return value is not None and name_of(enum, value) == want.upper()
    return value == want


def iter_trace(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Records of a JSON-lines trace file; a torn last line is skipped."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def read_trace(
    path: str | os.PathLike[str],
    opcode: int | str | None = None,
    status: int | str | None = None,
    function: str | None = None,
) -> list[dict[str, Any]]:
    """Records of ``path`` filtered by opcode (number or name, e.g. ``"ACCESS_REG"``), command
    status (number or name, e.g. ``"BAD_OP"``) and function name."""
    return [
        r
        for r in iter_trace(path)
        if _match_enum(r.get("opcode"), opcode, Op)
        and _match_enum(r.get("status"), status, Status)
        and (function is None or r.get("function") == function)
    ]

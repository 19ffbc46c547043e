"""Fault injection for commands: per opcode (and register), delay and/or fail, for K commands or always.

A matching fault is consumed when a command is fetched from its slot. ``delay_ms`` postpones the
command's execution and completion (other slots keep running); ``status`` makes it fail with that
status and ``syndrome`` without running its handler; ``drop`` never completes it (the driver
times out after its command timeout: ``cmd.c: wait_func``, 60 s by default, plus 5 s of EQ recovery in events
mode); ``hold`` parks it until the control channel releases it (a late completion: ``cmd.c:
mlx5_cmd_comp_handler`` logs "Command completion arrived after timeout" and frees the leaked slot);
``corrupt_field`` answers with one output field set to ``corrupt_value`` (a firmware answer out of the range the
driver trusts, e.g. a huge ``num_pages`` or an object number it never created). The first matching fault in
insertion order wins.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Fault:
    opcode: int | None = None  # None: every opcode
    register_id: int | None = None  # ACCESS_REG only: match this register
    delay_ms: float = 0.0
    status: int | None = None  # fail with this command status
    syndrome: int = 0xE50F0000
    drop: bool = False
    hold: bool = False  # execute and complete only when released (Mlx5Function.release_held)
    corrupt_field: str | None = None  # a field of the command's output layout, overwritten after it ran
    corrupt_value: int = 0  # ... with this value (e.g. out of the range the driver expects)
    count: int | None = None  # remaining matches; None: always
    fault_id: int = field(default=0)
    hits: int = 0

    def matches(self, opcode: int, register_id: int | None) -> bool:
        if self.opcode is not None and self.opcode != opcode:
            return False
        return self.register_id is None or self.register_id == register_id

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, 0, 0.0, False) or k == "fault_id"}


def check_corruptible(opcode: int | None, field: str) -> None:
    """ValueError unless ``field`` is a field of ``opcode``'s output layout."""
    from . import dispatcher

    dispatcher._load_handlers()
    spec = dispatcher.REGISTRY.get(opcode) if opcode is not None else None
    if spec is None or spec.out is None:
        raise ValueError(f"corrupt_field needs an opcode with an output layout (got {opcode})")
    names = list(spec.out.fields)
    if field not in names:
        raise ValueError(f"{spec.out.name} has no field {field!r}; its fields: {', '.join(names)}")


class FaultTable:
    """Thread-safe list of :class:`Fault` rules (the control channel adds, the worker consumes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, fault: Fault) -> int:
        if fault.delay_ms < 0 or (fault.count is not None and fault.count <= 0):
            raise ValueError("delay_ms must be >= 0 and count > 0")
        if fault.corrupt_field is not None:
            check_corruptible(fault.opcode, fault.corrupt_field)
        with self._lock:
            fault.fault_id = next(self._ids)
            self._faults.append(fault)
        return fault.fault_id

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.fault_id != fault_id]
            return len(self._faults) != before

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.describe() for f in self._faults]

    def take(self, opcode: int, register_id: int | None) -> Fault | None:
        """The first fault matching this command, with its count consumed; a snapshot is returned."""
        with self._lock:
            for f in self._faults:
                if f.matches(opcode, register_id):
                    f.hits += 1
                    snap = Fault(**asdict(f))
                    if f.count is not None:
                        f.count -= 1
                        if f.count <= 0:
                            self._faults.remove(f)
                    return snap
        return None

"""The names of a card's run folder, shared by the device server and the orchestrator.

One definition, so ``python -m mlx5dev serve --dir DIR`` and the orchestrator that started it (and reads
its traces afterwards) can never disagree about a file name::

    DIR/fn<i>.sock          vfio-user socket of function i (QEMU's vfio-user-pci connects here)
    DIR/control.sock        the JSON-lines control channel
    DIR/trace-fn<i>.jsonl   function i's command trace, one JSON object per line
    DIR/device-server.log   the server's own log (stdout and stderr)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CardDir:
    path: Path

    def function_socket(self, i: int) -> Path:
        return self.path / f"fn{i}.sock"

    def trace(self, i: int) -> Path:
        return self.path / f"trace-fn{i}.jsonl"

    @property
    def control_socket(self) -> Path:
        return self.path / "control.sock"

    @property
    def log(self) -> Path:
        return self.path / "device-server.log"

    def sockets(self, functions: int) -> list[Path]:
        """Every socket the server creates for a card of ``functions`` functions (its readiness signal)."""
        return [self.function_socket(i) for i in range(functions)] + [self.control_socket]

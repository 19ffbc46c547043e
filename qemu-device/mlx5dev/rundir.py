"""The names of a card's run folder, shared by the device server and the orchestrator.

One definition, so ``python -m mlx5dev serve --dir DIR`` and the orchestrator that started it (and reads
its traces afterwards) can never disagree about a file name::

    DIR/fn<i>.sock          vfio-user socket of function i (QEMU's vfio-user-pci connects here); in a
                            folder too deep for a UNIX socket, a short stand-in (:func:`socket_path`)
    DIR/control.sock        the JSON-lines control channel
    DIR/trace-fn<i>.jsonl   function i's command trace, one JSON object per line
    DIR/device-server.log   the server's own log (stdout and stderr)
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

# sockaddr_un.sun_path holds 108 bytes with its terminating NUL (unix(7)); a deep run folder (a fuzzer's
# runs/NNNNNN-<hash>/card/ under a test's temporary folder) exceeds it
SUN_PATH_MAX = 107


def socket_path(path: Path) -> Path:
    """``path`` if a UNIX socket can be bound there, else a short stand-in derived from it alone (so the
    device server and the orchestrator find the same one): ``$TMPDIR/mlx5lab-sock-<hash>/<name>``."""
    if len(str(path).encode()) <= SUN_PATH_MAX:
        return path
    digest = hashlib.sha256(str(path.parent.resolve()).encode()).hexdigest()[:16]
    short = Path(tempfile.gettempdir()) / f"mlx5lab-sock-{digest}" / path.name
    short.parent.mkdir(mode=0o700, exist_ok=True)
    return short


def remove_socket(sock: Path) -> None:
    """Remove a socket of :func:`socket_path`, and its short stand-in's folder once that is empty."""
    sock.unlink(missing_ok=True)
    if sock.parent.name.startswith("mlx5lab-sock-"):
        with contextlib.suppress(OSError):  # another socket of the folder is still there
            sock.parent.rmdir()


@dataclass(frozen=True)
class CardDir:
    path: Path

    def function_socket(self, i: int) -> Path:
        return socket_path(self.path / f"fn{i}.sock")

    def trace(self, i: int) -> Path:
        return self.path / f"trace-fn{i}.jsonl"

    @property
    def control_socket(self) -> Path:
        return socket_path(self.path / "control.sock")

    @property
    def log(self) -> Path:
        return self.path / "device-server.log"

    def sockets(self, functions: int) -> list[Path]:
        """Every socket the server creates for a card of ``functions`` functions (its readiness signal)."""
        return [self.function_socket(i) for i in range(functions)] + [self.control_socket]

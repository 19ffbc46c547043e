"""A stand-in :class:`~mlx5dev.interfaces.BarDevice` for tests and transport smoke runs."""

from __future__ import annotations

import threading
from collections.abc import Callable


class RegisterFileBar:
    """Plain memory behind BAR0: reads return what was written (zeros after reset).

    Records every write as ``(offset, data)`` in :attr:`writes` and counts resets; ``on_write`` is
    called (on the caller's thread) after each write, e.g. to wake a test waiting for a doorbell.
    """

    def __init__(self, size: int, on_write: Callable[[int, bytes], None] | None = None) -> None:
        self.size = size
        self._mem = bytearray(size)
        self._lock = threading.Lock()
        self.writes: list[tuple[int, bytes]] = []
        self.reads = 0
        self.resets = 0
        self.on_write = on_write

    def mmio_read(self, offset: int, size: int) -> bytes:
        with self._lock:
            self.reads += 1
            return bytes(self._mem[offset : offset + size])

    def mmio_write(self, offset: int, data: bytes) -> None:
        with self._lock:
            self._mem[offset : offset + len(data)] = data
            self.writes.append((offset, bytes(data)))
        if self.on_write is not None:
            self.on_write(offset, bytes(data))

    def reset(self, function_only: bool = False) -> None:
        with self._lock:
            self._mem[:] = bytes(self.size)
            self.resets += 1

    def poke(self, offset: int, data: bytes) -> None:
        """Set memory contents without recording a guest write."""
        with self._lock:
            self._mem[offset : offset + len(data)] = data

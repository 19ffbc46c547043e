"""MSI-X eventfds from DEVICE_SET_IRQS, and the :class:`~mlx5dev.interfaces.InterruptSink` over them.

Writing an 8-byte 1 to a vector's eventfd makes QEMU deliver that MSI-X vector. ``fire`` runs on
the model's worker thread while the socket loop may be swapping eventfds, so both go through one
lock; the write happens under it so a vector's fd cannot be closed (and its number reused) mid-write.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter

from .framing import close_fds

log = logging.getLogger("mlx5dev.vfio_user")

_ONE = (1).to_bytes(8, "little")


def is_eventfd(fd: int) -> bool:
    """True if ``fd`` is an eventfd (Linux: its /proc link reads ``anon_inode:[eventfd]``)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventfd]"
    except OSError:
        return False


class MsixEventfds:
    """eventfd per MSI-X vector; implements ``InterruptSink`` (``fire``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fds: dict[int, int] = {}
        #: Vectors fired with no eventfd (or whose write failed), per vector.
        self.dropped: Counter[int] = Counter()
        #: Vectors delivered, per vector.
        self.delivered: Counter[int] = Counter()

    def assign(self, start: int, fds: list[int]) -> None:
        """Use ``fds`` for vectors ``start..start+len(fds)-1`` (taking ownership), closing replaced ones."""
        old: list[int] = []
        for fd in fds:
            os.set_blocking(fd, False)  # a stuck reader must never block fire()
        with self._lock:
            for i, fd in enumerate(fds):
                prev = self._fds.get(start + i)
                if prev is not None:
                    old.append(prev)
                self._fds[start + i] = fd
        close_fds(old)

    def unassign(self, start: int, count: int) -> None:
        with self._lock:
            old = [self._fds.pop(v) for v in range(start, start + count) if v in self._fds]
        close_fds(old)

    def clear(self) -> None:
        with self._lock:
            old = list(self._fds.values())
            self._fds.clear()
        close_fds(old)

    def assigned(self) -> dict[int, int]:
        with self._lock:
            return dict(self._fds)

    def fire(self, vector: int) -> None:
        with self._lock:
            fd = self._fds.get(vector)
            if fd is None:
                self.dropped[vector] += 1
                return
            try:
                os.write(fd, _ONE)
            except OSError as exc:
                self.dropped[vector] += 1
                log.warning("MSI-X vector %d: eventfd write failed: %s", vector, exc)
                return
            self.delivered[vector] += 1

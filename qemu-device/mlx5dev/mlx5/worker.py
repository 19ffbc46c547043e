"""The device's single worker thread: a time-ordered job heap.

Everything that touches guest memory or raises interrupts runs here, never on the thread that
called ``mmio_write`` (the vfio-user transport). Jobs due at the same time run in submission
order; a job scheduled in the future (an injected command delay) does not hold up later jobs.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("mlx5dev.mlx5")


class Worker:
    def __init__(self, name: str) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._stopping = False
        self.busy = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def stopped(self) -> bool:
        return self._stopping

    def submit(self, job: Callable[[], None], delay_ns: int = 0) -> None:
        due = time.monotonic_ns() + max(0, delay_ns)
        with self._cond:
            if self._stopping:
                return
            heapq.heappush(self._heap, (due, next(self._seq), job))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap) + (1 if self.busy else 0)

    def idle(self, timeout: float = 5.0) -> bool:
        """Wait until no job is queued or running (tests, reset); False on timeout."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._cond:
                if not self._heap and not self.busy:
                    return True
            time.sleep(0.001)
        return False

    def clear(self) -> int:
        """Drop every queued job (a running one finishes); the worker keeps running. Returns how many."""
        with self._cond:
            dropped = len(self._heap)
            self._heap.clear()
            return dropped

    def stop(self, timeout: float = 5.0) -> bool:
        """Drop queued jobs, let a running job finish, join. False if the thread did not exit."""
        with self._cond:
            self._stopping = True
            self._heap.clear()
            self._cond.notify_all()
        if threading.current_thread() is self._thread:
            return True
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("%s: worker did not stop within %.1fs (stuck in a DMA?)", self._thread.name, timeout)
            return False
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    if self._heap:
                        wait_ns = self._heap[0][0] - time.monotonic_ns()
                        if wait_ns <= 0:
                            break
                        self._cond.wait(wait_ns / 1e9)
                    else:
                        self._cond.wait()
                if self._stopping:
                    return
                _due, _seq, job = heapq.heappop(self._heap)
                self.busy = True
            try:
                job()
            except Exception:  # jobs handle their own errors; this is the last line of defence
                log.exception("%s: job failed", self._thread.name)
            finally:
                with self._cond:
                    self.busy = False

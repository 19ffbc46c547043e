"""Triage of a campaign's crashes as they happen, in one background thread.

One worker, one crash at a time: a drgn Program with the debug info is ~0.3-0.6 GB and a CPU, and the
campaign's QEMU needs the other one on a 2-core machine. Debug info is never fetched from here (an
~860 MB download does not belong inside a campaign); without it the console part still runs.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path

from .report import triage_iteration
from .result import TriageResult

log = logging.getLogger("mlx5lab.triage")

Done = Callable[[Path, TriageResult], None]


class BackgroundTriage:
    """``submit(folder)`` after each crash; ``close()`` at the end waits for the queue to drain."""

    def __init__(self, on_done: Done | None = None, *, vmcore: bool = True) -> None:
        self._queue: queue.Queue[Path | None] = queue.Queue()
        self._on_done = on_done
        self._vmcore = vmcore
        self._thread = threading.Thread(target=self._run, name="mlx5lab-triage", daemon=True)
        self._thread.start()

    def submit(self, folder: Path) -> None:
        self._queue.put(Path(folder))

    def _run(self) -> None:
        while (folder := self._queue.get()) is not None:
            try:
                result = triage_iteration(folder, vmcore=self._vmcore)
            except Exception:  # noqa: BLE001 - one bad folder must not stop the triage of the next crashes
                log.exception("triage of %s failed", folder)
                continue
            if self._on_done is not None:
                self._on_done(folder, result)

    def close(self, timeout: float | None = None) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

"""journal.jsonl: one IterationResult per finished iteration, appended and fsync'ed.

Killing a campaign at any moment loses no finished iteration: a line is on disk before the next
iteration starts, and a line torn by the kill is ignored on reading (that iteration runs again).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .outcome import IterationResult


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[int, IterationResult]:
        """Every complete entry, by iteration (a later entry for the same iteration wins)."""
        if not self.path.exists():
            return {}
        text = self.path.read_text()
        if text and not text.endswith("\n"):  # end a line torn by a kill, so the next entry starts afresh
            with open(self.path, "a") as f:
                f.write("\n")
        results: dict[int, IterationResult] = {}
        for line in text.splitlines():
            try:
                result = IterationResult.from_json(json.loads(line))
            except (ValueError, TypeError, KeyError):
                continue  # a line torn by a kill mid-write: that iteration is redone
            results[result.iteration] = result
        return results

    def append(self, result: IterationResult) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(result.to_json(), default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

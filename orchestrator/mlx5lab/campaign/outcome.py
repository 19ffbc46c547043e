"""What one iteration came to: its outcome, and the result that goes into result.json and the journal."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..rundir import RunDir, atomic_write_json

#: Version of the JSON form of :class:`IterationResult` (result.json and each journal line).
#: 1: journal lines held a subset of the fields and no schema; result.json had no schema.
RESULT_SCHEMA = 2


class Outcome(enum.StrEnum):
    """An iteration's outcome, decided from evidence by its scenario."""

    CLEAN = "clean"  # the scenario ran to its end and the guest behaved
    PANIC = "panic"  # the guest panicked (pvpanic), evidence kept
    HANG = "hang"  # the guest stopped making progress; an NMI was injected, evidence kept
    REPORT = "report"  # the kernel reported a bug (WARNING, BUG, hung task...) without panicking, or a
    # function never came back (driver wedged): a finding with its console, no vmcore
    INFRA = "infra"  # QEMU, the device server or the set-up failed: never a kernel result

    @property
    def is_finding(self) -> bool:
        """A kernel result worth a look: counted as "found" by the campaign's exit status and reports."""
        return self in (Outcome.PANIC, Outcome.HANG, Outcome.REPORT)


@dataclass
class IterationResult:
    iteration: int
    outcome: Outcome
    detail: str = ""
    delay_s: float = 0.0
    title: str = ""  # crash title in the style of kernel fuzzers ("general protection fault in dma_pool_alloc")
    signature: str = ""  # groups identical crashes across iterations and campaigns
    duration_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # role -> path relative to the iteration folder
    identity: dict[str, Any] = field(default_factory=dict)
    device: list[dict[str, Any]] = field(default_factory=list)
    dir: str = ""  # the iteration folder's name inside its campaign
    schema: int = RESULT_SCHEMA

    def __post_init__(self) -> None:
        self.outcome = Outcome(self.outcome)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IterationResult:
        """Read any schema so far: unknown keys are dropped, missing ones take their defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        known["schema"] = RESULT_SCHEMA
        return cls(**known)

    def summary_entry(self) -> dict[str, Any]:
        """The short form that summary.json lists per iteration."""
        return {"iteration": self.iteration, "outcome": self.outcome.value, "delay_s": self.delay_s,
                "title": self.title, "signature": self.signature, "detail": self.detail,
                "duration_s": self.duration_s, "dir": self.dir}

    def write(self, folder: Path | RunDir) -> Path:
        run = folder if isinstance(folder, RunDir) else RunDir(Path(folder))
        return atomic_write_json(run.result, self.to_json())

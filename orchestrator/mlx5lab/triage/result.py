"""The result of triaging one iteration folder: what triage.json holds, as a type."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Version of triage.json. 1: the same keys, written from a dict.
TRIAGE_SCHEMA = 1


@dataclass
class TriageResult:
    folder: Path
    iteration: int | None = None  # from result.json, if the folder has one
    outcome: str | None = None  # the campaign's outcome, from result.json
    identity: dict[str, Any] = field(default_factory=dict)  # kernel_release, package_version, variant
    title: str | None = None
    kind: str | None = None
    signature: str | None = None
    console_source: str | None = None  # the file (or the vmcore's printk log) the crash report came from
    console: dict[str, Any] | None = None  # the parsed report (OopsSignature.to_json())
    vmcore: dict[str, Any] | None = None  # the drgn findings (triage.vmcore), None if not read
    vmcore_skipped: str | None = None  # why the vmcore was not read
    verdict: str = ""
    verdict_source: str = "console"  # "vmcore" or "console"
    timings: dict[str, float] = field(default_factory=dict)
    schema: int = TRIAGE_SCHEMA

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["folder"] = str(self.folder)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TriageResult:
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        known["folder"] = Path(known.get("folder", "."))
        return cls(**known)

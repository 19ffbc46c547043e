"""A race campaign: a folder with its parameters, a journal appended after every iteration, and reports.

Layout of a campaign folder::

    campaign.json        parameters (kernel, variant, seed, iterations, readers, faults, delays)
    journal.jsonl        one line per finished iteration, fsync'ed: killing the campaign loses none
    iter-0001/           console.log, card/trace-fn*.jsonl, result.json; oops.txt and vmcore.kdump
    summary.json         counts and per-iteration outcomes (rewritten after every iteration)
    junit.xml            one test case per iteration, for CI

``--resume`` reads the journal, renames any iteration folder the journal does not list (it was cut off,
perhaps in the middle of saving a crash's evidence) to ``iter-NNNN.interrupted-K``, and continues.
Iteration i's delay depends only on (seed, i), so a resumed campaign runs the same schedule as an
uninterrupted one.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from .. import Mlx5LabError
from ..scenarios.reboot_race import RaceParams
from .evidence import IterationResult

OUTCOMES = ("clean", "panic", "hang", "infra")
EXIT_CLEAN, EXIT_FOUND, EXIT_INFRA = 0, 1, 3


@dataclass
class CampaignSpec:
    kernel: str | None
    variant: str
    iterations: int
    seed: int
    delay_min_s: float = 0.2
    delay_max_s: float = 1.5
    race: RaceParams = field(default_factory=RaceParams)

    def delay(self, iteration: int) -> float:
        """The delay before ``reboot -f`` in ``iteration``: a function of (seed, iteration) only."""
        rng = random.Random(f"{self.seed}:{iteration}")
        return round(rng.uniform(self.delay_min_s, self.delay_max_s), 3)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CampaignSpec:
        fields = dict(data)
        race = RaceParams(**fields.pop("race"))
        return cls(race=race, **fields)


class Campaign:
    def __init__(self, folder: Path, spec: CampaignSpec) -> None:
        self.folder = folder
        self.spec = spec
        self.journal_path = folder / "journal.jsonl"
        self.results: dict[int, dict[str, Any]] = {}

    # -- creation and resumption --------------------------------------------------------------
    @classmethod
    def create(cls, folder: Path, spec: CampaignSpec) -> Campaign:
        if (folder / "campaign.json").exists():
            raise Mlx5LabError(f"{folder} already holds a campaign: use --resume {folder}, or another --out")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "campaign.json").write_text(json.dumps(spec.to_json(), indent=2) + "\n")
        return cls(folder, spec)

    @classmethod
    def resume(cls, folder: Path) -> Campaign:
        try:
            spec = CampaignSpec.from_json(json.loads((folder / "campaign.json").read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise Mlx5LabError(f"{folder} is not a campaign folder ({exc})") from exc
        c = cls(folder, spec)
        c._load_journal()
        return c

    def _load_journal(self) -> None:
        if not self.journal_path.exists():
            return
        text = self.journal_path.read_text()
        if text and not text.endswith("\n"):  # end a line torn by a kill, so the next entry starts afresh
            with open(self.journal_path, "a") as f:
                f.write("\n")
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line torn by a kill mid-write: that iteration is redone
            self.results[int(entry["iteration"])] = entry

    def iteration_dir(self, i: int) -> Path:
        return self.folder / f"iter-{i:04d}"

    # -- running ---------------------------------------------------------------------------------
    @staticmethod
    def _free_name(path: Path) -> Path:
        n = 1
        while path.with_name(f"{path.name}-{n}").exists():
            n += 1
        return path.with_name(f"{path.name}-{n}")

    def pending(self) -> list[int]:
        return [i for i in range(1, self.spec.iterations + 1) if i not in self.results]

    def record(self, result: IterationResult) -> None:
        entry = {"iteration": result.iteration, "outcome": result.outcome, "delay_s": result.delay_s,
                 "title": result.title, "signature": result.signature, "detail": result.detail,
                 "duration_s": result.duration_s, "dir": self.iteration_dir(result.iteration).name}
        with open(self.journal_path, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.results[result.iteration] = entry
        self.write_reports()

    def run(self, run_iteration: Callable[[int, float, Path], IterationResult],
            on_result: Callable[[Campaign, IterationResult], None] | None = None) -> int:
        for i in self.pending():
            folder = self.iteration_dir(i)
            if folder.exists():  # cut off by an earlier kill: keep what it left, run it again from nothing
                folder.rename(self._free_name(folder.with_name(folder.name + ".interrupted")))
            folder.mkdir(parents=True)
            result = run_iteration(i, self.spec.delay(i), folder)
            self.record(result)
            if on_result:
                on_result(self, result)
        self.write_reports()
        return self.exit_status()

    # -- reports ---------------------------------------------------------------------------------
    def counts(self) -> Counter[str]:
        c: Counter[str] = Counter({o: 0 for o in OUTCOMES})
        c.update(e["outcome"] for e in self.results.values())
        return c

    def exit_status(self) -> int:
        c = self.counts()
        if c["panic"] or c["hang"]:
            return EXIT_FOUND
        return EXIT_INFRA if c["infra"] else EXIT_CLEAN

    def progress_line(self, started: float, done_now: int) -> str:
        c = self.counts()
        elapsed = time.monotonic() - started
        rate = f"{elapsed / done_now:.1f} s/iteration" if done_now else "-"
        return (f"[{len(self.results)}/{self.spec.iterations}] clean {c['clean']}  panic {c['panic']}  "
                f"hang {c['hang']}  infra {c['infra']}  ({rate})")

    def summary(self) -> dict[str, Any]:
        entries = [self.results[i] for i in sorted(self.results)]
        titles = Counter(f"{e['title']} [{e.get('signature') or '-'}]" for e in entries
                         if e["outcome"] in ("panic", "hang") and e["title"])
        return {"campaign": str(self.folder), "spec": self.spec.to_json(), "counts": dict(self.counts()),
                "finished": len(entries), "planned": self.spec.iterations, "exit_status": self.exit_status(),
                "crash_titles": dict(titles), "iterations": entries}

    def write_reports(self) -> None:
        summary = self.summary()
        tmp = self.folder / "summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        tmp.replace(self.folder / "summary.json")
        self._write_junit(summary)

    def _write_junit(self, summary: dict[str, Any]) -> None:
        entries = summary["iterations"]
        c = summary["counts"]
        suite = ET.Element("testsuite", name=f"mlx5lab-race-{self.spec.variant}", tests=str(len(entries)),
                           failures=str(c["panic"] + c["hang"]), errors=str(c["infra"]))
        for e in entries:
            case = ET.SubElement(suite, "testcase", classname=f"race.{self.spec.variant}",
                                 name=f"iteration-{e['iteration']:04d}", time=f"{e['duration_s']:.3f}")
            if e["outcome"] in ("panic", "hang"):
                fail = ET.SubElement(case, "failure", message=f"{e['outcome']}: {e['title']}", type=e["outcome"])
                fail.text = f"evidence in {self.folder / e['dir']}"
            elif e["outcome"] == "infra":
                ET.SubElement(case, "error", message=e["detail"] or "infrastructure failure", type="infra")
        tmp = self.folder / "junit.xml.tmp"
        ET.ElementTree(suite).write(tmp, encoding="unicode", xml_declaration=True)
        tmp.replace(self.folder / "junit.xml")

    def table(self) -> str:
        c = self.counts()
        rows = [f"campaign {self.folder}",
                f"  variant {self.spec.variant}, kernel {self.spec.kernel or 'default'}, seed {self.spec.seed}, "
                f"{len(self.results)}/{self.spec.iterations} iterations",
                "  " + "  ".join(f"{o} {c[o]}" for o in OUTCOMES)]
        titles = self.summary()["crash_titles"]
        for title, n in sorted(titles.items(), key=lambda kv: -kv[1]):
            rows.append(f"  {n:3d} x {title}")
        vmcores = sorted(self.folder.glob("iter-*/vmcore.kdump"))
        if vmcores:
            rows.append(f"  vmcores: {len(vmcores)} in {self.folder}/iter-*/vmcore.kdump")
        return "\n".join(rows)


def print_progress(line: str) -> None:
    end = "\r" if sys.stderr.isatty() else "\n"
    print(line, file=sys.stderr, end=end, flush=True)

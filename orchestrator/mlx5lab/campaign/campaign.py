"""A campaign: a folder with its parameters, a journal appended after every iteration, and reports.

The folder's layout is :class:`mlx5lab.rundir.CampaignDir`. ``--resume`` reads the journal, sets aside
any iteration folder the journal does not list (it was cut off, perhaps in the middle of saving a crash's
evidence) as ``iter-NNNN.interrupted-K``, and continues. Iteration i's plan depends only on (seed, i), so a
resumed campaign runs the same schedule as an uninterrupted one.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from .. import Mlx5LabError
from ..rundir import CampaignDir, RunDir, atomic_write_json
from . import reports
from .journal import Journal
from .outcome import IterationResult, Outcome
from .pool import run_pool
from .scenario import IterationPlan
from .spec import CampaignSpec

EXIT_CLEAN, EXIT_FOUND, EXIT_INFRA = 0, 1, 3

RunIteration = Callable[[IterationPlan, RunDir], IterationResult]
OnResult = Callable[["Campaign", IterationResult], None]


class Campaign:
    def __init__(self, folder: Path, spec: CampaignSpec) -> None:
        self.folder = Path(folder)
        self.dir = CampaignDir(self.folder)
        self.spec = spec
        self.journal = Journal(self.dir.journal)
        self.results: dict[int, IterationResult] = {}
        self.lost: list[str] = []  # iterations that ran nowhere to their end (pool.IterationLost)

    # -- creation and resumption --------------------------------------------------------------
    @classmethod
    def create(cls, folder: Path, spec: CampaignSpec) -> Campaign:
        d = CampaignDir(Path(folder))
        if d.spec.exists():
            raise Mlx5LabError(f"{folder} already holds a campaign: use --resume {folder}, or another --out")
        d.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(d.spec, spec.to_json())
        return cls(d.path, spec)

    @classmethod
    def resume(cls, folder: Path) -> Campaign:
        d = CampaignDir(Path(folder))
        try:
            spec = CampaignSpec.from_json(json.loads(d.spec.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise Mlx5LabError(f"{folder} is not a campaign folder ({exc})") from exc
        c = cls(d.path, spec)
        c.results = c.journal.load()
        return c

    def iteration_dir(self, i: int) -> Path:
        return self.dir.iteration(i).path

    # -- running ---------------------------------------------------------------------------------
    def pending(self) -> list[int]:
        return [i for i in range(1, self.spec.iterations + 1) if i not in self.results]

    def record(self, result: IterationResult) -> None:
        result.dir = self.dir.iteration_name(result.iteration)
        self.journal.append(result)
        self.results[result.iteration] = result
        self.write_reports()

    def new_iteration_dir(self, i: int) -> RunDir:
        self.dir.set_aside(i)  # cut off by an earlier kill: keep what it left, run it again from nothing
        folder = self.dir.iteration(i)
        folder.path.mkdir(parents=True)
        return folder

    def run(self, run_iteration: RunIteration, on_result: OnResult | None = None, jobs: int = 1) -> int:
        """Run every pending iteration with ``run_iteration(plan, folder)``, ``jobs`` at a time (a pool of
        guests: :mod:`.pool`); return the exit status."""
        def finished(result: IterationResult) -> None:
            self.record(result)
            if on_result:
                on_result(self, result)

        if jobs == 1:
            for i in self.pending():
                finished(run_iteration(self.spec.plan(i), self.new_iteration_dir(i)))
        else:
            run_pool(self.pending(), self.spec.plan, self.new_iteration_dir, run_iteration, finished,
                     self._lost, jobs)
        self.write_reports()
        if self.lost:
            raise Mlx5LabError(f"{len(self.lost)} iteration(s) never ran to their end ({'; '.join(self.lost)}); "
                               f"they are not recorded: --resume {self.folder} runs them again")
        return self.exit_status()

    def _lost(self, i: int, exc: Exception) -> None:
        self.lost.append(f"iteration {i}: {exc}")

    # -- reports ---------------------------------------------------------------------------------
    def counts(self) -> Counter[str]:
        c: Counter[str] = Counter({o.value: 0 for o in Outcome})
        c.update(r.outcome.value for r in self.results.values())
        return c

    def exit_status(self) -> int:
        c = self.counts()
        if any(c[o.value] for o in Outcome if o.is_finding):
            return EXIT_FOUND
        return EXIT_INFRA if c[Outcome.INFRA] else EXIT_CLEAN

    def ordered_results(self) -> list[IterationResult]:
        return [self.results[i] for i in sorted(self.results)]

    def progress_line(self, started: float, done_now: int) -> str:
        c = self.counts()
        elapsed = time.monotonic() - started
        rate = f"{elapsed / done_now:.1f} s/iteration" if done_now else "-"
        counts = "  ".join(f"{o.value} {c[o.value]}" for o in Outcome)
        return f"[{len(self.results)}/{self.spec.iterations}] {counts}  ({rate})"

    def summary(self) -> dict:
        return reports.summary(self)

    def write_reports(self) -> None:
        reports.write_reports(self)

    def table(self) -> str:
        return reports.table(self)

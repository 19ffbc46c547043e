"""The fuzzer's loop (syzkaller's manager, for one driver): choose a program, run it, keep what it taught.

Each step draws its program from ``Random(f"{seed}:{index}")``: generated from nothing, or a mutation of a
corpus program. The run is one iteration of the ``fuzz-program`` scenario in ``runs/`` of the work folder;
its device traces and console give coverage (:mod:`.coverage`), a program that added some joins the
corpus, and a finding goes to the crash store, where a new bug gets its reproducer minimised and its first
finding is triaged (in one background thread, as a campaign's crashes are: :mod:`mlx5lab.triage`). Every
finished program is a journal line (fsync'ed), so a kill loses nothing finished and the next run goes on
from the journal's next index; an interrupted run folder is set aside, never counted.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlx5image.build import ensure_image
from mlx5image.variants import ensure_variant

from ..campaign.outcome import IterationResult, Outcome
from ..campaign.scenario import IterationPlan
from ..rundir import RunDir
from ..scenarios.fuzz_program import FuzzParams, FuzzProgram
from ..triage.background import BackgroundTriage
from ..triage.result import TriageResult
from .coverage import Coverage, run_keys
from .generate import generate
from .minimize import minimize
from .mutate import mutate
from .program import Program, parse
from .report import exit_status, write_reports
from .store import Corpus, CrashStore, Execution, Finding, Journal, Night, Nights, Stats, StatsSample
from .workdir import FuzzDir

Progress = Callable[[str], None]
GENERATE_SHARE = 0.3  # with a corpus: this share of programs is generated afresh, the rest mutated


@dataclass
class FuzzConfig:
    workdir: Path
    seed: int = 1
    programs: int | None = None  # stop after this many programs (this run)
    duration_s: float | None = None  # or after this long
    variant: str = "stock"
    kernel: str | None = None
    minimize_tries: int = 24  # runs a new bug's minimisation may spend (each a guest boot)
    repro_runs: int = 5  # runs that measure the minimised reproducer's rate
    card: dict | None = None
    seed_programs: tuple[str, ...] = ()  # texts run first (once each, by journal index), as syzkaller's seeds
    triage_vmcore: bool = True  # read a finding's vmcore with drgn (needs the kernel's debug info)


class Fuzzer:
    def __init__(self, cfg: FuzzConfig, progress: Progress) -> None:
        self.cfg, self.progress = cfg, progress
        self.dir = FuzzDir(Path(cfg.workdir)).create()
        self.start = time.time()
        self.store = CrashStore(self.dir, night_start=self.start)
        self.corpus = Corpus(self.dir)
        self.coverage = Coverage.load(self.dir.coverage)
        self.journal = Journal(self.dir)
        self.stats = Stats(self.dir)
        self.index = self.journal.next_index()
        self.image = self._image()
        self.done = self.crashes = self.infra = 0
        self.new_bugs: list[str] = []
        self._triage: BackgroundTriage | None = None
        self._triaging: dict[Path, str] = {}  # run folder -> the signature it is triaged for

    def _image(self):  # noqa: ANN202 - a GuestImage; a method so tests can run without one
        return ensure_variant(ensure_image(self.cfg.kernel, progress=self.progress), self.cfg.variant,
                              progress=self.progress)

    # -- one program ----------------------------------------------------------------------------------
    def choose(self, rng: random.Random) -> tuple[Program, str]:
        if self.index < len(self.cfg.seed_programs):
            return parse(self.cfg.seed_programs[self.index]), "seed"
        corpus = [parse(e.text) for e in sorted(self.corpus.programs(), key=lambda e: e.hash)]
        if not corpus or rng.random() < GENERATE_SHARE:
            return generate(rng), "generate"
        return mutate(rng.choice(corpus), rng, corpus), "mutate"

    def run(self, program: Program, index: int, plan_seed: int) -> tuple[RunDir, IterationResult]:
        run = self.dir.run(index, program.hash())
        if run.path.exists():  # cut off by a kill: keep what it left, run it again from nothing
            n = 1
            while (aside := run.path.with_name(f"{run.path.name}.interrupted-{n}")).exists():
                n += 1
            run.path.rename(aside)
        run.path.mkdir(parents=True)
        params = FuzzParams(program=program.text(), **({"card": self.cfg.card} if self.cfg.card else {}))
        result = FuzzProgram(params).run_iteration(self.image, IterationPlan(index, plan_seed, 0.0), run)
        return run, result

    def step(self) -> Execution:
        index = self.index
        rng = random.Random(f"{self.cfg.seed}:{index}")
        program, origin = self.choose(rng)
        started = time.time()
        run, result = self.run(program, index, self.cfg.seed)
        new = self.coverage.add(run_keys(run)) if result.outcome is not Outcome.INFRA else set()
        self.coverage.save(self.dir.coverage)
        if new:
            self.corpus.add(program.text(), sorted(new, key=str), origin)
        if result.outcome.is_finding:
            self.crashes += 1
            self._finding(run, program, result)
        elif result.outcome is Outcome.INFRA:
            self.infra += 1
        execution = Execution(index=index, program=program.hash(), outcome=result.outcome, started=started,
                              duration_s=result.duration_s, run=self.dir.relative(run.path), title=result.title,
                              signature=result.signature, new_coverage=len(new), coverage=self.coverage.size,
                              origin=origin, detail=result.detail[:500])
        self.journal.append(execution)
        self.index += 1
        self.done += 1
        self.stats.append(StatsSample(t=time.time(), programs=self.index, coverage=self.coverage.size,
                                      corpus=len(self.corpus), bugs=len(self.store.bugs()),
                                      crashes=self.crashes, infra=self.infra))
        return execution

    def _finding(self, run: RunDir, program: Program, result: IterationResult) -> None:
        finding = Finding.from_run(run, program.text())
        if finding is None:
            return
        bug, is_new = self.store.record(finding)
        if bug.triage is None and bug.signature not in self._triaging.values():
            self.submit_triage(run.path, bug.signature)
        if not is_new:
            return
        self.new_bugs.append(bug.signature)
        self.progress(f"new bug: {bug.title} [{bug.signature}]"
                      + ("; minimising its program" if self.cfg.minimize_tries > 0 else ""))
        if self.cfg.minimize_tries > 0:
            self.minimize_bug(bug.signature, program)

    def minimize_bug(self, signature: str, program: Program) -> None:
        """Minimise ``program``, which hit bug ``signature``, and keep the reproducer in its crash folder."""
        tries = 0

        def reproduces(candidate: Program) -> bool:
            nonlocal tries
            tries += 1
            run, result = self.run(candidate, self.index * 1000 + tries, self.cfg.seed)  # repro runs apart
            f = Finding.from_run(run, candidate.text())
            return f is not None and f.signature == signature

        res = minimize(program, reproduces, max_tries=self.cfg.minimize_tries, measure_runs=self.cfg.repro_runs)
        if res.reproduced:
            self.store.set_repro(signature, res.program.text(), res.rate, res.ci, res.runs)
            self.progress(f"reproducer of {signature}: {len(res.program.active_ops())} ops, rate {res.rate:.2f} "
                          f"(95% CI {res.ci[0]:.2f}-{res.ci[1]:.2f}) after {res.tries} runs")
        else:
            self.progress(f"{signature}: {res.message}")

    # -- triage --------------------------------------------------------------------------------------
    def submit_triage(self, run: Path, signature: str) -> None:
        """Triage ``run`` in the background; its result becomes the triage of bug ``signature``."""
        if self._triage is None:
            self._triage = BackgroundTriage(self._triaged, vmcore=self.cfg.triage_vmcore)
        self._triaging[Path(run)] = signature
        self._triage.submit(Path(run))

    def _triaged(self, folder: Path, result: TriageResult) -> None:
        signature = self._triaging.get(Path(folder))
        if signature is None:
            return
        self.store.set_triage(signature, result)
        self.progress(f"triage of {signature} ({result.verdict_source}): {result.verdict[:200] or '-'}")

    def finish_triage(self) -> None:
        """Wait for the triage of every finding submitted (before the reports, which show it)."""
        if self._triage is None:
            return
        waiting = [s for s in self._triaging.values() if (b := self.store.get(s)) is not None and b.triage is None]
        if waiting:
            self.progress(f"waiting for the triage of {len(waiting)} bug(s)")
        self._triage.close()
        self._triage = None

    # -- the loop --------------------------------------------------------------------------------------
    def finished(self) -> bool:
        if self.cfg.programs is not None and self.done >= self.cfg.programs:
            return True
        return self.cfg.duration_s is not None and time.time() - self.start >= self.cfg.duration_s

    def loop(self, until: Callable[[Execution], bool] | None = None) -> int:
        """Run programs until the configured count or duration, or until ``until`` holds for one (a
        benchmark's stop: the first finding of a bug); then finish triage and write the reports."""
        t0 = time.monotonic()
        try:
            while not self.finished():
                e = self.step()
                rate = self.done / max(1e-9, time.monotonic() - t0) * 3600
                self.progress(f"[{self.done}] {e.outcome.value:<6} {e.title[:60] or '-':<60} coverage "
                              f"{self.coverage.size} (+{e.new_coverage})  corpus {len(self.corpus)}  bugs "
                              f"{len(self.store.bugs())}  {rate:.0f} programs/h")
                if until is not None and until(e):
                    break
        finally:
            self.finish_triage()
            Nights(self.dir).append(Night(start=self.start, end=time.time(), seed=self.cfg.seed,
                                          programs=self.done, new_bugs=self.new_bugs))
            summary = write_reports(self.dir, night_start=self.start)
        return exit_status(summary)


def replay(program: Program, folder: Path, repeat: int, *, variant: str, kernel: str | None,
           progress: Progress, card: dict | None = None) -> list[IterationResult]:
    """Run ``program`` ``repeat`` times, each in its own run folder under ``folder``."""
    image = ensure_variant(ensure_image(kernel, progress=progress), variant, progress=progress)
    results = []
    for i in range(repeat):
        run = RunDir(folder / f"replay-{i + 1:03d}")
        run.path.mkdir(parents=True, exist_ok=False)
        params = FuzzParams(program=program.text(), **({"card": card} if card else {}))
        r = FuzzProgram(params).run_iteration(image, IterationPlan(i + 1, 0, 0.0), run)
        progress(f"replay {i + 1}/{repeat}: {r.outcome.value} {r.title} ({r.duration_s:.1f} s) in {run.path}")
        results.append(r)
    return results

"""The fuzzer's loop (syzkaller's manager, for one driver): choose a program, run it, keep what it taught.

Each step draws its program from ``Random(f"{seed}:{index}")``: generated from nothing, or a mutation of a
corpus program. The run is one iteration of the ``fuzz-program`` scenario in ``runs/`` of the work folder;
its device traces and console give coverage (:mod:`.coverage`), a program that added some joins the
corpus, and a finding goes to the crash store, where a new bug gets its reproducer minimised and its first
finding is triaged (in one background thread, as a campaign's crashes are: :mod:`mlx5lab.triage`). Every
finished program is a journal line (fsync'ed), so a kill loses nothing finished and the next run goes on
from the journal's next index; an interrupted run folder is set aside, never counted.

With ``jobs`` > 1 (``--jobs``; or the guest slots of a Dask cluster, ``--cluster``) up to that many programs
run at once, on the pool threads of :mod:`mlx5lab.campaign.pool` or as the cluster's tasks
(:mod:`mlx5lab.campaign.cluster`). Results are still recorded one at a time, in index order, and program k
is chosen right after program k - jobs is recorded, from the corpus as it then is: so the programs of a
seed depend on (seed, jobs) only, never on which guest finished first, and ``jobs`` = 1 is the sequential
loop. A bug's minimisation runs in the recording thread, while the programs already running finish.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlx5image.build import ensure_image
from mlx5image.variants import ensure_variant

from ..campaign.outcome import IterationResult, Outcome
from ..campaign.pool import IterationLost
from ..campaign.scenario import IterationPlan
from ..campaign.spec import CampaignSpec
from ..rundir import RunDir
from ..scenarios.fuzz_program import FuzzParams, FuzzProgram
from ..triage.background import BackgroundTriage
from ..triage.result import TriageResult
from ..vm.machine import kill_all_guests
from .coverage import Coverage, run_keys
from .generate import generate
from .minimize import minimize
from .mutate import mutate
from .program import Program, parse
from .report import exit_status, write_reports
from .store import (
    MAX_REPRO_ATTEMPTS,
    Corpus,
    CrashStore,
    Execution,
    Finding,
    Journal,
    Night,
    Nights,
    Stats,
    StatsSample,
)
from .workdir import FuzzDir

Progress = Callable[[str], None]
# With a corpus, this share of programs is generated afresh and the rest mutated. syzkaller mutates almost
# always, but its coverage is per basic block; ours is per device command, state and log template, which
# device events (a dead firmware, a held command) add to quickly, so mutation alone drifts towards them. Half
# generated keeps the orderings around a teardown (half of all generated programs) a quarter of every night.
GENERATE_SHARE = 0.5


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
    jobs: int | None = None  # programs at once: here, None is 1; on a cluster, None is every guest slot
    cluster: str | None = None  # a Dask scheduler's address: the programs run on its workers
    boot: str = "classic"  # how each program's guest starts (mlx5lab.vm.snapshot.BOOT_MODES)


@dataclass(frozen=True)
class Planned:
    """A program chosen for execution ``index``, and how it was chosen (seed, generate, mutate)."""

    index: int
    program: Program
    origin: str


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
        self.cluster = self._connect(cfg.cluster) if cfg.cluster else None
        if self.cluster is None:
            self.jobs = max(1, cfg.jobs or 1)
        else:
            self.jobs = self.cluster.slots if cfg.jobs is None else max(1, min(cfg.jobs, self.cluster.slots))
        self.done = self.crashes = self.infra = 0
        self.new_bugs: list[str] = []
        self._triage: BackgroundTriage | None = None
        self._triaging: dict[Path, str] = {}  # run folder -> the signature it is triaged for

    def _image(self):  # noqa: ANN202 - a GuestImage; a method so tests can run without one
        return ensure_variant(ensure_image(self.cfg.kernel, progress=self.progress), self.cfg.variant,
                              progress=self.progress)

    def _connect(self, address: str):  # noqa: ANN202 - a ClusterRunner
        from ..campaign.cluster import ClusterRunner

        runner = ClusterRunner(address, None, self.progress)
        self.progress(f"Dask cluster {address}: {runner.slots} guest slot(s) on {runner.workers} worker(s)")
        return runner

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    # -- one program ----------------------------------------------------------------------------------
    def choose(self, rng: random.Random, index: int | None = None) -> tuple[Program, str]:
        index = self.index if index is None else index
        if index < len(self.cfg.seed_programs):
            return parse(self.cfg.seed_programs[index]), "seed"
        corpus = [parse(e.text) for e in sorted(self.corpus.programs(), key=lambda e: e.hash)]
        if not corpus or rng.random() < GENERATE_SHARE:
            return generate(rng), "generate"
        return mutate(rng.choice(corpus), rng, corpus), "mutate"

    def run(self, program: Program, index: int, plan_seed: int, stop_at: str = "",
            folder: RunDir | None = None) -> tuple[RunDir, IterationResult]:
        """Execute ``program`` as execution ``index`` into its run folder (``folder``, else the execution's),
        here or on the cluster; a program the cluster lost on every worker it tried is an infrastructure
        result, not a kernel one. ``stop_at``: a hang's signature, whose report on the console ends the run
        (``FuzzParams.stop_at``)."""
        run = folder if folder is not None else self.dir.run(index, program.hash())
        if run.path.exists():  # cut off by a kill: keep what it left, run it again from nothing
            set_aside(run.path)
        run.path.mkdir(parents=True)
        params = FuzzParams(program=program.text(), stop_at=stop_at,
                            **({"card": self.cfg.card} if self.cfg.card else {}))
        plan = IterationPlan(index, plan_seed, 0.0, self.cfg.boot)
        if self.cluster is None:
            return run, FuzzProgram(params).run_iteration(self.image, plan, run)
        kernel = self.cfg.kernel if (self.cfg.kernel or "").endswith(".deb") else self.image.kernel_release
        spec = CampaignSpec(kernel=kernel, variant=self.cfg.variant, iterations=1, seed=plan_seed,
                            scenario=FuzzProgram.name, params=dataclasses.asdict(params), boot=self.cfg.boot)
        try:
            return run, self.cluster.run_spec(spec, plan, run)
        except IterationLost as exc:
            result = IterationResult(index, Outcome.INFRA, detail=f"lost on the cluster: {exc}")
            result.write(run)
            return run, result

    def plan_next(self, index: int) -> Planned:
        program, origin = self.choose(random.Random(f"{self.cfg.seed}:{index}"), index)
        return Planned(index, program, origin)

    def execute(self, planned: Planned) -> tuple[Planned, float, RunDir, IterationResult]:
        started = time.time()
        run, result = self.run(planned.program, planned.index, self.cfg.seed)
        return planned, started, run, result

    def record(self, planned: Planned, started: float, run: RunDir, result: IterationResult) -> Execution:
        """Learn from one finished execution (coverage, corpus, crash store) and journal it; executions
        are recorded in index order."""
        program, index = planned.program, planned.index
        assert index == self.index, f"execution {index} recorded out of order (next is {self.index})"
        new = self.coverage.add(run_keys(run)) if result.outcome is not Outcome.INFRA else set()
        self.coverage.save(self.dir.coverage)
        if new:
            self.corpus.add(program.text(), sorted(new, key=str), planned.origin)
        if result.outcome.is_finding:
            self.crashes += 1
            self._finding(run, program, result)
        elif result.outcome is Outcome.INFRA:
            self.infra += 1
        execution = Execution(index=index, program=program.hash(), outcome=result.outcome, started=started,
                              duration_s=result.duration_s, run=self.dir.relative(run.path), title=result.title,
                              signature=result.signature, new_coverage=len(new), coverage=self.coverage.size,
                              origin=planned.origin, detail=result.detail[:500])
        self.journal.append(execution)
        self.index += 1
        self.done += 1
        self.stats.append(StatsSample(t=time.time(), programs=self.index, coverage=self.coverage.size,
                                      corpus=len(self.corpus), bugs=len(self.store.bugs()),
                                      crashes=self.crashes, infra=self.infra))
        return execution

    def step(self) -> Execution:
        """Choose, run and record the next program (the loop with one job, one step)."""
        return self.record(*self.execute(self.plan_next(self.index)))

    def _finding(self, run: RunDir, program: Program, result: IterationResult) -> None:
        finding = Finding.from_run(run, program.text())
        if finding is None:
            return
        bug, is_new = self.store.record(finding)
        if bug.triage is None and bug.signature not in self._triaging.values():
            self.submit_triage(run.path, bug.signature)
        minimise = self.cfg.minimize_tries > 0 and bug.needs_repro
        if is_new:
            self.new_bugs.append(bug.signature)
            self.progress(f"new bug: {bug.title} [{bug.signature}]" + ("; minimising its program" if minimise else ""))
        elif minimise:
            self.progress(f"{bug.signature} again, still without a reproducer: minimising this program "
                          f"(attempt {bug.repro_attempts + 1} of {MAX_REPRO_ATTEMPTS})")
        if minimise:
            self.minimize_bug(bug.signature, program, finding.entry, hang=result.outcome is Outcome.HANG)

    def minimize_bug(self, signature: str, program: Program, entry: str | None = None, *,
                     hang: bool = False) -> bool:
        """Minimise ``program``, which hit bug ``signature`` entering the driver at ``entry``, and keep the
        reproducer in its crash folder.

        A candidate reproduces when it crashes with the same signature and, when the finding had an entry,
        through the same one. syzkaller's repro asks only for the same title; here one freed object is often
        reached from several entries (a reader's ethtool call, the driver's own stats work), and without the
        entry a cut could trade the reader that was found for another way in and still count.

        A ``hang``'s tries end as soon as the console holds its report (``FuzzParams.stop_at``), not at the
        program's timeout: the hung-task report comes some 20 s into a try that would otherwise wait a
        minute more for the same verdict. Counted in the bug's ``repro_attempts``; True if a reproducer
        was kept.
        """
        attempt = self.store.start_repro(signature).repro_attempts
        tries = 0

        def reproduces(candidate: Program) -> bool:
            nonlocal tries
            tries += 1
            folder = self.dir.try_run(signature, attempt, tries, candidate.hash())
            run, result = self.run(candidate, self.index, self.cfg.seed, stop_at=signature if hang else "",
                                   folder=folder)
            f = Finding.from_run(run, candidate.text())
            return f is not None and f.signature == signature and (entry is None or f.entry == entry)

        res = minimize(program, reproduces, max_tries=self.cfg.minimize_tries, measure_runs=self.cfg.repro_runs)
        if res.reproduced:
            self.store.set_repro(signature, res.program.text(), res.rate, res.ci, res.runs)
            self.progress(f"reproducer of {signature}{f' (entry {entry})' if entry else ''}: "
                          f"{len(res.program.active_ops())} ops, rate {res.rate:.2f} "
                          f"(95% CI {res.ci[0]:.2f}-{res.ci[1]:.2f}) after {res.tries} runs")
            return True
        self.progress(f"{signature}: {res.message}")
        return False

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
        return not self._may_start(self.done)

    def _may_start(self, started: int) -> bool:
        """Whether one more program may start, ``started`` having started in this run."""
        if self.cfg.programs is not None and started >= self.cfg.programs:
            return False
        return self.cfg.duration_s is None or time.time() - self.start < self.cfg.duration_s

    def loop(self, until: Callable[[Execution], bool] | None = None) -> int:
        """Run programs, ``self.jobs`` at a time, until the configured count or duration, or until ``until``
        holds for one (a benchmark's stop: the first finding of a bug; the programs then running finish
        and are recorded); then finish triage and write the reports."""
        t0 = time.monotonic()
        try:
            with cf.ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="mlx5lab-guest") as pool:
                running: dict[int, tuple[Planned, cf.Future[tuple[Planned, float, RunDir, IterationResult]]]] = {}
                started, stop = 0, False
                try:
                    while True:
                        while not stop and len(running) < self.jobs and self._may_start(started):
                            planned = self.plan_next(self.index + len(running))
                            running[planned.index] = planned, pool.submit(self.execute, planned)
                            started += 1
                        if not running:
                            break
                        done = running[self.index][1].result()  # still in ``running`` if it raises
                        del running[self.index]
                        e = self.record(*done)
                        rate = self.done / max(1e-9, time.monotonic() - t0) * 3600
                        self.progress(f"[{self.done}] {e.outcome.value:<6} {e.title[:60] or '-':<60} coverage "
                                      f"{self.coverage.size} (+{e.new_coverage})  corpus {len(self.corpus)}  "
                                      f"bugs {len(self.store.bugs())}  {rate:.0f} programs/h")
                        stop = stop or (until is not None and until(e))
                except BaseException:
                    for _, fut in running.values():
                        fut.cancel()
                    kill_all_guests()
                    pool.shutdown(wait=True)  # the guests' threads clean up, then their folders go aside
                    for planned, _ in running.values():
                        if (path := self.dir.run(planned.index, planned.program.hash()).path).exists():
                            set_aside(path)
                    raise
        finally:
            self.close()
            self.finish_triage()
            Nights(self.dir).append(Night(start=self.start, end=time.time(), seed=self.cfg.seed,
                                          programs=self.done, new_bugs=self.new_bugs))
            summary = write_reports(self.dir, night_start=self.start)
        return exit_status(summary)


def set_aside(path: Path) -> Path:
    """Rename the run folder of a cut-off execution to ``<name>.interrupted-N``; it is never counted."""
    n = 1
    while (aside := path.with_name(f"{path.name}.interrupted-{n}")).exists():
        n += 1
    path.rename(aside)
    return aside


def replay(program: Program, folder: Path, repeat: int, *, variant: str, kernel: str | None,
           progress: Progress, card: dict | None = None, boot: str = "classic") -> list[IterationResult]:
    """Run ``program`` ``repeat`` times, each in its own run folder under ``folder``."""
    image = ensure_variant(ensure_image(kernel, progress=progress), variant, progress=progress)
    results = []
    for i in range(repeat):
        run = RunDir(folder / f"replay-{i + 1:03d}")
        run.path.mkdir(parents=True, exist_ok=False)
        params = FuzzParams(program=program.text(), **({"card": card} if card else {}))
        r = FuzzProgram(params).run_iteration(image, IterationPlan(i + 1, 0, 0.0, boot), run)
        progress(f"replay {i + 1}/{repeat}: {r.outcome.value} {r.title} ({r.duration_s:.1f} s) in {run.path}")
        results.append(r)
    return results

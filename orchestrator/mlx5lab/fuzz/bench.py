"""``mlx5lab bench fuzz``: what the fuzzer finds and how fast, as printed figures.

Three parts, each in its own work folders under one output folder (kept: the evidence of every figure):

- *find*: on the positive control, from an empty corpus and no seed programs, one fuzz run per seed until
  the target bug (the seed case's dma_pool use-after-free) is found through a reader's PTYS query, or a time
  limit. The positive control's freed pool is reached several ways: a reader's command (the seed case's
  speed read; an ``ethtool -S``), and the driver's own stats work, which a forced reboot queues with no
  reader at all. So per seed: the programs and minutes until the first finding of the bug (any way in), and
  until the first through PTYS (the finding's end, before its minimisation); the finding minimised is the
  PTYS one (else the first), through the same driver entry, as soon as it is found; if its program does not
  reproduce, the run goes on to the next PTYS finding and minimises that, up to the store's
  ``MAX_REPRO_ATTEMPTS`` in all (as the fuzzer does for any bug); and for every bug found its minimised
  reproducer: active operations, whether it holds a teardown and a PTYS reader, reproducibility.
  ``ptys=False`` stops at the first finding instead.
- *stock*: a run of the stock driver for a set time; its infrastructure share and every finding with its
  triage verdict.
- *race*: a plain race campaign on the same machine in the same run, so that programs per hour and race
  iterations per hour (both wall clock, set-up and teardown included) are compared under one load.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .manager import FuzzConfig, Fuzzer
from .ops import PTYS_READERS, teardown_paths
from .program import parse
from .report import write_reports
from .store import Bug, Execution, Finding

Progress = Callable[[str], None]
TARGET_TITLE = "dma_pool_alloc"  # the seed case: the reader's command allocation on the freed pool
# port.c: mlx5_query_port_ptys, the register read of a speed query (en_ethtool.c: mlx5e_get_link_ksettings)
PTYS_FRAME = "mlx5_query_port_ptys"
TARGET_MINUTES = 30.0
TARGET_OPS = 3
TARGET_RATE = 0.8
TARGET_INFRA = 0.05


def is_target(title: str) -> bool:
    """A dma_pool use-after-free: a fault or KASAN report whose title names dma_pool_alloc."""
    return TARGET_TITLE in title


def through_ptys(finding: Finding) -> bool:
    """The crashing task was in a PTYS query (a reader's speed read, as in the seed case)."""
    return PTYS_FRAME in finding.route


@dataclass
class BugFigure:
    """One bug a run found and what its minimised reproducer measured."""

    title: str
    signature: str
    count: int
    repro_ops: int | None = None  # active operations of repro.prog; None: no reproducer kept
    teardown: bool = False  # repro.prog holds a path that tears a command interface down
    ptys_reader: bool = False  # ... and a reader whose call queries PTYS
    rate: float | None = None
    ci: tuple[float, float] | None = None
    tries: int = 0
    triage: str = ""  # the triage verdict of its first finding

    @classmethod
    def of(cls, bug: Bug) -> BugFigure:
        fig = cls(bug.title, bug.signature, bug.count,
                  triage=str((bug.triage or {}).get("verdict", ""))[:300])
        repro_file = bug.dir.repro
        if bug.repro is not None and repro_file.is_file():
            ops = parse(repro_file.read_text()).active_ops()
            fig.repro_ops = len(ops)
            fig.teardown = any(o.kind == "path" and o.name in teardown_paths() for o in ops)
            fig.ptys_reader = any(o.kind == "read" and o.name in PTYS_READERS for o in ops)
            fig.rate, fig.ci, fig.tries = bug.repro.rate, bug.repro.ci, bug.repro.tries
        return fig

    def line(self) -> str:
        if self.repro_ops is None:
            return f"    {self.title} [{self.signature}] x{self.count}: no reproducer kept"
        assert self.rate is not None and self.ci is not None
        return (f"    {self.title} [{self.signature}] x{self.count}: reproducer {self.repro_ops} ops "
                f"(teardown {'yes' if self.teardown else 'no'}, PTYS reader {'yes' if self.ptys_reader else 'no'}), "
                f"rate {self.rate:.2f} (95% CI {self.ci[0]:.2f}-{self.ci[1]:.2f}, {self.tries} runs)")


@dataclass
class SeedFigure:
    """One seed's run on the positive control."""

    seed: int
    workdir: Path
    programs_run: int = 0
    infra: int = 0
    wall_s: float = 0.0
    found_after: int | None = None  # programs until the first target finding, that one included
    found_minutes: float | None = None
    found_entry: str | None = None  # where that finding's task entered the driver
    ptys_after: int | None = None  # ... until the first target finding through a PTYS query
    ptys_minutes: float | None = None
    minimized_entry: str | None = None  # the entry the reproducer was made to keep
    repro_attempts: int = 0  # minimisations of the target (one per finding tried, MAX_REPRO_ATTEMPTS at most)
    bugs: list[BugFigure] = field(default_factory=list)

    @property
    def target(self) -> BugFigure | None:
        return next((b for b in self.bugs if is_target(b.title)), None)

    def line(self) -> str:
        if self.found_after is None:
            return (f"  seed {self.seed}: no dma_pool use-after-free in {self.programs_run} programs "
                    f"({self.wall_s / 60:.1f} min, {self.infra} infra) in {self.workdir}")
        ptys = (f"through PTYS after {self.ptys_after} programs, {self.ptys_minutes:.1f} min"
                if self.ptys_after is not None and self.ptys_minutes is not None else "not through PTYS")
        return (f"  seed {self.seed}: dma_pool use-after-free after {self.found_after} programs, "
                f"{self.found_minutes:.1f} min (entry {self.found_entry or '-'}), {ptys} "
                f"({self.programs_run} programs in all, {self.infra} infra, {self.repro_attempts} "
                f"minimisation(s)) in {self.workdir}")


@dataclass
class StockFigure:
    workdir: Path
    programs: int = 0
    infra: int = 0
    wall_s: float = 0.0
    run_s: float = 0.0  # the programs' own iterations (boot to verdict), minimisation runs not included
    outcomes: dict[str, int] = field(default_factory=dict)
    bugs: list[BugFigure] = field(default_factory=list)

    @property
    def per_run_hour(self) -> float:
        """Programs per hour of their own iterations: the rate without new bugs' minimisation."""
        return self.programs / self.run_s * 3600 if self.run_s else 0.0

    @property
    def infra_share(self) -> float:
        return self.infra / self.programs if self.programs else 0.0

    @property
    def per_hour(self) -> float:
        return self.programs / self.wall_s * 3600 if self.wall_s else 0.0


def find_seed(workdir: Path, seed: int, *, limit_s: float, variant: str, kernel: str | None, progress: Progress,
              minimize_tries: int, repro_runs: int, card: dict[str, Any] | None = None, boot: str = "classic",
              jobs: int = 1, ptys: bool = True) -> SeedFigure:
    """Fuzz ``variant`` from an empty corpus with ``seed`` until a target finding through PTYS (``ptys``) or
    the first target finding, or ``limit_s``; that finding minimised; the figure of the run."""
    if workdir.exists() and any(workdir.iterdir()):
        raise FileExistsError(f"{workdir} is not empty: the benchmark starts each seed from an empty corpus")
    # Other bugs found on the way are kept but not minimised (that would spend the seed's time on them);
    # the target is minimised once found, as the fuzzer would (again from a later finding if it kept none).
    cfg = FuzzConfig(workdir=workdir, seed=seed, duration_s=limit_s, variant=variant, kernel=kernel,
                     minimize_tries=0, repro_runs=repro_runs, card=card, boot=boot, jobs=jobs)
    fuzzer = Fuzzer(cfg, lambda m: progress(f"seed {seed}: {m}"))
    t0 = time.monotonic()
    fig = SeedFigure(seed, workdir)
    first: tuple[Finding, Path] | None = None  # the first target finding and its program's file

    def minimise(f: Finding, program_file: Path) -> bool:
        """Minimise a target finding through its entry; True once there is a reproducer or no attempt left."""
        fuzzer.cfg.minimize_tries = minimize_tries  # the target only: the loop's own findings are not minimised
        try:
            fig.minimized_entry, fig.repro_attempts = f.entry, fig.repro_attempts + 1
            fuzzer.minimize_bug(f.signature, parse(program_file.read_text()), f.entry)
        finally:
            fuzzer.cfg.minimize_tries = 0
        bug = fuzzer.store.get(f.signature)
        return bug is None or not bug.needs_repro

    def found(e: Execution) -> bool:
        """Note the target findings among the executions and minimise the one sought; True once it has a
        reproducer (or no minimisation is asked, or none is left to try)."""
        nonlocal first
        if not e.outcome.is_finding:
            return False
        f = Finding.from_run(fuzzer.dir.run_path(e.run), "")
        bug = fuzzer.store.get(f.signature) if f is not None else None
        if f is None or bug is None or not is_target(bug.title):  # the store titles a finding
            return False
        minutes = (e.ended - fuzzer.start) / 60
        if fig.found_after is None:
            fig.found_after, fig.found_minutes, fig.found_entry = e.index + 1, minutes, f.entry
            first = f, bug.dir.program(e.program)
        if through_ptys(f):
            if fig.ptys_after is None:
                fig.ptys_after, fig.ptys_minutes = e.index + 1, minutes
            progress(f"seed {seed}: dma_pool use-after-free through PTYS (entry {f.entry})")
        elif ptys:
            if fig.found_after == e.index + 1:
                progress(f"seed {seed}: dma_pool use-after-free entering at {f.entry or '-'}, not through PTYS; "
                         "going on until one is")
            return False
        if minimize_tries <= 0:
            return True
        if minimise(f, bug.dir.program(e.program)):
            return True
        progress(f"seed {seed}: that program kept no reproducer; going on to the next such finding")
        return False

    fuzzer.loop(until=found)
    fig.programs_run, fig.infra, fig.wall_s = fuzzer.done, fuzzer.infra, time.monotonic() - t0
    if first is not None and minimize_tries > 0 and fig.repro_attempts == 0:
        minimise(*first)  # no PTYS finding within the limit: the first finding instead
    if fig.repro_attempts:
        fuzzer.finish_triage()
        write_reports(fuzzer.dir, night_start=fuzzer.start)  # now with the reproducer
    fig.bugs = [BugFigure.of(b) for b in fuzzer.store.bugs()]
    return fig


def stock_run(workdir: Path, *, duration_s: float, seed: int, kernel: str | None, progress: Progress,
              minimize_tries: int, repro_runs: int, variant: str = "stock",
              card: dict[str, Any] | None = None, boot: str = "classic", jobs: int = 1) -> StockFigure:
    """Fuzz the stock driver (or ``variant``) for ``duration_s``: infrastructure share and findings with
    their triage."""
    cfg = FuzzConfig(workdir=workdir, seed=seed, duration_s=duration_s, variant=variant, kernel=kernel,
                     minimize_tries=minimize_tries, repro_runs=repro_runs, card=card, boot=boot, jobs=jobs)
    fuzzer = Fuzzer(cfg, lambda m: progress(f"stock: {m}"))
    t0 = time.monotonic()
    fuzzer.loop()
    fig = StockFigure(workdir, programs=fuzzer.done, infra=fuzzer.infra, wall_s=time.monotonic() - t0)
    for e in fuzzer.journal.load():  # the programs of the run (minimisation runs are not journaled)
        fig.outcomes[e.outcome.value] = fig.outcomes.get(e.outcome.value, 0) + 1
        fig.run_s += e.duration_s
    fig.bugs = [BugFigure.of(b) for b in fuzzer.store.bugs()]
    return fig


def find_lines(figs: list[SeedFigure], limit_s: float) -> list[str]:
    """The summary of the find part: medians over seeds, and each target reproducer against the targets."""
    found = [f for f in figs if f.found_after is not None]
    lines = [f"positive control, empty corpus, {len(figs)} seeds, limit {limit_s / 60:.0f} min each: "
             f"found by {len(found)}/{len(figs)}"]
    if found:
        # a seed that did not find it counts as the limit (a lower bound on its time), so the median is honest
        programs = [f.found_after if f.found_after is not None else f.programs_run for f in figs]
        minutes = [f.found_minutes if f.found_minutes is not None else limit_s / 60 for f in figs]
        lines.append(f"  median programs to the first dma_pool use-after-free {statistics.median(programs):.0f}, "
                     f"median minutes {statistics.median(minutes):.1f} (not found: counted at the limit)")
        med = statistics.median(minutes)
        if 2 * len(found) <= len(figs) and limit_s / 60 < TARGET_MINUTES:
            verdict = f"not shown: fewer than half the seeds found it within a {limit_s / 60:.0f} min limit"
        else:
            verdict = "met" if 2 * len(found) > len(figs) and med <= TARGET_MINUTES else "MISSED"
        lines.append(f"  target: found within {TARGET_MINUTES:.0f} min: {verdict}")
    through = [f for f in figs if f.ptys_after is not None]
    ptys_minutes = [limit_s / 60 if f.ptys_minutes is None else f.ptys_minutes for f in figs]
    lines.append(f"  through a reader's PTYS query (the seed case's way in): found by {len(through)}/{len(figs)}"
                 + (f", median minutes {statistics.median(ptys_minutes):.1f} (not found: counted at the limit)"
                    if through else ""))
    for f in figs:
        t = f.target
        if t is None or t.repro_ops is None:
            continue
        ok = (t.repro_ops <= TARGET_OPS and t.teardown and t.ptys_reader and (t.rate or 0) >= TARGET_RATE)
        lines.append(f"  seed {f.seed} reproducer (entry {f.minimized_entry or '-'}): {t.repro_ops} ops, rate "
                     f"{t.rate:.2f}: target (<= {TARGET_OPS} ops, teardown and PTYS reader, rate >= {TARGET_RATE}) "
                     f"{'met' if ok else 'MISSED'}")
    return lines


def stock_lines(fig: StockFigure) -> list[str]:
    lines = [f"stock driver, {fig.wall_s / 60:.0f} min: {fig.programs} programs ({fig.per_hour:.0f} per hour of wall "
             f"time with new bugs' minimisation, {fig.per_run_hour:.0f} per hour of program iterations), "
             f"outcomes {fig.outcomes}, infrastructure {fig.infra_share:.1%} "
             f"(target under {TARGET_INFRA:.0%}: {'met' if fig.infra_share < TARGET_INFRA else 'MISSED'})",
             f"  work folder {fig.workdir}"]
    if not fig.bugs:
        lines.append("  no finding")
    for b in fig.bugs:
        lines.append(b.line())
        lines.append(f"      triage: {b.triage or '-'}")
    return lines

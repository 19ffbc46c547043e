"""Fix verification: one race schedule on a base driver and on the base with a fix, and what the counts mean.

The base and the fixed driver are two builds of one recipe (:mod:`mlx5image.driver`): the base variant is
``base`` with the base patches, the fixed variant the same with the fix patches after them, so the only
difference between the two modules is the fix. Both campaigns share the seed and the delay range, and an
iteration's plan depends only on (seed, iteration) (:meth:`mlx5lab.campaign.spec.CampaignSpec.plan`), so
iteration k waits the same delay on both sides; the fix side simply runs more of the same schedule.

A panic, hang or report is a kernel finding ("panics" in the verdict); an infrastructure outcome is no
kernel result: it is counted and shown, and left out of n on its side. Both campaigns are ordinary
campaign folders (``DIR/base``, ``DIR/fix``; :class:`mlx5lab.rundir.VerifyDir`), so a killed verification
continues where it stopped when run again with the same arguments and ``--out``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import Mlx5LabError, verify
from .campaign.campaign import Campaign
from .campaign.outcome import IterationResult, Outcome
from .campaign.spec import CampaignSpec
from .rundir import VerifyDir, atomic_write_json

Progress = Callable[[str], None]
#: Builds (or finds) the image variant of a name; raises ImageError, e.g. for a patch that does not apply.
Prepare = Callable[[str | None, str], None]
#: Runs a campaign's pending iterations; returns its exit status.
RunCampaign = Callable[[Campaign, Progress], int]


@dataclass(frozen=True)
class Tally:
    """A campaign's outcomes, counted."""

    clean: int = 0
    panic: int = 0
    hang: int = 0
    report: int = 0
    infra: int = 0

    @classmethod
    def of(cls, results: Iterable[IterationResult]) -> Tally:
        counts = {o.value: 0 for o in Outcome}
        for r in results:
            counts[r.outcome.value] += 1
        return cls(**counts)

    @property
    def findings(self) -> int:
        """Kernel findings: what the verdict counts as panics."""
        return self.panic + self.hang + self.report

    @property
    def kernel_results(self) -> int:
        """n: every iteration but the infrastructure failures."""
        return self.clean + self.findings

    def to_json(self) -> dict[str, int]:
        return {**asdict(self), "findings": self.findings, "n": self.kernel_results}


def judge(base: Tally, fix: Tally, confidence: float) -> verify.Verdict:
    """The verdict of two tallies: :func:`mlx5lab.verify.verdict` on the kernel results, plus what was left out."""
    if base.kernel_results == 0 or fix.kernel_results == 0:
        empty = [f"the {side} ({t.infra} infrastructure outcomes)"
                 for side, t in (("base", base), ("fix", fix)) if t.kernel_results == 0]
        return verify.Verdict(f"no kernel result on {' nor on '.join(empty)}: infrastructure failure, "
                              "nothing verified", verify.EXIT_INFRA)
    v = verify.verdict(base.findings, base.kernel_results, fix.findings, fix.kernel_results, confidence)
    notes = []
    for side, t in (("base", base), ("fix", fix)):
        other = [f"{n} {name}" for n, name in ((t.hang, "hang"), (t.report, "report")) if n]
        if other:
            notes.append(f"{side}'s panics include {' and '.join(other)}")
    if base.infra or fix.infra:
        notes.append(f"{base.infra + fix.infra} infrastructure outcomes not counted "
                     f"(base {base.infra}, fix {fix.infra})")
    return verify.Verdict(v.text + "".join(f"; {n}" for n in notes), v.exit_code)


@dataclass(frozen=True)
class Side:
    """One of the two campaigns: a variant (name and the patches it stands for) and its iteration count."""

    name: str  # "base" or "fix"
    variant: str
    iterations: int
    patches: tuple[str, ...] = ()  # the files as given, for verdict.json


@dataclass(frozen=True)
class VerifyPlan:
    kernel: str  # pinned (a release or a .deb path), as a campaign records it
    base: Side
    fix: Side
    seed: int = 1
    delay: tuple[float, float] = (0.2, 1.5)
    confidence: float = 0.95
    params: dict[str, Any] = field(default_factory=dict)  # the race's parameters (RaceParams fields)

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1:
            raise Mlx5LabError(f"--confidence is a probability strictly between 0 and 1, not {self.confidence}")
        for side in (self.base, self.fix):
            if side.iterations < 1:
                raise Mlx5LabError(f"the {side.name} side needs at least one iteration, not {side.iterations}")
        if self.base.variant == self.fix.variant:
            raise Mlx5LabError("the fixed variant is the base itself: give at least one --patch")

    def spec(self, side: Side) -> CampaignSpec:
        return CampaignSpec(kernel=self.kernel, variant=side.variant, iterations=side.iterations, seed=self.seed,
                            delay_min_s=self.delay[0], delay_max_s=self.delay[1], params=dict(self.params))


def open_side(folder: Path, spec: CampaignSpec) -> Campaign:
    """The campaign of one side: created, or resumed if ``folder`` already holds this very campaign."""
    if not (folder / "campaign.json").exists():
        return Campaign.create(folder, spec)
    c = Campaign.resume(folder)
    if c.spec.to_json() != spec.to_json():
        theirs, ours = c.spec.to_json(), spec.to_json()
        diff = ", ".join(f"{k}: {theirs.get(k)!r} there, {ours.get(k)!r} now"
                         for k in sorted(set(theirs) | set(ours)) if theirs.get(k) != ours.get(k))
        raise Mlx5LabError(f"{folder} holds another campaign ({diff}); give another --out")
    return c


def result_json(plan: VerifyPlan, tallies: dict[str, Tally], v: verify.Verdict, folder: VerifyDir) -> dict[str, Any]:
    fix = tallies["fix"]
    bound = (verify.upper_bound(fix.findings, fix.kernel_results, plan.confidence)
             if fix.kernel_results else None)
    return {
        "verdict": v.text, "exit_code": v.exit_code, "verified": v.exit_code == verify.EXIT_VERIFIED,
        "confidence": plan.confidence, "fixed_panic_rate_upper_bound": bound,
        "kernel": plan.kernel, "seed": plan.seed, "delay_s": list(plan.delay),
        **{side.name: {"variant": side.variant, "patches": list(side.patches), "iterations": side.iterations,
                       "campaign": str(folder.campaign(side.name).path), **tallies[side.name].to_json()}
           for side in (plan.base, plan.fix)},
    }


def run_verify_fix(plan: VerifyPlan, out: Path, progress: Progress, *, prepare: Prepare,
                   run: RunCampaign) -> verify.Verdict:
    """Build both variants, run the base's campaign then the fix's, write ``verdict.json``, return the verdict.

    Both builds come first, so a fix that does not apply (or does not compile) stops before any guest runs.
    """
    folder = VerifyDir(Path(out))
    folder.path.mkdir(parents=True, exist_ok=True)
    sides: Sequence[Side] = (plan.base, plan.fix)
    for side in sides:
        progress(f"verify-fix: preparing the {side.name} driver ({side.variant})")
        prepare(plan.kernel, side.variant)
    tallies: dict[str, Tally] = {}
    for side in sides:
        c = open_side(folder.campaign(side.name).path, plan.spec(side))
        progress(f"verify-fix: {side.name} campaign, {side.iterations} iterations of seed {plan.seed} "
                 f"({len(c.results)} already done) in {c.folder}")
        try:
            run(c, progress)
        except KeyboardInterrupt:
            progress(f"verify-fix: interrupted; run the same command with --out {folder.path} to continue")
            raise
        tallies[side.name] = t = Tally.of(c.results.values())
        progress(f"verify-fix: {side.name}: {t.findings}/{t.kernel_results} panics, {t.clean} clean, "
                 f"{t.infra} infrastructure")
    v = judge(tallies["base"], tallies["fix"], plan.confidence)
    atomic_write_json(folder.verdict, result_json(plan, tallies, v, folder))
    return v

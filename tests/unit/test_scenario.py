"""The scenario contract: a scenario defined here, outside the package, runs through the campaign
machinery (schedule, journal, resume, reports) without any change to it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from mlx5lab.campaign.campaign import EXIT_FOUND, Campaign
from mlx5lab.campaign.outcome import IterationResult, Outcome
from mlx5lab.campaign.scenario import IterationPlan, register_scenario, scenario_names
from mlx5lab.campaign.spec import CampaignSpec
from mlx5lab.rundir import RunDir


@dataclass
class CoinParams:
    panic_below: float = 0.3


@register_scenario
class Coin:
    """Draws from the iteration's own random source; "panics" below a threshold."""

    name: ClassVar[str] = "test-coin"
    Params: ClassVar[type[CoinParams]] = CoinParams

    def __init__(self, params: CoinParams) -> None:
        self.params = params

    def run_iteration(self, image: object, plan: IterationPlan, folder: RunDir) -> IterationResult:
        draw = plan.rng().random()
        folder.console.write_text(f"draw {draw}\n")
        outcome = Outcome.PANIC if draw < self.params.panic_below else Outcome.CLEAN
        r = IterationResult(plan.iteration, outcome, delay_s=plan.delay_s, title="coin" if outcome.is_finding else "")
        r.write(folder)
        return r


def run(campaign: Campaign, stop_at: int | None = None) -> int:
    scenario = campaign.spec.make_scenario()

    def one(plan: IterationPlan, folder: RunDir) -> IterationResult:
        if plan.iteration == stop_at:
            raise KeyboardInterrupt
        return scenario.run_iteration(None, plan, folder)

    return campaign.run(one)


def test_a_new_scenario_runs_resumes_and_reports(tmp_path: Path) -> None:
    assert "test-coin" in scenario_names() and "reboot-race" in scenario_names()
    spec = CampaignSpec(kernel=None, variant="stock", iterations=12, seed=5, scenario="test-coin",
                        params=CoinParams(panic_below=0.5))
    c = Campaign.create(tmp_path / "c", spec)
    with pytest.raises(KeyboardInterrupt):
        run(c, stop_at=7)
    resumed = Campaign.resume(tmp_path / "c")
    assert resumed.spec.scenario == "test-coin" and resumed.spec.params == {"panic_below": 0.5}
    assert sorted(resumed.results) == list(range(1, 7))
    status = run(resumed)
    whole = Campaign.create(tmp_path / "u", spec)
    assert run(whole) == status
    assert {i: r.outcome for i, r in resumed.results.items()} == {i: r.outcome for i, r in whole.results.items()}
    panics = [r for r in whole.results.values() if r.outcome is Outcome.PANIC]
    assert panics and status == EXIT_FOUND  # 12 draws below 0.5 on this seed: some land there
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["spec"]["scenario"] == "test-coin" and summary["finished"] == 12
    assert (tmp_path / "c" / "junit.xml").read_text().count("<testcase") == 12
    assert "scenario test-coin" in resumed.table()

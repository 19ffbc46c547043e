"""A second scenario, defined in the tests, boots real guests through the same campaign code as the race:
the runner, the journal, resume after an interruption and the reports."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from mlx5dev.card import CardConfig
from mlx5image.build import GuestImage
from mlx5lab.campaign.campaign import EXIT_CLEAN, Campaign
from mlx5lab.campaign.outcome import IterationResult, Outcome
from mlx5lab.campaign.runner import run_campaign
from mlx5lab.campaign.scenario import IterationPlan, register_scenario
from mlx5lab.campaign.spec import CampaignSpec
from mlx5lab.rundir import RunDir
from mlx5lab.scenarios.guest import run_guest_iteration
from mlx5lab.vm.machine import Machine

INTERRUPT_ONCE: set[int] = set()


@dataclass
class TrueParams:
    command: str = "true"


@register_scenario
class BootTrue:
    """Boot the card, run one command; clean if it exits 0."""

    name: ClassVar[str] = "test-boot-true"
    Params: ClassVar[type[TrueParams]] = TrueParams

    def __init__(self, params: TrueParams) -> None:
        self.params = params

    def run_iteration(self, image: GuestImage, plan: IterationPlan, folder: RunDir) -> IterationResult:
        if plan.iteration in INTERRUPT_ONCE:
            INTERRUPT_ONCE.discard(plan.iteration)
            folder.console.write_text("cut off\n")
            raise KeyboardInterrupt
        return run_guest_iteration(image, plan, folder, CardConfig(), self._body)

    def _body(self, m: Machine, result: IterationResult) -> None:
        res = m.run(self.params.command)
        result.outcome = Outcome.CLEAN if res.status == 0 else Outcome.INFRA
        result.detail = f"{self.params.command} exited {res.status}"


def test_boot_true_campaign_with_resume(image: GuestImage, tmp_path: Path) -> None:
    spec = CampaignSpec(kernel=image.kernel_release, variant="stock", iterations=2, seed=3,
                        scenario="test-boot-true")
    folder = tmp_path / "campaign"
    INTERRUPT_ONCE.add(2)
    with pytest.raises(KeyboardInterrupt):
        run_campaign(Campaign.create(folder, spec), lambda _m: None, triage=False)
    resumed = Campaign.resume(folder)
    assert sorted(resumed.results) == [1]
    assert run_campaign(resumed, lambda _m: None, triage=False) == EXIT_CLEAN
    journal = [json.loads(x) for x in (folder / "journal.jsonl").read_text().splitlines()]
    assert [(e["iteration"], e["outcome"], e["detail"]) for e in journal] == \
        [(1, "clean", "true exited 0"), (2, "clean", "true exited 0")]
    for i in (1, 2):
        run = RunDir(folder / f"iter-000{i}")
        result = json.loads(run.result.read_text())
        assert result["identity"]["kernel_release"] == image.kernel_release
        assert "MLX5LAB-PORTS" in run.console.read_text()
        assert run.card.trace(0).stat().st_size > 0 and run.card.trace(1).stat().st_size > 0
    assert (folder / "iter-0002.interrupted-1" / "console.log").read_text() == "cut off\n"
    assert json.loads((folder / "summary.json").read_text())["counts"]["clean"] == 2

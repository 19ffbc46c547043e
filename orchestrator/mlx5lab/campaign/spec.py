"""A campaign's parameters (campaign.json) and its schedule."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any

from ..vm.snapshot import BOOT_MODES
from .scenario import IterationPlan, Scenario, make_scenario

DEFAULT_SCENARIO = "reboot-race"


@dataclass
class CampaignSpec:
    kernel: str | None
    variant: str
    iterations: int
    seed: int
    delay_min_s: float = 0.2
    delay_max_s: float = 1.5
    scenario: str = DEFAULT_SCENARIO
    params: dict[str, Any] = field(default_factory=dict)  # the scenario's Params, as JSON
    boot: str = "classic"  # or "snapshot" (mlx5lab.vm.snapshot): the same for every iteration, resume included

    def __post_init__(self) -> None:
        if self.boot not in BOOT_MODES:
            raise ValueError(f"boot mode {self.boot!r} is not one of {', '.join(BOOT_MODES)}")
        # Unknown names and bad parameters fail here, not at the first iteration; campaign.json then
        # records every parameter, defaults included.
        self.params = dataclasses.asdict(make_scenario(self.scenario, self.params).params)

    def plan(self, iteration: int) -> IterationPlan:
        """Iteration ``iteration``'s plan: a function of (seed, iteration) only."""
        rng = random.Random(f"{self.seed}:{iteration}")
        return IterationPlan(iteration, self.seed, round(rng.uniform(self.delay_min_s, self.delay_max_s), 3),
                             self.boot)

    def delay(self, iteration: int) -> float:
        return self.plan(iteration).delay_s

    def make_scenario(self) -> Scenario:
        return make_scenario(self.scenario, self.params)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CampaignSpec:
        fields = dict(data)
        if "race" in fields:  # campaign.json before scenarios had names: always the reboot race
            fields.setdefault("scenario", DEFAULT_SCENARIO)
            fields["params"] = fields.pop("race")
        return cls(**fields)

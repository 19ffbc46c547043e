"""The contract between the campaign machinery and what an iteration does.

A scenario is a named class with its own parameters (a dataclass, stored in campaign.json) and one method
that runs one iteration in a folder and decides the outcome from the evidence it kept. The campaign
(schedule, journal, resume, reports, background triage) knows nothing else about it, so a new scenario
is a module in ``mlx5lab/scenarios/`` with a ``@register_scenario`` class, and nothing in ``campaign/``
changes.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from mlx5image.build import GuestImage

from .. import Mlx5LabError
from ..rundir import RunDir
from .outcome import IterationResult


@dataclass(frozen=True)
class IterationPlan:
    """What the schedule gives iteration ``iteration``: a function of (campaign seed, iteration) only, so a
    resumed campaign, or iterations run in another order or place, get the same plan."""

    iteration: int
    seed: int
    delay_s: float
    boot: str = "classic"  # how the guest starts (mlx5lab.vm.snapshot.BOOT_MODES); the campaign's choice

    def rng(self) -> random.Random:
        """A random source for this iteration alone (for scenarios that draw more than the delay)."""
        return random.Random(f"{self.seed}:{self.iteration}:scenario")


class Scenario(Protocol):
    """One kind of iteration. ``name`` is what campaign.json records; ``Params`` is its parameter type."""

    name: ClassVar[str]
    Params: ClassVar[type[Any]]
    params: Any

    def run_iteration(self, image: GuestImage, plan: IterationPlan, folder: RunDir) -> IterationResult:
        """Run one iteration in ``folder`` and return its result with the outcome decided from evidence.

        Never raises for a failure of the guest or the infrastructure: those are outcomes (``infra`` when
        it is not the kernel's doing). The campaign writes the result to the journal.
        """
        ...


_SCENARIOS: dict[str, type[Scenario]] = {}


def register_scenario(cls: type[Scenario]) -> type[Scenario]:
    """Class decorator: make ``cls`` available to campaigns under ``cls.name``."""
    if not dataclasses.is_dataclass(cls.Params):
        raise TypeError(f"{cls.__name__}.Params must be a dataclass (it is stored in campaign.json)")
    _SCENARIOS[cls.name] = cls
    return cls


def scenario_names() -> list[str]:
    _load_builtin()
    return sorted(_SCENARIOS)


def scenario_class(name: str) -> type[Scenario]:
    _load_builtin()
    try:
        return _SCENARIOS[name]
    except KeyError:
        raise Mlx5LabError(f"unknown scenario {name!r}; known: {', '.join(sorted(_SCENARIOS))}") from None


def make_scenario(name: str, params: dict[str, Any] | Any | None = None) -> Scenario:
    """An instance of scenario ``name`` with ``params`` (its Params, or their JSON form, or None: defaults)."""
    cls = scenario_class(name)
    if params is None:
        params = cls.Params()
    elif isinstance(params, dict):
        try:
            params = cls.Params(**params)
        except TypeError as exc:
            raise Mlx5LabError(f"bad parameters for scenario {name!r}: {exc}") from exc
    return cls(params)  # type: ignore[call-arg]


def _load_builtin() -> None:
    from .. import scenarios  # noqa: F401 - importing the package registers the built-in scenarios

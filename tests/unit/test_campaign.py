"""Campaign bookkeeping without QEMU: schedule, journal, resume after a kill, reports, exit status."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from mlx5lab import Mlx5LabError
from mlx5lab.campaign.campaign import EXIT_CLEAN, EXIT_FOUND, EXIT_INFRA, Campaign, CampaignSpec
from mlx5lab.campaign.evidence import IterationResult


def spec(n: int = 4, seed: int = 7) -> CampaignSpec:
    return CampaignSpec(kernel=None, variant="stock", iterations=n, seed=seed)


def fake_run(outcomes: dict[int, str], calls: list[int]):
    def run(i: int, delay: float, folder: Path) -> IterationResult:
        calls.append(i)
        (folder / "console.log").write_text(f"iteration {i}\n")
        r = IterationResult(iteration=i, outcome=outcomes.get(i, "clean"), delay_s=delay,
                            title="general protection fault" if outcomes.get(i) == "panic" else "")
        r.write(folder)
        return r
    return run


def test_delay_schedule_depends_only_on_seed_and_iteration() -> None:
    a, b = spec(seed=3), spec(seed=3)
    assert [a.delay(i) for i in range(1, 20)] == [b.delay(i) for i in range(1, 20)]
    assert [a.delay(i) for i in range(1, 20)] != [spec(seed=4).delay(i) for i in range(1, 20)]
    assert all(a.delay_min_s <= a.delay(i) <= a.delay_max_s for i in range(1, 50))


def test_campaign_runs_and_reports(tmp_path: Path) -> None:
    calls: list[int] = []
    c = Campaign.create(tmp_path / "c", spec())
    status = c.run(fake_run({2: "panic", 3: "infra"}, calls))
    assert calls == [1, 2, 3, 4]
    assert status == EXIT_FOUND
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["counts"] == {"clean": 2, "panic": 1, "hang": 0, "infra": 1}
    assert summary["crash_titles"] == {"general protection fault [-]": 1}
    suite = ET.parse(tmp_path / "c" / "junit.xml").getroot()
    assert suite.get("tests") == "4" and suite.get("failures") == "1" and suite.get("errors") == "1"
    assert [tc.get("name") for tc in suite] == [f"iteration-000{i}" for i in range(1, 5)]


def test_exit_status_separates_findings_from_infrastructure(tmp_path: Path) -> None:
    assert Campaign.create(tmp_path / "a", spec(2)).run(fake_run({}, [])) == EXIT_CLEAN
    assert Campaign.create(tmp_path / "b", spec(2)).run(fake_run({1: "infra"}, [])) == EXIT_INFRA
    assert Campaign.create(tmp_path / "c", spec(2)).run(fake_run({1: "hang"}, [])) == EXIT_FOUND


def test_resume_after_a_kill_mid_iteration(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    calls: list[int] = []
    inner = fake_run({1: "panic"}, calls)

    def killed_in_third(i: int, delay: float, f: Path) -> IterationResult:
        if i == 3:
            (f / "console.log").write_text("half an iteration\n")
            raise KeyboardInterrupt
        return inner(i, delay, f)

    c = Campaign.create(folder, spec())
    with pytest.raises(KeyboardInterrupt):
        c.run(killed_in_third)
    with open(folder / "journal.jsonl", "a") as f:
        f.write('{"iteration": 3, "outc')  # a line torn by the kill
    resumed = Campaign.resume(folder)
    assert sorted(resumed.results) == [1, 2]
    assert resumed.run(inner) == EXIT_FOUND
    assert calls == [1, 2, 3, 4]
    assert (folder / "iter-0003" / "console.log").read_text() == "iteration 3\n"  # redone from nothing
    assert (folder / "iter-0003.interrupted-1" / "console.log").read_text() == "half an iteration\n"  # kept
    assert sorted(Campaign.resume(folder).results) == [1, 2, 3, 4]  # the journal reads back whole
    uninterrupted = Campaign.create(tmp_path / "u", spec())
    uninterrupted.run(fake_run({1: "panic"}, []))
    assert resumed.counts() == uninterrupted.counts()
    assert [e["delay_s"] for e in json.loads((folder / "summary.json").read_text())["iterations"]] == \
        [e["delay_s"] for e in json.loads((tmp_path / "u" / "summary.json").read_text())["iterations"]]


def test_create_refuses_an_existing_campaign_and_resume_needs_one(tmp_path: Path) -> None:
    Campaign.create(tmp_path / "c", spec())
    with pytest.raises(Mlx5LabError, match="--resume"):
        Campaign.create(tmp_path / "c", spec())
    with pytest.raises(Mlx5LabError, match="not a campaign"):
        Campaign.resume(tmp_path / "nothing")

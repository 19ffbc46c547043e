"""Campaign bookkeeping without QEMU: schedule, journal, resume after a kill, reports, exit status."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from mlx5lab import Mlx5LabError
from mlx5lab.campaign.campaign import EXIT_CLEAN, EXIT_FOUND, EXIT_INFRA, Campaign
from mlx5lab.campaign.outcome import RESULT_SCHEMA, IterationResult, Outcome
from mlx5lab.campaign.scenario import IterationPlan
from mlx5lab.campaign.spec import CampaignSpec
from mlx5lab.rundir import RunDir


def spec(n: int = 4, seed: int = 7) -> CampaignSpec:
    return CampaignSpec(kernel=None, variant="stock", iterations=n, seed=seed)


def fake_run(outcomes: dict[int, str], calls: list[int]):
    def run(plan: IterationPlan, folder: RunDir) -> IterationResult:
        i = plan.iteration
        calls.append(i)
        folder.console.write_text(f"iteration {i}\n")
        r = IterationResult(iteration=i, outcome=Outcome(outcomes.get(i, "clean")), delay_s=plan.delay_s,
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
    assert summary["counts"] == {"clean": 2, "panic": 1, "hang": 0, "report": 0, "infra": 1}
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

    def killed_in_third(plan: IterationPlan, f: RunDir) -> IterationResult:
        if plan.iteration == 3:
            f.console.write_text("half an iteration\n")
            raise KeyboardInterrupt
        return inner(plan, f)

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


def test_journal_entries_are_whole_results_with_a_schema(tmp_path: Path) -> None:
    c = Campaign.create(tmp_path / "c", spec(2))
    c.run(fake_run({2: "panic"}, []))
    lines = [json.loads(x) for x in (tmp_path / "c" / "journal.jsonl").read_text().splitlines()]
    assert [x["schema"] for x in lines] == [RESULT_SCHEMA, RESULT_SCHEMA]
    assert lines[1]["outcome"] == "panic" and lines[1]["dir"] == "iter-0002"
    back = Campaign.resume(tmp_path / "c").results
    assert back[2] == c.results[2] and back[2].outcome is Outcome.PANIC


def test_journal_of_the_first_schema_reads_back(tmp_path: Path) -> None:
    """A campaign written before results had a schema (subset of fields, "race" parameters) resumes."""
    folder = tmp_path / "old"
    folder.mkdir()
    old_spec = {"kernel": "6.1.0-56-amd64", "variant": "vulnerable", "iterations": 3, "seed": 1,
                "delay_min_s": 0.2, "delay_max_s": 1.5,
                "race": {"speeds": [100000, 25000], "readers": ["speed"], "threads": 4, "hang_timeout_s": 30.0,
                         "faults": []}}
    (folder / "campaign.json").write_text(json.dumps(old_spec))
    (folder / "journal.jsonl").write_text(json.dumps(
        {"iteration": 1, "outcome": "panic", "delay_s": 0.5, "title": "general protection fault in x",
         "signature": "ab", "detail": "", "duration_s": 8.0, "dir": "iter-0001"}) + "\n")
    c = Campaign.resume(folder)
    assert c.spec.scenario == "reboot-race" and c.spec.params["threads"] == 4
    assert c.results[1].outcome is Outcome.PANIC and c.results[1].title == "general protection fault in x"
    assert c.pending() == [2, 3]


def test_spec_records_every_parameter_and_rejects_unknown_scenarios() -> None:
    assert spec().params["readers"] == ["speed"]  # the scenario's defaults, written to campaign.json
    with pytest.raises(Mlx5LabError, match="unknown scenario"):
        CampaignSpec(kernel=None, variant="stock", iterations=1, seed=1, scenario="no-such-thing")
    with pytest.raises(Mlx5LabError, match="bad parameters"):
        CampaignSpec(kernel=None, variant="stock", iterations=1, seed=1, params={"no_such_param": 1})


def test_sockets_of_a_deep_run_folder_get_a_short_stand_in(tmp_path: Path) -> None:
    import socket as socketlib

    from mlx5dev.rundir import CardDir, remove_socket

    deep = tmp_path / ("x" * 60) / ("y" * 60) / "card"
    card = CardDir(deep)
    sock = card.function_socket(0)
    assert len(str(sock)) <= 107 and sock == CardDir(deep).function_socket(0)  # the same from both sides
    assert RunDir(deep.parent).qmp_socket != deep.parent / "qmp.sock"
    with socketlib.socket(socketlib.AF_UNIX) as s:
        s.bind(str(sock))
    remove_socket(sock)
    assert not sock.parent.exists()
    assert CardDir(tmp_path / "c").function_socket(1) == tmp_path / "c" / "fn1.sock"  # short enough: as is

"""A campaign N iterations at a time, without QEMU: a local pool of threads and a real in-process Dask
cluster (distributed.LocalCluster) give the journal, schedule and reports of one job; a failing
iteration stops the pool; a lost one is never recorded."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from mlx5lab import Mlx5LabError
from mlx5lab.campaign import cluster, pool
from mlx5lab.campaign.campaign import EXIT_FOUND, Campaign
from mlx5lab.campaign.outcome import IterationResult, Outcome
from mlx5lab.campaign.scenario import IterationPlan
from mlx5lab.campaign.spec import CampaignSpec
from mlx5lab.rundir import RunDir

OUTCOMES = {2: "panic", 5: "infra"}


def spec(n: int = 6) -> CampaignSpec:
    return CampaignSpec(kernel=None, variant="stock", iterations=n, seed=11)


class FakeScenario:
    """Stands in for a guest: sleeps a little (later iterations shorter, so they finish out of order)."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()

    def run_iteration(self, image: object, plan: IterationPlan, folder: RunDir) -> IterationResult:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.05 * (7 - plan.iteration))
        folder.console.write_text(f"iteration {plan.iteration} delay {plan.delay_s}\n")
        (folder.path / "card").mkdir()
        (folder.path / "card" / "trace-fn0.jsonl").write_text("{}\n")
        r = IterationResult(plan.iteration, Outcome(OUTCOMES.get(plan.iteration, "clean")), delay_s=plan.delay_s)
        r.write(folder)
        with self.lock:
            self.running -= 1
        return r


def journal(folder: Path) -> dict[int, dict]:
    lines = [json.loads(x) for x in (folder / "journal.jsonl").read_text().splitlines()]
    return {e["iteration"]: {k: e[k] for k in ("outcome", "delay_s")} for e in lines}


def test_pool_gives_the_journal_and_reports_of_one_job(tmp_path: Path) -> None:
    results = {}
    for jobs in (1, 3):
        scenario = FakeScenario()
        c = Campaign.create(tmp_path / f"j{jobs}", spec())
        status = c.run(lambda plan, folder, s=scenario: s.run_iteration(None, plan, folder), jobs=jobs)
        assert status == EXIT_FOUND
        assert scenario.most == jobs  # that many at once, never more
        results[jobs] = journal(c.folder)
        summary = json.loads((c.folder / "summary.json").read_text())
        assert [e["iteration"] for e in summary["iterations"]] == list(range(1, 7))
    assert results[1] == results[3] and len(results[3]) == 6


def test_an_iteration_error_stops_the_pool_and_keeps_the_finished(tmp_path: Path) -> None:
    def run(plan: IterationPlan, folder: RunDir) -> IterationResult:
        if plan.iteration == 3:
            raise RuntimeError("device server would not start")
        time.sleep(0.02)
        r = IterationResult(plan.iteration, Outcome.CLEAN)
        r.write(folder)
        return r

    c = Campaign.create(tmp_path / "c", spec())
    with pytest.raises(RuntimeError, match="device server"):
        c.run(run, jobs=2)
    resumed = Campaign.resume(tmp_path / "c")
    assert 3 not in resumed.results and set(resumed.results) <= {1, 2, 4, 5, 6}


def test_a_lost_iteration_is_not_recorded_and_resume_runs_it(tmp_path: Path) -> None:
    def run(plan: IterationPlan, folder: RunDir) -> IterationResult:
        if plan.iteration == 2:
            raise pool.IterationLost("worker lost")
        r = IterationResult(plan.iteration, Outcome.CLEAN)
        r.write(folder)
        return r

    c = Campaign.create(tmp_path / "c", spec(4))
    with pytest.raises(Mlx5LabError, match="iteration 2: worker lost.*--resume"):
        c.run(run, jobs=2)
    assert set(Campaign.resume(tmp_path / "c").pending()) == {2}


def test_jobs_parsing_and_the_machine_default() -> None:
    assert pool.parse_jobs("3") == 3 and pool.parse_jobs("auto") == pool.default_jobs() >= 1
    for bad in ("0", "-1", "many"):
        with pytest.raises(ValueError):
            pool.parse_jobs(bad)


def test_pack_keeps_files_and_folders_only(tmp_path: Path) -> None:
    import socket

    src = tmp_path / "src"
    (src / "card").mkdir(parents=True)
    (src / "console.log").write_text("boot\n")
    (src / "card" / "trace.jsonl").write_text("{}\n")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(src / "card" / "fn0.sock"))
        cluster.unpack(cluster.pack(src), tmp_path / "dst")
    assert (tmp_path / "dst" / "console.log").read_text() == "boot\n"
    card = tmp_path / "dst" / "card"
    assert (card / "trace.jsonl").is_file() and not (card / "fn0.sock").exists()


def test_campaign_on_a_local_dask_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from distributed import LocalCluster

    scenario = FakeScenario()
    monkeypatch.setattr(cluster, "_prepare", lambda spec, notes: notes.append("prepared") or None)
    monkeypatch.setattr(CampaignSpec, "make_scenario", lambda self: scenario)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, resources={"guest": 1},
                      dashboard_address=None) as lc:
        runner = cluster.ClusterRunner(lc.scheduler_address, spec(), progress=lambda _m: None)
        assert runner.slots == 2 and runner.workers == 2
        c = Campaign.create(tmp_path / "c", spec())
        assert c.run(runner.run_iteration, jobs=runner.slots) == EXIT_FOUND
        runner.close()
    assert journal(c.folder) == {i: {"outcome": OUTCOMES.get(i, "clean"), "delay_s": spec().delay(i)}
                                 for i in range(1, 7)}
    for i in range(1, 7):  # each iteration's folder came back
        d = c.dir.iteration(i)
        assert d.console.read_text().startswith(f"iteration {i} ")
        assert (d.path / "card" / "trace-fn0.jsonl").is_file()


def test_a_cluster_without_guest_slots_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from distributed import LocalCluster

    with (LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc,
          pytest.raises(Mlx5LabError, match="--resources guest=1")):
        cluster.ClusterRunner(lc.scheduler_address, spec(), progress=lambda _m: None)

"""Campaigns at scale on real guests: --jobs 2 gives the outcomes and schedule of --jobs 1, and a real
Dask cluster (a scheduler and two worker processes on 127.0.0.1) runs a campaign, brings every
iteration's evidence back, and survives a worker killed mid-campaign without losing or doubling one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlx5lab.vm.machine import free_port

from .test_boot import qemu_processes_mentioning
from .test_race import journal, race

DASK = Path(sys.executable).with_name("dask")


def schedule(folder: Path) -> dict[int, tuple[str, float]]:
    return {e["iteration"]: (e["outcome"], e["delay_s"]) for e in journal(folder)}


def test_two_jobs_give_the_outcomes_and_schedule_of_one(tmp_path: Path) -> None:
    for jobs in ("1", "2"):
        res = race("--variant", "stock", "-n", "4", "--seed", "3", "--jobs", jobs, "--out", str(tmp_path / jobs))
        assert res.returncode == 0, res.stderr[-3000:]
    assert schedule(tmp_path / "1") == schedule(tmp_path / "2")
    assert {o for o, _ in schedule(tmp_path / "2").values()} == {"clean"}
    assert "2 guest(s) at a time" in res.stderr
    assert not qemu_processes_mentioning(str(tmp_path))


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path / "dask"
    logs.mkdir()
    procs = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0"], stdout=subprocess.DEVNULL,
                              stderr=open(logs / "scheduler.log", "wb"), start_new_session=True)]  # noqa: SIM115
    for n in range(2):
        procs.append(subprocess.Popen([str(DASK), "worker", address, "--nthreads", "1", "--no-nanny",
                                       "--resources", "guest=1", "--name", f"w{n}", "--dashboard-address", ":0"],
                                      stdout=subprocess.DEVNULL, stderr=open(logs / f"worker{n}.log", "wb"),  # noqa: SIM115
                                      start_new_session=True))
    from distributed import Client

    with Client(address, timeout=60) as c:
        c.wait_for_workers(2, timeout=120)
    try:
        yield address, procs
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=30)


def test_campaign_on_a_dask_cluster_brings_every_iteration_back(tmp_path: Path, dask_cluster) -> None:  # noqa: ANN001
    address, _ = dask_cluster
    out = tmp_path / "c"
    res = race("--variant", "stock", "-n", "4", "--seed", "3", "--cluster", address, "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 guest slot(s) on 2 worker(s)" in res.stderr
    assert sorted(schedule(out)) == [1, 2, 3, 4]
    for i in range(1, 5):
        d = out / f"iter-{i:04d}"
        assert "MLX5LAB-PORTS" in (d / "console.log").read_text() and (d / "result.json").is_file()
        assert (d / "program.prog").is_file() and any((d / "card").glob("*.jsonl"))


def test_a_worker_killed_mid_campaign_loses_no_iteration(tmp_path: Path, dask_cluster) -> None:  # noqa: ANN001
    address, procs = dask_cluster
    out = tmp_path / "c"
    p = subprocess.Popen([sys.executable, "-m", "mlx5lab", "race", "--variant", "stock", "-n", "4", "--seed", "3",
                          "--cluster", address, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (out / "iter-0001" / "console.log").exists() \
            and not any(out.glob("iter-*")):
        time.sleep(0.5)
    time.sleep(5)  # both workers are booting a guest
    os.killpg(procs[1].pid, signal.SIGKILL)
    _, err = p.communicate(timeout=900)
    assert p.returncode == 0, err[-3000:]
    lines = journal(out)
    assert sorted(e["iteration"] for e in lines) == [1, 2, 3, 4]  # each once
    assert {e["outcome"] for e in lines} == {"clean"}  # the lost run was not recorded as anything


def test_fuzzer_on_a_dask_cluster_brings_every_run_back(tmp_path: Path, dask_cluster) -> None:  # noqa: ANN001
    address, _ = dask_cluster
    work = tmp_path / "fz"
    res = subprocess.run([sys.executable, "-m", "mlx5lab", "fuzz", "--workdir", str(work), "--programs", "2",
                          "--seed", "5", "--minimize-tries", "0", "--cluster", address],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode in (0, 1), res.stderr[-3000:]
    assert "2 guest slot(s) on 2 worker(s)" in res.stderr and "2 program(s) at a time" in res.stderr
    lines = [json.loads(x) for x in (work / "journal.jsonl").read_text().splitlines()]
    assert [e["index"] for e in lines] == [0, 1] and all(e["outcome"] != "infra" for e in lines), lines
    for e in lines:
        run = work / e["run"]
        assert "MLX5LAB-EXEC start" in (run / "console.log").read_text() and (run / "exec.jsonl").is_file()
        assert any((run / "card").glob("trace-fn*.jsonl"))

"""The fuzz benchmark's figures on the simulated target of test_fuzz_manager: programs to the first
dma_pool use-after-free, its minimised reproducer against the targets, a stock run's shares."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx5lab.campaign.outcome import Outcome
from mlx5lab.fuzz import bench, manager
from mlx5lab.rundir import RunDir

from .test_fuzz_manager import PTYS_ENTRY, STATS_ENTRY, rewrite_clean, simulated_run


@pytest.fixture(autouse=True)
def simulated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager.Fuzzer, "_image", lambda self: None)
    monkeypatch.setattr(manager.Fuzzer, "run", simulated_run)


def test_find_stops_at_the_first_target_and_measures_its_reproducer(tmp_path: Path) -> None:
    # seed 2 meets the simulated crash (a background speed reader before a reboot) after about 100 programs
    fig = bench.find_seed(tmp_path / "s1", 2, limit_s=120, variant="vulnerable", kernel=None,
                          progress=lambda _m: None, minimize_tries=40, repro_runs=5)
    assert fig.found_after is not None and fig.found_after == fig.programs_run  # it stopped there
    assert fig.found_minutes is not None and 0 <= fig.found_minutes < 2
    t = fig.target
    assert t is not None and t.title == "general protection fault in dma_pool_alloc"
    assert t.repro_ops is not None and t.repro_ops <= 3 and t.teardown and t.ptys_reader and t.rate == 1.0
    lines = bench.find_lines([fig], 120)
    assert "found by 1/1" in lines[0] and any("reproducer" in x and x.endswith("met") for x in lines)


def test_find_goes_on_past_another_way_in_until_one_through_ptys(tmp_path: Path) -> None:
    # seed 4 first meets the simulated fault through the stats work (a statistics reader), later through PTYS
    fig = bench.find_seed(tmp_path / "s1", 4, limit_s=120, variant="vulnerable", kernel=None,
                          progress=lambda _m: None, minimize_tries=40, repro_runs=5)
    assert fig.found_entry == STATS_ENTRY and fig.found_after is not None
    assert fig.ptys_after is not None and fig.ptys_after > fig.found_after and fig.programs_run == fig.ptys_after
    assert fig.ptys_minutes is not None and fig.found_minutes is not None and fig.ptys_minutes >= fig.found_minutes
    t = fig.target
    assert fig.minimized_entry == PTYS_ENTRY and t is not None and t.ptys_reader and t.teardown
    lines = bench.find_lines([fig], 120)
    assert any("PTYS query" in x and "found by 1/1" in x for x in lines)
    assert any(f"entry {PTYS_ENTRY}" in x and x.endswith("met") for x in lines)
    # stopping at the first finding minimises that one, through its own entry
    first = bench.find_seed(tmp_path / "s2", 4, limit_s=120, variant="vulnerable", kernel=None,
                            progress=lambda _m: None, minimize_tries=40, repro_runs=5, ptys=False)
    assert first.programs_run == first.found_after == fig.found_after and first.ptys_after is None
    assert first.minimized_entry == STATS_ENTRY
    t = first.target
    assert t is not None and t.repro_ops is not None and not t.ptys_reader
    assert any("PTYS query" in x and "found by 0/1" in x for x in bench.find_lines([first], 120))


def test_find_goes_on_when_the_first_ptys_program_keeps_no_reproducer(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    flaky: list[str] = []  # the first crashing program: it crashes on its first run only

    def run_once_flaky(self: manager.Fuzzer, program, index: int, plan_seed: int, stop_at: str = "",  # noqa: ANN001, ANN202
                       folder: RunDir | None = None):
        run, result = simulated_run(self, program, index, plan_seed, stop_at, folder)
        if result.outcome is Outcome.PANIC and not flaky:
            flaky.append(program.hash())
        elif program.hash() in flaky:
            result = rewrite_clean(run, index)
        return run, result

    monkeypatch.setattr(manager.Fuzzer, "run", run_once_flaky)
    fig = bench.find_seed(tmp_path / "s1", 2, limit_s=120, variant="vulnerable", kernel=None,
                          progress=lambda _m: None, minimize_tries=40, repro_runs=5)
    assert flaky and fig.ptys_after == fig.found_after  # the first finding was through PTYS ...
    assert fig.programs_run > fig.found_after and fig.repro_attempts == 2  # ... and kept nothing: one more
    t = fig.target
    assert t is not None and t.repro_ops is not None and t.repro_ops <= 3 and t.ptys_reader and t.rate == 1.0
    assert "2 minimisation(s)" in fig.line()


def test_find_refuses_a_used_work_folder(tmp_path: Path) -> None:
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "journal.jsonl").write_text("")
    with pytest.raises(FileExistsError, match="empty corpus"):
        bench.find_seed(tmp_path / "s1", 1, limit_s=1, variant="vulnerable", kernel=None, progress=lambda _m: None,
                        minimize_tries=0, repro_runs=1)


def test_a_seed_that_misses_counts_at_the_limit() -> None:
    hit = bench.SeedFigure(1, Path("a"), programs_run=4, found_after=4, found_minutes=2.0)
    miss = bench.SeedFigure(2, Path("b"), programs_run=50)
    miss2 = bench.SeedFigure(3, Path("c"), programs_run=60)
    lines = bench.find_lines([hit, miss, miss2], 30 * 60)
    assert "found by 1/3" in lines[0]
    assert "median programs to the first dma_pool use-after-free 50" in lines[1] and "median minutes 30.0" in lines[1]
    assert lines[2].endswith("MISSED")  # one seed in three is not a median within the target
    short = bench.find_lines([hit, miss, miss2], 12 * 60)
    assert short[2].endswith("not shown: fewer than half the seeds found it within a 12 min limit")
    two = bench.find_lines([hit, hit, miss], 30 * 60)
    assert two[2].endswith("met")


def test_stock_run_counts_outcomes_and_infrastructure(tmp_path: Path) -> None:
    fig = bench.stock_run(tmp_path / "stock", duration_s=0.5, seed=2, kernel=None, progress=lambda _m: None,
                          minimize_tries=0, repro_runs=1)
    assert fig.programs >= 1 and sum(fig.outcomes.values()) == fig.programs and fig.infra == 0
    assert fig.run_s == fig.programs * 1.0  # the simulated iterations each say 1 s
    text = "\n".join(bench.stock_lines(fig))
    assert "infrastructure 0.0%" in text and "met" in text


def test_boot_mode_and_jobs_reach_every_parts_fuzzer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, int | None]] = []

    class Recording(manager.Fuzzer):
        def __init__(self, cfg: manager.FuzzConfig, progress: manager.Progress) -> None:
            seen.append((cfg.boot, cfg.jobs))
            super().__init__(cfg, progress)

    monkeypatch.setattr(bench, "Fuzzer", Recording)
    bench.find_seed(tmp_path / "s1", 2, limit_s=0.5, variant="vulnerable", kernel=None, progress=lambda _m: None,
                    minimize_tries=0, repro_runs=1, boot="snapshot", jobs=2)
    bench.stock_run(tmp_path / "stock", duration_s=0.5, seed=2, kernel=None, progress=lambda _m: None,
                    minimize_tries=0, repro_runs=1, boot="snapshot", jobs=2)
    assert seen == [("snapshot", 2), ("snapshot", 2)]


def test_bench_fuzz_parses_boot_and_jobs_and_refuses_no_guests(capsys: pytest.CaptureFixture[str]) -> None:
    from mlx5lab.cli import build_parser

    args = build_parser().parse_args(["bench", "fuzz", "--boot", "snapshot", "--jobs", "2"])
    assert (args.boot, args.jobs) == ("snapshot", 2)
    assert build_parser().parse_args(["bench", "fuzz"]).jobs == 1
    for bad, why in (("0", "at least 1"), ("-1", "at least 1"), ("two", "a number of guests or auto")):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(["bench", "fuzz", "--jobs", bad])
        assert exc.value.code == 2 and why in capsys.readouterr().err

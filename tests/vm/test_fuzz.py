"""The fuzzer on real guests: the executor runs every kind of operation with its timing recorded, a short
run on the positive control finds the seed case's use-after-free and minimises its program, and a killed
run resumes without losing or repeating a finished program."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlx5image.build import GuestImage
from mlx5lab.fuzz.manager import replay
from mlx5lab.fuzz.program import parse

from .test_boot import qemu_processes_mentioning

EVERY_KIND = """read speed threads=2 duration=2 &
read ethtool-netlink threads=1 duration=1 &
sleep 0.3
device flap_link fn=1 down_ms=200
path unbind-bind fn=1
device fault fn=0 opcode=ACCESS_REG register=PTYS delay_ms=50 count=2
path link-flap fn=0 down_ms=500
wait
"""
NOISY_SEED = """read speed threads=4 duration=5 &
read duplex threads=1 duration=1 &
sleep 0.5
path reboot force=true
wait
"""


def fuzz(*args: str, timeout: float = 900) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "mlx5lab", "fuzz", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_executor_runs_every_kind_with_timings(image: GuestImage, tmp_path: Path) -> None:
    (r,) = replay(parse(EVERY_KIND), tmp_path / "runs", 1, variant="stock", kernel=image.kernel_release,
                  progress=lambda _m: None)
    assert r.outcome.value == "clean", r
    exec_ = json.loads((tmp_path / "runs" / "replay-001" / "exec.jsonl").read_text())
    assert exec_["ended"] and exec_["event"] is None
    assert not exec_["note"], exec_  # the executor's own record was read whole
    records = {rec["op"]: rec for rec in exec_["records"]}
    assert set(records) == {0, 1, 3, 4, 5, 6}  # every op but the sleep and the wait
    assert records[0]["mode"] == "bg" and records[0]["out"]["ok"] > 0, exec_  # the reader's own counts
    assert records[4]["mode"] == "fg" and records[4]["rc"] == 0 and records[4]["end"] > records[4]["start"]
    assert records[0]["start"] < records[4]["start"] < records[0]["end"]  # the reader ran across the path
    assert {d["idx"] for d in exec_["device"]} == {3, 5, 6} and not any(d["error"] for d in exec_["device"])
    console = (tmp_path / "runs" / "replay-001" / "console.log").read_text()
    after = console[console.index("MLX5LAB-EXEC start"):]
    assert "mlx5_core 0000:01:00.1: firmware version" in after  # the unbind-bind of fn 1 really re-probed it
    assert "mlx5_core 0000:01:00.0: firmware version" not in after  # and only it


def test_short_fuzz_run_finds_and_minimises_the_positive_control(tmp_path: Path) -> None:
    seed = tmp_path / "seed.prog"
    seed.write_text(NOISY_SEED)
    work = tmp_path / "fz"
    p = fuzz("--workdir", str(work), "--programs", "1", "--seed-program", str(seed), "--variant", "vulnerable",
             "--minimize-tries", "8", "--repro-runs", "3")
    out, err = p.communicate(timeout=900)
    assert p.returncode == 1, err[-3000:]  # a new bug
    (crash,) = [d for d in (work / "crashes").iterdir() if d.is_dir()]
    meta = json.loads((crash / "meta.json").read_text())
    assert meta["title"] == "general protection fault in dma_pool_alloc"
    repro = parse((crash / "repro.prog").read_text())
    active = repro.active_ops()
    assert len(active) <= 3 and {("read", "speed"), ("path", "reboot")} <= {(o.kind, o.name) for o in active}
    assert meta["repro"]["rate"] >= 2 / 3
    assert (crash / "vmcore.kdump").is_file()
    report = (work / "report.md").read_text()
    assert "general protection fault in dma_pool_alloc" in report and (work / "report.html").is_file()


def test_kill_and_resume_keeps_every_finished_program(tmp_path: Path) -> None:
    work = tmp_path / "fz"
    p = fuzz("--workdir", str(work), "--programs", "4", "--seed", "5", "--minimize-tries", "0")
    journal = work / "journal.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not journal.exists() or not journal.read_text().strip()):
        time.sleep(0.5)
    time.sleep(3)  # in the middle of the next program
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(30)
    done = [json.loads(x) for x in journal.read_text().splitlines()]
    assert 1 <= len(done) < 4
    q = fuzz("--workdir", str(work), "--programs", "1", "--seed", "5", "--minimize-tries", "0")
    _out, err = q.communicate(timeout=300)
    assert q.returncode in (0, 1), err[-3000:]
    after = [json.loads(x) for x in journal.read_text().splitlines()]
    assert [e["index"] for e in after] == list(range(len(done) + 1))
    assert after[: len(done)] == done
    assert all(e["outcome"] != "infra" for e in after), after


def test_two_jobs_on_snapshot_boots_run_every_program_once(tmp_path: Path) -> None:
    work = tmp_path / "fz"
    p = fuzz("--workdir", str(work), "--programs", "4", "--seed", "5", "--minimize-tries", "0", "--jobs", "2",
             "--boot", "snapshot")
    _out, err = p.communicate(timeout=900)
    assert p.returncode in (0, 1), err[-3000:]
    assert "2 program(s) at a time, snapshot boots" in err
    lines = [json.loads(x) for x in (work / "journal.jsonl").read_text().splitlines()]
    assert [e["index"] for e in lines] == [0, 1, 2, 3] and all(e["outcome"] != "infra" for e in lines), lines
    starts = sorted((e["started"], e["started"] + e["duration_s"]) for e in lines)
    assert any(b[0] < a[1] for a, b in zip(starts, starts[1:], strict=False)), starts  # two ran at once
    for e in lines:
        assert (work / e["run"] / "exec.jsonl").is_file()
    assert not qemu_processes_mentioning(str(tmp_path))


def test_firmware_killed_with_no_driver_bound_is_not_a_wedged_driver(image: GuestImage, tmp_path: Path) -> None:
    """No driver holds the functions when the firmware asserts, so nothing recovers it; the probe then
    fails on it (main.c: mlx5_function_enable) and the driver stays down by design: clean, not a bug."""
    prog = parse("path unbind fn=both\ndevice fw_fatal synd=128\nsleep 0.5\nwait\n")
    (r,) = replay(prog, tmp_path / "runs", 1, variant="stock", kernel=image.kernel_release, progress=lambda _m: None)
    assert r.outcome.value == "clean", r
    assert "stays down by design" in r.detail and "syndrome 0x80" in r.detail


def test_a_hangs_try_ends_at_its_report_with_the_same_verdict(image: GuestImage, tmp_path: Path) -> None:
    """An unbind whose TEARDOWN_HCA the device never completes waits out the command timeout (60 s here)
    in cmd.c: wait_func, uninterruptibly: a hung task (a reader would give up on its read, and the program
    would end). Run to the program's timeout, that is a hang; run again with ``stop_at`` its signature (as
    a reproducer's try is), the run ends at the report, sooner, with the same outcome and signature."""
    from mlx5lab.campaign.scenario import IterationPlan
    from mlx5lab.rundir import RunDir
    from mlx5lab.scenarios.fuzz_program import FuzzParams, FuzzProgram

    prog = parse("device fault fn=1 opcode=TEARDOWN_HCA drop=true count=1\npath unbind fn=1\nwait\n")
    results = []
    for i, (slack, stop_at) in enumerate(((30.0, ""), (60.0, None))):
        run = RunDir(tmp_path / f"run-{i}")
        run.path.mkdir()
        params = FuzzParams(program=prog.text(), card={"cmd_timeout_ms": 60000}, slack_s=slack,
                            stop_at=results[0].signature if stop_at is None else stop_at)
        results.append(FuzzProgram(params).run_iteration(image, IterationPlan(i + 1, 0, 0.0, "snapshot"), run))
    full, stopped = results
    assert full.outcome.value == "hang" and full.title.startswith("hung task"), full
    assert "did not end within" in full.detail
    assert stopped.outcome.value == "hang" and stopped.signature == full.signature, stopped
    assert "the console holds the report being reproduced" in stopped.detail, stopped
    assert stopped.timings["program_s"] < full.timings["program_s"], (stopped.timings, full.timings)

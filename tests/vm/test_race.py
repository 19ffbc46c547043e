"""Race campaigns end to end: negative control, positive control, kill and resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlx5lab.campaign.spec import CampaignSpec

from .test_boot import assert_closed_in_order, qemu_processes_mentioning


def race(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlx5lab", "race", *args],
                          capture_output=True, text=True, timeout=timeout)


def journal(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "journal.jsonl").read_text().splitlines()]


def device_servers_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "mlx5dev" in cmdline and "serve" in cmdline and text in cmdline:
            pids.append(int(proc.name))
    return pids


def test_stock_kernel_reboots_clean(tmp_path: Path) -> None:
    out = tmp_path / "stock"
    res = race("--variant", "stock", "--iterations", "2", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert [e["outcome"] for e in journal(out)] == ["clean", "clean"]
    assert "clean 2  panic 0  hang 0  report 0  infra 0" in res.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_status"] == 0
    for e in journal(out):
        result = json.loads((out / e["dir"] / "result.json").read_text())
        assert result["identity"]["variant"] == "stock"
        assert (out / e["dir"] / "card" / "trace-fn0.jsonl").stat().st_size > 0
        assert not (out / e["dir"] / "vmcore.kdump").exists()


def test_vulnerable_module_panics_with_evidence(tmp_path: Path) -> None:
    out = tmp_path / "vulnerable"
    res = race("--variant", "vulnerable", "--iterations", "2", "--out", str(out))
    assert res.returncode == 1, res.stderr  # a kernel finding
    entries = journal(out)
    assert sum(e["outcome"] == "panic" for e in entries) >= 1, entries
    for e in entries:
        if e["outcome"] != "panic":
            continue
        folder = out / e["dir"]
        oops = (folder / "oops.txt").read_text()
        assert "dma_pool_alloc" in oops or "0xdead000000006b" in oops
        assert "cmd_exec" in oops
        assert "speed_show" in oops
        assert (folder / "vmcore.kdump").stat().st_size > 1_000_000
        assert (folder / "card" / "trace-fn1.jsonl").stat().st_size > 0
        result = json.loads((folder / "result.json").read_text())
        assert result["identity"]["variant_manifest"]["module_sha256"]


def test_killed_campaign_resumes_to_the_same_counts(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "mlx5lab", "race", "--variant", "stock", "--iterations", "3",
                             "--seed", "5", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # wait until iteration 2 is under way
            if (out / "journal.jsonl").exists() and (out / "iter-0002" / "console.log").exists():
                break
            time.sleep(0.2)
        time.sleep(2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "--resume" in err
    assert qemu_processes_mentioning(str(out)) == []
    assert device_servers_mentioning(str(out)) == []
    for run_dir in out.glob("iter-*"):
        assert_closed_in_order(run_dir)
    done_before = journal(out)
    assert 1 <= len(done_before) < 3
    res = race("--resume", str(out))
    assert res.returncode == 0, res.stderr
    entries = journal(out)
    assert [e["iteration"] for e in entries] == [1, 2, 3]
    assert [e["outcome"] for e in entries] == ["clean"] * 3
    spec = CampaignSpec.from_json(json.loads((out / "campaign.json").read_text()))
    assert [e["delay_s"] for e in entries] == [spec.delay(i) for i in (1, 2, 3)]


def test_a_dropped_teardown_command_is_a_hang_with_a_vmcore(tmp_path: Path) -> None:
    """A teardown command the device never completes stalls reboot: the hang path (NMI, dump) runs.

    The card tears down fast (main.c: mlx5_try_fast_unload), so shutdown's first command is TEARDOWN_HCA
    (fw.c: mlx5_cmd_fast_teardown_hca), which waits for its completion for the command timeout."""
    out = tmp_path / "hang"
    res = race("--variant", "stock", "--iterations", "1", "--hang-timeout", "8",
               "--fault", "function=1,opcode=TEARDOWN_HCA,drop=1", "--out", str(out))
    assert res.returncode == 1, res.stderr
    (entry,) = journal(out)
    assert entry["outcome"] == "hang", entry
    folder = out / entry["dir"]
    assert (folder / "vmcore.kdump").stat().st_size > 1_000_000
    trace = (folder / "card" / "trace-fn1.jsonl").read_text()
    assert '"drop": true' in trace or "dropped" in trace

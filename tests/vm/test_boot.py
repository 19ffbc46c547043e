"""A real guest boots, runs commands, and its panics are caught; nothing is left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlx5image.build import GuestImage
from mlx5lab.vm.machine import Machine


def qemu_processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "qemu-system" in cmdline and text in cmdline:
            pids.append(int(proc.name))
    return pids


def test_guest_runs_the_manifest_kernel(machine: Machine, image: GuestImage) -> None:
    manifest = json.loads(image.manifest.read_text())
    res = machine.run("uname -r")
    assert res.status == 0
    assert res.stdout.strip() == manifest["kernel"]["release"]


def test_command_status_is_returned(machine: Machine) -> None:
    res = machine.run("echo out; echo err >&2; exit 3")
    assert (res.status, res.stdout, res.stderr) == (3, "out\n", "err\n")


def test_sysrq_crash_is_detected_with_its_oops(machine: Machine) -> None:
    since = machine.event_index()
    t0 = time.monotonic()
    machine.start_command("echo c > /proc/sysrq-trigger")
    report = machine.wait_panic(timeout=5, since=since)
    assert report is not None, "no GUEST_PANICKED within 5 s"
    assert report.event_time - t0 < 5
    assert "sysrq" in report.oops.lower()
    assert "Kernel panic - not syncing" in report.oops
    assert "Call Trace" in report.oops
    assert machine.alive(), "with panic=pause QEMU must stay up for the dump"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlx5lab", *args]


def test_cli_boot_prints_version_and_leaves_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    res = subprocess.run(_cli("boot", "--keep", str(run_dir), "--run", "cat /proc/version"),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("Linux version ")
    assert qemu_processes_mentioning(str(run_dir)) == []
    assert_closed_in_order(run_dir)


def test_cli_exit_status_is_the_commands(tmp_path: Path) -> None:
    res = subprocess.run(_cli("boot", "--run", "exit 7"), capture_output=True, text=True, timeout=300)
    assert res.returncode == 7, res.stderr


def test_ctrl_c_leaves_no_qemu(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(_cli("boot", "--keep", str(run_dir), "--run", "sleep 120"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while "SSH ready" not in _read(run_dir / "console.log") and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)  # the CLI is now inside `sleep 120`
        assert qemu_processes_mentioning(str(run_dir)), "QEMU should be running before Ctrl-C"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert qemu_processes_mentioning(str(run_dir)) == []
    assert_closed_in_order(run_dir)


def assert_closed_in_order(run_dir: Path) -> None:
    """The orchestrator's close() ran: a child killed by the parent-death signal alone would leave its
    sockets behind."""
    assert (run_dir / "console.log").exists()
    leftovers = [p.name for p in [run_dir / "qmp.sock", *run_dir.glob("card/*.sock")] if p.exists()]
    assert leftovers == []
    assert (run_dir / "card" / "device-server.log").exists()


def _read(p: Path) -> str:
    try:
        return p.read_text(errors="replace").replace("SSH-READY", "SSH ready")
    except OSError:
        return ""

"""mlx5-reader, compiled for and run on the host against fake and host files (no guest needed).

Needs gcc and libc6-dev (build-essential, installed by the Makefile's host-packages step).
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from mlx5image.hosttools import find_tool
from mlx5image.reader import READER_NAME, build_reader

pytestmark = pytest.mark.skipif(find_tool("gcc") is None, reason="gcc is not installed")


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("MLX5LAB_CACHE")
    os.environ["MLX5LAB_CACHE"] = str(cache)
    try:
        return build_reader()
    finally:
        if old is None:
            del os.environ["MLX5LAB_CACHE"]
        else:
            os.environ["MLX5LAB_CACHE"] = old


def run_reader(reader: Path, *args: str, timeout: float = 20) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run([str(reader), *args], capture_output=True, text=True, timeout=timeout)
    summary = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, summary, proc.stderr


def by_path(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in summary["files"]}


def test_build_is_cached_and_copied(reader: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLX5LAB_CACHE", str(reader.parents[2]))
    mtime = reader.stat().st_mtime_ns
    assert build_reader() == reader
    assert reader.stat().st_mtime_ns == mtime  # not recompiled
    copy = build_reader(tmp_path / "bin")
    assert copy == tmp_path / "bin" / READER_NAME
    assert os.access(copy, os.X_OK)
    file_out = subprocess.run(["file", str(copy)], capture_output=True, text=True).stdout
    if file_out:
        assert "statically linked" in file_out


def test_reads_errors_and_open_failures(reader: Path, tmp_path: Path) -> None:
    good = tmp_path / "speed"
    good.write_text("100000\n")
    a_dir = tmp_path / "a-dir"  # opens fine, every pread fails with EISDIR ("other")
    a_dir.mkdir()
    missing = tmp_path / "gone"
    args = ["-d", "0.5", "-t", "3", "-f", str(good), "-f", str(a_dir), "-f", str(missing)]
    lo_speed = Path("/sys/class/net/lo/speed")  # loopback has no link settings: EINVAL on every read
    if lo_speed.exists():
        args += ["-f", str(lo_speed)]

    rc, summary, stderr = run_reader(reader, *args)

    assert rc == 0
    assert summary["threads"] == 3
    files = by_path(summary)
    assert files[str(good)]["reads"] > 0
    assert files[str(good)]["last"] == "100000"
    assert sum(files[str(good)]["errors"].values()) == 0
    assert files[str(a_dir)]["errors"]["other"] > 0
    assert files[str(a_dir)]["last_other"] == "EISDIR"
    assert files[str(missing)] == {**files[str(missing)], "open": False, "open_error": "ENOENT", "reads": 0}
    assert "cannot open" in stderr
    if lo_speed.exists():
        assert files[str(lo_speed)]["errors"]["EINVAL"] > 0
    assert summary["reads"] == sum(f["reads"] for f in summary["files"])
    assert summary["errors"]["other"] >= files[str(a_dir)]["errors"]["other"]
    assert summary["first_error_s"] >= 0


def test_permission_denied_is_reported(reader: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root bypasses mode bits, but kernfs refuses to open a write-only attribute for reading
        candidates = sorted(glob.glob("/sys/bus/*/drivers_probe"))
        if not candidates:
            pytest.skip("running as root and no write-only sysfs attribute to try")
        denied = Path(candidates[0])
    else:
        denied = tmp_path / "secret"
        denied.write_text("1\n")
        denied.chmod(0)
    good = tmp_path / "ok"
    good.write_text("25000\n")
    rc, summary, _ = run_reader(reader, "-d", "0.2", "-f", str(denied), "-f", str(good))
    assert rc == 0
    files = by_path(summary)
    assert files[str(denied)]["open"] is False
    assert files[str(denied)]["open_error"] in ("EACCES", "EPERM")
    assert files[str(good)]["reads"] > 0


def test_file_that_disappears_while_open(reader: Path) -> None:
    """/proc/<pid>/stat of a process that exits: the kept-open descriptor starts failing (ESRCH)."""
    child = subprocess.Popen(["sleep", "30"])
    proc = subprocess.Popen([str(reader), "-d", "1.5", "-t", "2", "-f", f"/proc/{child.pid}/stat"],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(0.4)
    child.kill()
    child.wait()
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    (entry,) = json.loads(out)["files"]
    assert entry["reads"] > 0
    assert entry["errors"]["other"] > 0
    assert entry["last_other"] == "ESRCH"


def _fake_netdir(root: Path) -> Path:
    """/sys/class/net lookalike: eth1, eth2 on mlx5_core (eth2 without duplex), eth0 on virtio_net."""
    drivers = root / "bus" / "drivers"
    for drv in ("mlx5_core", "virtio_net"):
        (drivers / drv).mkdir(parents=True)
    net = root / "net"
    for name, drv, speed in (("eth0", "virtio_net", "-1"), ("eth1", "mlx5_core", "100000"),
                             ("eth2", "mlx5_core", "25000")):
        dev = net / name / "device"
        dev.mkdir(parents=True)
        (dev / "driver").symlink_to(drivers / drv)
        (net / name / "speed").write_text(speed + "\n")
        if name != "eth2":
            (net / name / "duplex").write_text("full\n")
    return net


def test_discovers_mlx5_ports(reader: Path, tmp_path: Path) -> None:
    net = _fake_netdir(tmp_path)
    rc, summary, stderr = run_reader(reader, "-n", str(net), "-a", "speed,duplex", "-d", "0.3")
    assert rc == 0
    files = by_path(summary)
    assert sorted(files) == sorted(str(net / i / a) for i in ("eth1", "eth2") for a in ("speed", "duplex"))
    assert files[str(net / "eth1" / "speed")]["last"] == "100000"
    assert files[str(net / "eth2" / "speed")]["last"] == "25000"
    assert files[str(net / "eth1" / "duplex")]["last"] == "full"
    assert files[str(net / "eth2" / "duplex")]["open_error"] == "ENOENT"
    assert summary["opened"] == 3


def test_interface_option_and_signal(reader: Path, tmp_path: Path) -> None:
    net = _fake_netdir(tmp_path)
    proc = subprocess.Popen([str(reader), "-n", str(net), "-i", "eth0", "-v"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.3)  # long enough for one progress line
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    summary = json.loads(out)
    assert [f["path"] for f in summary["files"]] == [str(net / "eth0" / "speed")]
    assert summary["reads"] > 0 and summary["files"][0]["last"] == "-1"
    progress = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert progress and progress[0]["reads"] > 0


def test_exit_codes(reader: Path, tmp_path: Path) -> None:
    assert run_reader(reader, "-x")[0] == 2
    assert run_reader(reader, "-t", "0")[0] == 2
    assert run_reader(reader, "-a", "../speed")[0] == 2
    assert run_reader(reader, "extra-arg")[0] == 2
    empty = tmp_path / "empty-net"
    empty.mkdir()
    rc, summary, stderr = run_reader(reader, "-n", str(empty), "-d", "0.1")
    assert rc == 3 and summary["files"] == [] and "no mlx5_core interface" in stderr
    rc, summary, _ = run_reader(reader, "-f", str(tmp_path / "nope"), "-d", "0.1")
    assert rc == 3 and summary["opened"] == 0

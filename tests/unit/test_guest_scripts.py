"""The guest's bash scripts (guest-images/reader/mlx5lab-read, mlx5lab-stack), run on the host: syntax,
usage errors, the JSON summary on the loopback device, and their place in the image and its fingerprint.

Nothing here touches a network device of the host: the reads are of /sys/class/net/lo, and mlx5lab-stack
is only given bad usage.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from mlx5image import build, rootfs
from mlx5image.keys import Keys

READER = Path(rootfs.__file__).resolve().parent.parent / "reader"
READ = READER / "mlx5lab-read"
STACK = READER / "mlx5lab-stack"
EXEC = READER / "mlx5lab-exec"
NET = READER / "mlx5lab-net"


def bash(script: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=timeout)


def kinds() -> list[str]:
    """The kinds mlx5lab-read offers, from its usage message."""
    m = re.search(r"^KIND: (.*)$", bash(READ, "nope").stderr, re.MULTILINE)
    assert m is not None
    return m.group(1).split()


@pytest.mark.parametrize("script", [READ, STACK], ids=lambda p: p.name)
def test_scripts_parse(script: Path) -> None:
    res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("args", [(), ("nope",), ("speed", "-t", "0"), ("speed", "-t", "x"), ("speed", "-d", "1s"),
                                  ("speed", "-d", "1", "-s", "/tmp/x"), ("speed", "-z"), ("speed", "-i"),
                                  ("speed", "extra")])
def test_reader_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    res = bash(READ, *args)
    assert res.returncode == 2, res
    assert res.stdout == "" and res.stderr.startswith("usage: mlx5lab-read KIND")


@pytest.mark.parametrize("args", [(), ("bond",), ("bond", "sideways"), ("team", "up"), ("vlan", "up", "more")])
def test_stack_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    res = bash(STACK, *args)
    assert res.returncode == 2 and res.stderr.startswith("usage: mlx5lab-stack"), res


def test_every_kind_is_documented_in_the_header() -> None:
    header = READ.read_text().split("\nset -u\n")[0]
    documented = re.findall(r"^# ([a-z][a-z0-9-]+) {2,}", header, re.MULTILINE)
    assert documented == kinds()
    assert len(kinds()) == 17


def test_reader_counts_reads_of_the_loopback_device_as_json() -> None:
    # carrier and operstate reach no driver: on lo they read like on any up port
    res = bash(READ, "operstate", "-t", "3", "-d", "0.3", "-i", "lo")
    assert res.returncode == 0, res
    summary = json.loads(res.stdout)
    assert summary.keys() == {"reader", "threads", "ifaces", "ok", "errors", "first_error", "duration_s"}
    assert (summary["reader"], summary["threads"], summary["ifaces"]) == ("operstate", 3, ["lo"])
    assert summary["ok"] > 0 and summary["errors"] == 0 and summary["first_error"] == ""
    assert 0.3 <= summary["duration_s"] < 5


def test_reader_counts_a_missing_interface_as_errors() -> None:
    res = bash(READ, "carrier", "-t", "1", "-d", "0.3", "-i", "lo,nosuch0")
    summary = json.loads(res.stdout)
    assert res.returncode == 0 and summary["ok"] > 0 and summary["errors"] == summary["ok"], summary
    assert summary["first_error"] == "nosuch0 carrier: No such file or directory"


def test_reader_stops_on_the_stop_file(tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    proc = subprocess.Popen(["bash", str(READ), "carrier", "-s", str(stop), "-i", "lo"], stdout=subprocess.PIPE,
                            text=True)
    time.sleep(0.5)
    assert proc.poll() is None  # no stop file, no time limit: still reading
    stop.touch()
    t0 = time.monotonic()
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and time.monotonic() - t0 < 2.0
    assert json.loads(out)["ok"] > 0


def test_reader_without_a_target_exits_3() -> None:
    res = bash(READ, "devlink-info", "-d", "0.1", "-i", "nosuch0")  # devlink needs the PCI function
    assert res.returncode == 3 and res.stdout == "" and "nosuch0 has no PCI device" in res.stderr, res


def test_scripts_are_in_the_image_and_its_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = rootfs.guest_scripts()
    assert scripts == {"mlx5lab-read": READ.read_bytes(), "mlx5lab-stack": STACK.read_bytes(),
                       "mlx5lab-exec": EXEC.read_bytes(), "mlx5lab-net": NET.read_bytes()}
    keys = Keys(Path("/nonexistent"), "ssh-ed25519 AAAA client", Path("/nonexistent"), "ssh-ed25519 AAAA host")
    before = build.builder_fingerprint(keys)
    monkeypatch.setattr(build, "guest_scripts", lambda: {**scripts, "mlx5lab-read": scripts["mlx5lab-read"] + b"#"})
    assert build.builder_fingerprint(keys) != before


def test_executor_runs_ops_in_order_and_records_them(tmp_path: Path) -> None:
    """mlx5lab-exec on the host: fg ops finish before the next starts, bg ops overlap, dev ops are marked."""
    script = tmp_path / "prog.sh"
    script.write_text("op 0 bg 'sleep 0.3'\nop 1 fg 'exit 3'\ndev 2\npause 0.05\nwaitall\n")
    res = subprocess.run(["bash", str(EXEC), str(script)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res
    records = {r["op"]: r for r in map(json.loads, res.stdout.splitlines())}
    assert sorted(records) == [0, 1, 2]
    assert records[1]["rc"] == 3 and records[1]["mode"] == "fg" and records[2]["mode"] == "dev"
    assert records[0]["end"] >= records[1]["end"]  # the background sleep outlived the foreground op
    bad = subprocess.run(["bash", str(EXEC), str(tmp_path / "missing")], capture_output=True, text=True)
    assert bad.returncode == 2


def test_executor_helpers_name_the_card_functions_inside_an_op(tmp_path: Path) -> None:
    """bdf and functions_of work in an operation's own bash (an array cannot be exported to it)."""
    pci = tmp_path / "pci"
    for bdf, vendor in (("0000:00:03.0", "0x1af4"), ("0000:01:00.0", "0x15b3"), ("0000:01:00.1", "0x15b3")):
        (pci / bdf).mkdir(parents=True)
        (pci / bdf / "vendor").write_text(vendor + "\n")
    script = tmp_path / "prog.sh"
    script.write_text("op 0 fg 'echo \"{\\\"b0\\\": \\\"$(bdf 0)\\\", \\\"b1\\\": \\\"$(bdf 1)\\\", "
                      "\\\"both\\\": \\\"$(functions_of both | tr \"\\n\" \" \")\\\"}\"'\nwaitall\n")
    res = subprocess.run(["bash", str(EXEC), str(script)], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "MLX5LAB_PCI_DEVICES": str(pci)})
    assert res.returncode == 0, res
    (record,) = map(json.loads, res.stdout.splitlines())
    assert record["out"] == {"b0": "0000:01:00.0", "b1": "0000:01:00.1", "both": "0 1 "}, record


def test_net_usage_errors_exit_2_and_no_ports_exit_3() -> None:
    for args in ((), ("nope",), ("ping",), ("ping", "x"), ("send", "-1")):
        res = bash(NET, *args)
        assert res.returncode == 2 and "usage: mlx5lab-net" in res.stderr, (args, res)
    res = bash(NET, "up")  # this host has no mlx5 port: nothing is changed
    assert res.returncode == 3 and "fewer than two mlx5 ports" in res.stderr, res

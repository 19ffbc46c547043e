"""``mlx5lab shell`` driven through a real pty: the guest's prompt, a command and its output, the window
size, the control channel from a second terminal, Ctrl-C to the guest's foreground job, job control, exit.

Two guest boots: a session that ends with `exit`, and one that ends with a panic. pexpect gives mlx5lab a
pty as its terminal, as a user's terminal emulator would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import termios
import time
from pathlib import Path

import pexpect

PROMPT = "mlx5lab:~# "


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that name ``text`` (QEMU and the device server name the run folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and "pytest" not in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


def test_shell_session_through_a_pty() -> None:
    child = pexpect.spawn(sys.executable, ["-m", "mlx5lab", "shell"], env=dict(os.environ), encoding="utf-8",
                          codec_errors="replace", timeout=240, dimensions=(40, 132))
    log = []
    child.logfile_read = _Collect(log)
    try:
        child.expect(r"run folder: (\S+)")
        run = Path(child.match.group(1))
        child.expect(r"card control from a second terminal: (.+?) \(or ")
        control = child.match.group(1)
        assert processes_mentioning(str(run)), "QEMU and the device server run in the run folder"
        child.expect_exact(PROMPT)

        child.sendline("cat /sys/class/net/eth1/speed")
        child.expect(r"\r\n(\d+)\r\n")
        assert child.match.group(1) == "100000"
        child.expect_exact(PROMPT)

        child.sendline("tty; stty size")  # a real pty, of the host terminal's size, following its changes
        child.expect(r"(/dev/pts/\d+)\r\n40 132\r\n")
        child.expect_exact(PROMPT)
        child.setwinsize(50, 100)  # the kernel sends mlx5lab SIGWINCH
        time.sleep(0.5)
        child.sendline("stty size")
        child.expect(r"\r\n(\d+ \d+)\r\n")
        assert child.match.group(1) == "50 100"
        child.expect_exact(PROMPT)

        # the printed control command works from a second terminal, on this card
        status = subprocess.run(control, shell=True, capture_output=True, text=True, timeout=30)
        assert status.returncode == 0, status.stderr
        assert '"function": "fn0"' in status.stdout
        setter = control.replace(" status", " set_speed function=0 mbps=40000")
        assert subprocess.run(setter, shell=True, capture_output=True, text=True, timeout=30).returncode == 0
        child.sendline("cat /sys/class/net/eth1/speed")
        child.expect(r"\r\n(\d+)\r\n")
        assert child.match.group(1) == "40000"
        child.expect_exact(PROMPT)

        # Ctrl-C goes to the guest's foreground job, not to mlx5lab
        child.sendline("sleep 100")
        time.sleep(2)
        t0 = time.monotonic()
        child.sendcontrol("c")
        child.expect_exact(PROMPT, timeout=20)
        assert time.monotonic() - t0 < 20
        child.sendline("echo alive-$((6 * 7))")
        child.expect_exact("alive-42")
        child.expect_exact(PROMPT)

        # job control: Ctrl-Z stops the foreground job, the shell lists it, kills it
        child.sendline("sleep 200")
        time.sleep(2)
        child.sendcontrol("z")
        child.expect(r"Stopped\s+sleep 200")
        child.expect_exact(PROMPT)
        child.sendline("kill -9 %1; wait; jobs; echo jobs-done")
        child.expect_exact("jobs-done\r\n")
        child.expect_exact(PROMPT)

        child.sendline("exit")
        child.expect(r"guest shell exited with status (\d+)")
        assert child.match.group(1) == "0"
        child.expect(pexpect.EOF, timeout=120)
        assert termios.tcgetattr(child.child_fd)[3] & termios.ECHO, "the terminal is out of raw mode"
        child.close()
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, "".join(log)[-3000:]
    assert processes_mentioning(str(run)) == []
    assert not run.exists(), "the temporary run folder is removed after a clean exit"


def test_shell_reports_a_guest_panic_with_its_oops_and_vmcore(tmp_path: Path) -> None:
    run = tmp_path / "run"
    child = pexpect.spawn(sys.executable, ["-m", "mlx5lab", "shell", "--keep", str(run), "--speeds", "100000"],
                          env=dict(os.environ), encoding="utf-8", codec_errors="replace", timeout=240)
    log: list[str] = []
    child.logfile_read = _Collect(log)
    try:
        child.expect_exact(PROMPT)
        child.sendline("echo c > /proc/sysrq-trigger")
        child.expect(r"the guest panicked: (.+?)\r\n", timeout=60)
        assert child.match.group(1).startswith("deliberate crash from sysrq")
        child.expect_exact("Kernel panic - not syncing")  # the oops itself is printed
        child.expect(r"vmcore: (\S+) ", timeout=180)
        vmcore = Path(child.match.group(1))
        child.expect(pexpect.EOF, timeout=120)
        assert termios.tcgetattr(child.child_fd)[3] & termios.ECHO, "the terminal is out of raw mode"
        child.close()
    finally:
        child.close(force=True)
    assert child.exitstatus == 1, "".join(log)[-3000:]
    assert vmcore == run / "vmcore.kdump" and vmcore.stat().st_size > 1 << 20
    assert "sysrq" in (run / "oops.txt").read_text()
    assert processes_mentioning(str(run)) == []
    assert [p.name for p in [run / "qmp.sock", *run.glob("card/*.sock")] if p.exists()] == []


class _Collect:
    """pexpect's logfile: keeps what mlx5lab printed, for the failure message."""

    def __init__(self, into: list[str]) -> None:
        self.into = into

    def write(self, data: str) -> None:
        self.into.append(data)

    def flush(self) -> None:
        pass

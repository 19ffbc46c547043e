"""The raw-mode relay of ``mlx5lab shell`` against a local pty pair and a peer on a socket pair: no guest.

The "user" types into the pty's master side; the relay runs in this (main) thread on the slave side, as
mlx5lab does on the user's terminal; the "guest" is a thread on the other end of a socket pair.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import struct
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pexpect
import pytest

from mlx5lab.vm.terminal import RawMode, relay, terminal_size

REPO = Path(__file__).resolve().parents[2]


class FakeChannel:
    """What the relay uses of a paramiko Channel, over a socket pair; ``guest`` is the far end."""

    def __init__(self) -> None:
        self.ours, self.guest = socket.socketpair()
        self.sizes: list[tuple[int, int]] = []
        self.status: int | None = None

    def fileno(self) -> int:
        return self.ours.fileno()

    def recv(self, nbytes: int) -> bytes:
        return self.ours.recv(nbytes)

    def recv_ready(self) -> bool:
        return False

    def sendall(self, data: bytes) -> None:
        self.ours.sendall(data)

    def resize_pty(self, width: int = 80, height: int = 24, width_pixels: int = 0, height_pixels: int = 0) -> None:
        self.sizes.append((width, height))

    def exit_status_ready(self) -> bool:
        return self.status is not None

    def recv_exit_status(self) -> int:
        assert self.status is not None
        return self.status

    def exit(self, status: int) -> None:
        """The guest's program ends: its status, then the end of the channel's data."""
        self.status = status
        self.guest.close()


def read_until(fd: int, want: bytes, timeout: float = 5.0) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while want not in got:
        assert time.monotonic() < deadline, f"no {want!r} in {got!r}"
        os.set_blocking(fd, False)
        try:
            got += os.read(fd, 1024)
        except BlockingIOError:
            time.sleep(0.01)
    return got


def in_thread(fn: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # reported by the test after the relay returns
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, errors


@pytest.fixture
def pty_pair() -> tuple[int, int]:
    master, slave = os.openpty()
    yield master, slave
    os.close(master)
    os.close(slave)


def test_keys_reach_the_peer_raw_and_its_output_reaches_the_terminal(pty_pair: tuple[int, int]) -> None:
    master, slave = pty_pair
    chan = FakeChannel()
    before = termios.tcgetattr(slave)
    seen: dict[str, object] = {}

    def guest() -> None:
        got = b""
        while b"\x04" not in got:  # Ctrl-D ends the guest's "shell"
            data = chan.guest.recv(1024)
            got += data
            chan.guest.sendall(data.upper())
        seen["guest got"] = got
        chan.exit(3)

    def user() -> None:
        seen["lflag"] = termios.tcgetattr(slave)[3]
        os.write(master, b"hello")  # no newline: raw mode passes each key at once
        seen["echo"] = read_until(master, b"HELLO")
        os.write(master, b"\x03\x1a\x04")  # Ctrl-C, Ctrl-Z, Ctrl-D: bytes for the guest, not signals

    with RawMode(slave):
        threads = [in_thread(guest), in_thread(user)]
        end = relay(chan, slave, slave)
    for t, errors in threads:
        t.join(5)
        assert not errors, errors
    assert (end.reason, end.status) == ("exited", 3)
    assert seen["guest got"] == b"hello\x03\x1a\x04"
    assert seen["echo"] == b"HELLO"
    assert not seen["lflag"] & (termios.ECHO | termios.ICANON | termios.ISIG)  # type: ignore[operator]
    assert termios.tcgetattr(slave) == before


def test_a_window_change_is_passed_to_the_peer(pty_pair: tuple[int, int]) -> None:
    master, slave = pty_pair
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    chan = FakeChannel()

    previous = signal.getsignal(signal.SIGWINCH)

    def user() -> None:
        while signal.getsignal(signal.SIGWINCH) == previous:  # the relay's handler is not in place yet
            time.sleep(0.01)
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
        os.kill(os.getpid(), signal.SIGWINCH)  # what the kernel sends the terminal's foreground group
        deadline = time.monotonic() + 5
        while not chan.sizes and time.monotonic() < deadline:
            time.sleep(0.01)
        chan.exit(0)

    t, errors = in_thread(user)
    end = relay(chan, slave, slave)
    t.join(5)
    assert not errors, errors
    assert end.reason == "exited"
    assert chan.sizes == [(101, 33)]
    assert signal.getsignal(signal.SIGWINCH) == previous


def test_watch_ends_the_relay_with_what_it_saw(pty_pair: tuple[int, int]) -> None:
    _, slave = pty_pair
    chan = FakeChannel()
    calls = []

    def watch() -> str | None:
        calls.append(time.monotonic())
        return "panic" if len(calls) == 3 else None

    end = relay(chan, slave, slave, watch=watch, watch_interval=0.05)
    assert (end.reason, end.stopped_by) == ("stopped", "panic")
    assert calls[-1] - calls[0] >= 0.09


def test_a_channel_closed_without_status_reports_minus_one(pty_pair: tuple[int, int]) -> None:
    _, slave = pty_pair
    chan = FakeChannel()
    chan.guest.close()
    end = relay(chan, slave, slave, exit_grace=0.1)
    assert (end.reason, end.status) == ("exited", -1)


def test_a_hung_up_terminal_ends_the_relay() -> None:
    master, slave = os.openpty()
    chan = FakeChannel()
    os.close(master)  # reads of the slave now fail with EIO
    try:
        end = relay(chan, slave, slave)
    finally:
        os.close(slave)
    assert end.reason == "input-closed"


def test_raw_mode_is_restored_when_the_block_raises(pty_pair: tuple[int, int]) -> None:
    _, slave = pty_pair
    before = termios.tcgetattr(slave)
    with pytest.raises(KeyboardInterrupt), RawMode(slave):
        assert termios.tcgetattr(slave) != before
        raise KeyboardInterrupt
    assert termios.tcgetattr(slave) == before


def test_terminal_size(pty_pair: tuple[int, int]) -> None:
    master, slave = pty_pair
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    assert terminal_size(slave) == (80, 24)  # a pty nobody sized
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 132, 0, 0))
    assert terminal_size(slave) == (132, 50)


SIGTERM_CHILD = """
import signal, socket, sys
from mlx5lab.cli import _terminate
from mlx5lab.vm.terminal import RawMode, relay

class Peer:  # a guest that never answers
    def __init__(self): self.a, self.b = socket.socketpair()
    def fileno(self): return self.a.fileno()
    def recv(self, n): return self.a.recv(n)
    def recv_ready(self): return False
    def sendall(self, d): self.a.sendall(d)
    def resize_pty(self, **kw): pass
    def exit_status_ready(self): return False
    def recv_exit_status(self): return -1

signal.signal(signal.SIGTERM, _terminate)
try:
    with RawMode(0):
        print("attached", flush=True)
        relay(Peer(), 0, 1)
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_while_attached_restores_the_terminal(signum: signal.Signals) -> None:
    """mlx5lab's handlers (cli._terminate) unwind the relay; the terminal leaves raw mode on the way."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(REPO / d) for d in
                                                    ("orchestrator", "qemu-device", "guest-images")))
    code = SIGTERM_CHILD.replace("signal.SIGTERM, _terminate", f"signal.{signum.name}, _terminate")
    child = pexpect.spawn(sys.executable, ["-c", code], env=env, timeout=30)
    try:
        child.expect("attached")
        assert not termios.tcgetattr(child.child_fd)[3] & termios.ECHO  # raw while attached
        child.kill(signum)
        deadline = time.monotonic() + 10
        while child.isalive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert termios.tcgetattr(child.child_fd)[3] & termios.ECHO  # cooked again, before it exited
        child.close()
    finally:
        child.close(force=True)
    assert child.exitstatus == 130

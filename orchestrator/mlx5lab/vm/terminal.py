"""The host side of an interactive terminal on the guest: raw mode, the byte relay, the window size.

Nothing here knows about guests: the relay moves bytes between a local terminal and a peer with a
pseudo-terminal at the other end (a paramiko Channel with a pty, in practice), so it can be tested against a
local pty pair.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import signal
import struct
import termios
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Generic, Protocol, TypeVar

log = logging.getLogger("mlx5lab.terminal")

T = TypeVar("T")


class PtyPeer(Protocol):
    """What the relay needs of the other end; ``paramiko.Channel`` is one."""

    def fileno(self) -> int: ...
    def recv(self, nbytes: int) -> bytes: ...
    def recv_ready(self) -> bool: ...
    def sendall(self, data: bytes) -> None: ...
    def resize_pty(self, width: int = 80, height: int = 24, width_pixels: int = 0,
                   height_pixels: int = 0) -> None: ...
    def exit_status_ready(self) -> bool: ...
    def recv_exit_status(self) -> int: ...


def terminal_size(fd: int) -> tuple[int, int]:
    """(columns, rows) of the terminal on ``fd``; (80, 24) when it reports 0 x 0 (a fresh pty does)."""
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return (cols or 80, rows or 24)


class RawMode:
    """The terminal on ``fd`` in raw mode (tty.setraw: no echo, no line editing, no signals from Ctrl-C or
    Ctrl-Z, no output processing) until the block ends, however it ends.

    The saved attributes are restored with TCSADRAIN (termios(3)): output already written still reaches
    the terminal. A terminal that has gone away (hang-up) cannot be restored; that is logged, not raised,
    so the caller's clean-up still runs.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.saved: list[object] | None = None

    def __enter__(self) -> RawMode:
        self.saved = termios.tcgetattr(self.fd)
        tty.setraw(self.fd, termios.TCSANOW)
        return self

    def restore(self) -> None:
        if self.saved is None:
            return
        try:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
        except (termios.error, OSError) as exc:
            log.debug("terminal attributes not restored: %r", exc)
        self.saved = None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.restore()


@dataclass(frozen=True)
class RelayEnd(Generic[T]):
    """Why the relay stopped: ``exited`` (the peer's program ended: ``status``, -1 when the channel closed
    without one), ``input-closed`` (the local terminal's end of file), or ``stopped`` (``watch`` returned
    ``stopped_by``)."""

    reason: str
    status: int | None = None
    stopped_by: T | None = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[n:]


class _WakeOnWinch:
    """SIGWINCH sets a flag and wakes the relay's select through a pipe (the handler runs in the main
    thread between bytecodes; select(2) returns because the pipe became readable)."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self.pending = False
        self._previous: object = None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.pending = True
        with contextlib.suppress(BlockingIOError):  # a wake-up is already pending
            os.write(self.write_fd, b"\0")

    def __enter__(self) -> _WakeOnWinch:
        self._previous = signal.signal(signal.SIGWINCH, self._handler)
        return self

    def take(self) -> bool:
        """True once per burst of SIGWINCHs."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self.read_fd, 512):
                pass
        pending, self.pending = self.pending, False
        return pending

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGWINCH, self._previous)  # type: ignore[arg-type]
        os.close(self.read_fd)
        os.close(self.write_fd)


def relay(peer: PtyPeer, fd_in: int, fd_out: int, *, watch: Callable[[], T | None] = lambda: None,
          watch_interval: float = 0.25, exit_grace: float = 2.0) -> RelayEnd[T]:
    """Copy ``fd_in`` to ``peer`` and ``peer`` to ``fd_out`` until the peer's program exits, ``fd_in``
    reaches end of file, or ``watch()`` (called every ``watch_interval`` seconds) returns something.

    The peer's pty follows the size of the terminal on ``fd_in``: on SIGWINCH its new size is sent with
    ``resize_pty`` (RFC 4254 section 6.7, "window-change"). Must run in the main thread (signal handlers).
    """
    next_watch = time.monotonic()
    with _WakeOnWinch() as winch:
        while True:
            now = time.monotonic()
            if now >= next_watch:
                seen = watch()
                if seen is not None:
                    return RelayEnd("stopped", stopped_by=seen)
                next_watch = now + watch_interval
            readable, _, _ = select.select([fd_in, peer, winch.read_fd], [], [],
                                           max(0.0, next_watch - time.monotonic()))
            if winch.read_fd in readable and winch.take():
                cols, rows = terminal_size(fd_in)
                peer.resize_pty(width=cols, height=rows)
            if peer in readable:
                data = peer.recv(65536)
                if data:
                    _write_all(fd_out, data)
                else:  # end of the channel's data: the program ended (its status follows, or not at all)
                    deadline = time.monotonic() + exit_grace
                    while not peer.exit_status_ready() and time.monotonic() < deadline:
                        time.sleep(0.01)
                    return RelayEnd("exited", status=peer.recv_exit_status() if peer.exit_status_ready()
                                    else -1)
            if fd_in in readable:
                try:
                    data = os.read(fd_in, 4096)
                except OSError:  # EIO: the terminal hung up
                    data = b""
                if not data:
                    return RelayEnd("input-closed")
                peer.sendall(data)

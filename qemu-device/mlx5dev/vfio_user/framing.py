"""Reading whole vfio-user messages (with their SCM_RIGHTS fds) from a non-blocking stream socket,
and writing them back.

Reads never cross a message boundary: we ask the kernel for exactly the bytes still missing from
the current message. A UNIX stream socket may otherwise hand us the tail of one message glued to the
head of the next together with the next one's fds, and we could not tell whom the fds belong to.

Memory is bounded: a message whose size exceeds ``max_payload`` is drained in small chunks and
surfaced as :class:`Oversize` (the stream stays in sync, the caller answers E2BIG).
"""

from __future__ import annotations

import array
import contextlib
import os
import select
import socket
import threading
import time
from dataclasses import dataclass, field

from .protocol import HEADER, HEADER_SIZE, MAX_MSG_FDS, MAX_PAYLOAD, Header

_FD_SIZE = array.array("i").itemsize
_ANC_BUFSIZE = socket.CMSG_SPACE(MAX_MSG_FDS * _FD_SIZE)
_DRAIN_CHUNK = 64 * 1024


class ConnectionClosed(Exception):
    """The peer closed the stream (cleanly between messages, or in the middle of one)."""


class StreamCorrupt(Exception):
    """The byte stream cannot be resynchronised (e.g. a header announcing fewer than 16 bytes)."""


def close_fds(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


@dataclass
class Message:
    """A complete message. The receiver owns ``fds`` and must close or keep each of them."""

    header: Header
    payload: bytes
    fds: list[int] = field(default_factory=list)
    #: More fds were sent than fit (MSG_CTRUNC); the kernel dropped the excess.
    fds_truncated: bool = False


@dataclass
class Oversize:
    """A message larger than allowed; its payload was discarded, its fds are to be closed."""

    header: Header
    fds: list[int] = field(default_factory=list)


class MessageReader:
    """Incremental message parser for one non-blocking socket (used by the socket-loop thread only)."""

    def __init__(self, sock: socket.socket, max_payload: int = MAX_PAYLOAD) -> None:
        self._sock = sock
        self._max_payload = max_payload
        self._reset()

    def _reset(self) -> None:
        self._hdr_buf = bytearray(HEADER_SIZE)
        self._have = 0
        self._header: Header | None = None
        self._body: bytearray | None = None
        self._drain_left = 0
        self._fds: list[int] = []
        self._truncated = False

    @property
    def mid_message(self) -> bool:
        return self._have > 0 or self._header is not None

    def discard(self) -> None:
        """Close fds of a partly received message (on disconnect)."""
        close_fds(self._fds)
        self._reset()

    def poll(self) -> Message | Oversize | None:
        """Read what is available; return a complete message, or None if more bytes are needed.

        Raises :class:`ConnectionClosed` on EOF and :class:`StreamCorrupt` on an unparseable header.
        """
        while True:
            if self._header is None:
                view = memoryview(self._hdr_buf)[self._have :]
            elif self._body is not None:
                view = memoryview(self._body)[self._have :]
            else:
                view = memoryview(bytearray(min(self._drain_left, _DRAIN_CHUNK)))
            if len(view):
                n = self._recv_into(view)
                if n is None:
                    return None
                if n == 0:
                    where = "in the middle of a message" if self.mid_message else "between messages"
                    self.discard()
                    raise ConnectionClosed(f"peer closed the connection {where}")
            else:
                n = 0
            if self._header is None:
                self._have += n
                if self._have < HEADER_SIZE:
                    continue
                header = HEADER.unpack(self._hdr_buf)
                if header.size < HEADER_SIZE:
                    self.discard()
                    raise StreamCorrupt(f"header announces {header.size} bytes, less than a header")
                self._header = header
                self._have = 0
                payload_len = header.size - HEADER_SIZE
                if payload_len > self._max_payload:
                    self._drain_left = payload_len
                else:
                    self._body = bytearray(payload_len)
            elif self._body is not None:
                self._have += n
            else:
                self._drain_left -= n
            if self._body is not None and self._have == len(self._body):
                msg = Message(self._header, bytes(self._body), self._fds, self._truncated)
                self._fds = []
                self._reset()
                return msg
            if self._body is None and self._drain_left == 0:
                over = Oversize(self._header, self._fds)
                self._fds = []
                self._reset()
                return over

    def _recv_into(self, view: memoryview) -> int | None:
        try:
            # CLOEXEC: guest memfds and eventfds must not leak into processes we spawn (e.g. QEMU).
            n, ancdata, flags, _addr = self._sock.recvmsg_into([view], _ANC_BUFSIZE, socket.MSG_CMSG_CLOEXEC)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:  # reset, or the socket was shut down / closed under us
            self.discard()
            raise ConnectionClosed(f"receive failed: {exc}") from exc
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(data[: len(data) - (len(data) % _FD_SIZE)])
                self._fds.extend(fds)
        if flags & socket.MSG_CTRUNC:
            self._truncated = True
        return n


class MessageWriter:
    """Thread-safe whole-message sends on a non-blocking socket, with a deadline per message."""

    def __init__(self, sock: socket.socket, timeout: float = 5.0) -> None:
        self._sock = sock
        self._timeout = timeout
        self._lock = threading.Lock()
        self._broken = False

    def send(self, data: bytes) -> None:
        """Send all of ``data``; :class:`ConnectionClosed` if the peer is gone or stalls past the deadline."""
        with self._lock:
            if self._broken:
                raise ConnectionClosed("connection already failed")
            view = memoryview(data)
            deadline = time.monotonic() + self._timeout
            try:
                while view:
                    try:
                        sent = self._sock.send(view)
                        view = view[sent:]
                        continue
                    except (BlockingIOError, InterruptedError):
                        pass
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise ConnectionClosed(f"peer did not read for {self._timeout} s")
                    select.select([], [self._sock], [], remaining)
            except (OSError, ValueError) as exc:  # ValueError: select() on a closed socket
                self._broken = True
                raise ConnectionClosed(f"send failed: {exc}") from exc
            except ConnectionClosed:
                self._broken = True
                raise

    def close_when_idle(self) -> None:
        """Wait for an in-flight send (from another thread) to end, then mark the writer unusable."""
        with self._lock:
            self._broken = True

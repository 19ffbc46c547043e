"""A synchronous face on qemu.qmp's asyncio client.

qemu.qmp is asyncio-only; the orchestrator is synchronous (SSH, subprocesses, files). The client runs on
its own event-loop thread, and every event is timestamped on arrival so panic and reset detection measure
when QEMU raised them, not when someone looked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient

log = logging.getLogger("mlx5lab.qmp")


@dataclass
class QmpEvent:
    name: str
    data: dict[str, Any]
    received: float  # time.monotonic() on arrival


@dataclass
class EventLog:
    """Every QMP event seen, in order, with a condition to wait on."""

    events: list[QmpEvent] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    closed: bool = False

    def add(self, ev: QmpEvent) -> None:
        with self.cond:
            self.events.append(ev)
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait_for(self, names: set[str], timeout: float, start: int = 0) -> QmpEvent | None:
        """First event named in ``names`` at index >= ``start``; None on timeout or closed log."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for ev in self.events[start:]:
                    if ev.name in names:
                        return ev
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    return None
                self.cond.wait(left)

    def count(self, name: str) -> int:
        with self.cond:
            return sum(1 for ev in self.events if ev.name == name)


class QmpConnection:
    """One QMP session on a UNIX socket, served from a private event-loop thread."""

    def __init__(self, socket_path: Path, name: str = "qmp") -> None:
        self.socket_path = socket_path
        self.events = EventLog()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"{name}-loop", daemon=True)
        self._thread.start()
        self._client = QMPClient(name)
        self._listener_task: asyncio.Task[None] | None = None

    def _call(self, coro: Any, timeout: float) -> Any:
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            raise

    def connect(self, timeout: float = 10.0, alive: Callable[[], bool] = lambda: True) -> None:
        """Connect, retrying while QEMU has not created the socket yet; give up at once if ``alive()``
        says QEMU is gone."""
        deadline = time.monotonic() + timeout
        while not self.socket_path.exists():  # qemu.qmp logs every refused attempt: wait for the socket
            if time.monotonic() > deadline or not alive():
                raise ConnectionError(f"QEMU did not create its QMP socket {self.socket_path}")
            time.sleep(0.01)
        # The socket exists from QEMU's bind(), before its listen(): a connect in between is refused, and
        # qemu.qmp logs each refusal at ERROR. A plain connect that is closed at once waits for the listen
        # quietly (QEMU takes the next client when this one hangs up); then qemu.qmp connects once.
        while True:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(str(self.socket_path))
                    break
                except (ConnectionRefusedError, FileNotFoundError) as exc:
                    if time.monotonic() > deadline or not alive():
                        raise ConnectionError(f"QMP socket {self.socket_path} did not answer: {exc}") from exc
            time.sleep(0.01)
        while True:
            try:
                self._call(self._client.connect(str(self.socket_path)), timeout=5)
                break
            except Exception as exc:  # qemu.qmp wraps socket errors in its own ConnectError
                if time.monotonic() > deadline or not alive():
                    raise ConnectionError(f"QMP socket {self.socket_path} did not answer: {exc}") from exc
                time.sleep(0.02)
        self._listener_task = self._call(self._start_listener(), timeout=5)

    async def _start_listener(self) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(self._listen())

    async def _stop_listener(self) -> None:
        assert self._listener_task is not None
        self._listener_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._listener_task

    async def _listen(self) -> None:
        try:
            async for ev in self._client.events:
                self.events.add(QmpEvent(ev["event"], dict(ev.get("data", {})), time.monotonic()))
                log.debug("QMP event %s %s", ev["event"], ev.get("data"))
        except Exception as exc:  # the listener only ends by cancellation (close) or an error
            log.debug("QMP listener ended: %r", exc)
        finally:
            self.events.close()

    def execute(self, cmd: str, args: dict[str, Any] | None = None, timeout: float = 60.0) -> Any:
        return self._call(self._client.execute(cmd, args), timeout)

    def close(self) -> None:
        try:
            self._call(self._client.disconnect(), timeout=5)
        except Exception as exc:
            log.debug("QMP disconnect: %r", exc)
        if self._listener_task is not None:
            try:
                self._call(self._stop_listener(), timeout=5)
            except Exception as exc:
                log.debug("QMP listener stop: %r", exc)
        self.events.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

"""Commands in the guest over SSH (paramiko)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko

log = logging.getLogger("mlx5lab.ssh")
EOF_GRACE_S = 0.5  # how long a finished command's output may trail its exit status


@dataclass
class CommandResult:
    command: str
    status: int
    stdout: str
    stderr: str


class GuestShell:
    """An SSH session to the guest's dropbear, as root, with the image's key."""

    def __init__(self, port: int, key_path: Path) -> None:
        self.port = port
        self.key = paramiko.Ed25519Key.from_private_key_file(str(key_path))
        self.client: paramiko.SSHClient | None = None
        # Channels of started commands. paramiko's transport holds its channels only weakly and a Channel
        # closes itself when collected, so an unreferenced one is closed whenever the garbage collector
        # runs: seen to close the *next* command's channel (same local id) with "Channel closed".
        self._started: list[paramiko.Channel] = []

    def connect(self, deadline: float, alive: Callable[[], bool] | None = None) -> None:
        """Connect, retrying until ``deadline`` (time.monotonic()), or until ``alive`` says the guest's
        QEMU is gone (ConnectionError: a killed guest must not hold its caller until the deadline).

        slirp accepts the host TCP connection before the guest listens, so a connect during boot can sit
        in the banner wait; callers connect only after the guest's SSH-READY marker and keep timeouts short.
        """
        self.close()
        last: Exception | None = None
        while time.monotonic() < deadline:
            if alive is not None and not alive():
                raise ConnectionError(f"SSH to 127.0.0.1:{self.port}: the guest's QEMU exited "
                                      f"(last attempt: {last!r})")
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
            left = max(0.5, min(5.0, deadline - time.monotonic()))
            try:
                client.connect("127.0.0.1", port=self.port, username="root", pkey=self.key,
                               timeout=left, banner_timeout=left, auth_timeout=left,
                               allow_agent=False, look_for_keys=False)
                transport = client.get_transport()
                assert transport is not None
                transport.set_keepalive(5)
                self.client = client
                return
            except (paramiko.SSHException, OSError, EOFError) as exc:
                last = exc
                client.close()
                time.sleep(0.1)
        raise TimeoutError(f"SSH to 127.0.0.1:{self.port} failed: {last!r}")

    def run(self, command: str, timeout: float = 60.0) -> CommandResult:
        """Run ``command`` with sh -c; wait for it; return status and output."""
        if self.client is None:
            raise RuntimeError("not connected")
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise ConnectionError("SSH session is closed")
        chan = transport.open_session(timeout=timeout)
        chan.settimeout(timeout)
        try:
            chan.exec_command(command)
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + timeout
            # Read to the end of both streams, not only to the exit status: RFC 4254 (section 6.10) does
            # not order "exit-status" against the channel's last data, and a command's output must not be
            # cut. A command whose background child keeps stdout open never sends EOF: after the status,
            # EOF is waited for a moment only.
            status_seen = 0.0
            while True:
                if chan.recv_ready():
                    out += chan.recv(65536)
                elif chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                elif chan.exit_status_ready() and (chan.eof_received or chan.closed or (
                        status_seen and time.monotonic() - status_seen > EOF_GRACE_S)):
                    break
                else:
                    if chan.exit_status_ready() and not status_seen:
                        status_seen = time.monotonic()
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"guest command timed out after {timeout}s: {command}")
                    time.sleep(0.005)
            status = chan.recv_exit_status()
            return CommandResult(command, status, out.decode(errors="replace"), err.decode(errors="replace"))
        except TimeoutError as exc:
            raise TimeoutError(f"guest command timed out after {timeout}s: {command}") from exc
        finally:
            chan.close()

    def start(self, command: str) -> None:
        """Start ``command`` and do not wait: for commands that never return (a crash, a reboot)."""
        if self.client is None:
            raise RuntimeError("not connected")
        transport = self.client.get_transport()
        if transport is None:
            raise ConnectionError("SSH session is closed")
        self._started = [c for c in self._started if not c.closed]
        chan = transport.open_session(timeout=10)
        chan.exec_command(command)
        self._started.append(chan)

    def open_terminal(self, term: str, columns: int, rows: int) -> paramiko.Channel:
        """An interactive login shell on a guest pty (RFC 4254 sections 6.2 and 6.5: "pty-req", then
        "shell"): dropbear allocates the pty from the guest's /dev/ptmx and makes it the shell's
        controlling terminal, so job control works and Ctrl-C reaches the foreground job."""
        if self.client is None:
            raise RuntimeError("not connected")
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise ConnectionError("SSH session is closed")
        chan = transport.open_session(timeout=10)
        chan.get_pty(term=term, width=columns, height=rows)
        chan.invoke_shell()
        self._started.append(chan)
        return chan

    def close(self) -> None:
        self._started = []
        if self.client is not None:
            self.client.close()
            self.client = None

"""Child processes that never outlive the orchestrator: QEMU, the device server, the KVM probe."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from .. import Mlx5LabError

log = logging.getLogger("mlx5lab.process")


def dies_with_parent(argv: list[str]) -> list[str]:
    """``argv`` run under ``setpriv --pdeathsig KILL``: the kernel kills the child when the orchestrator
    dies, however it dies (SIGKILL included).

    setpriv (util-linux, essential in Debian) sets it between fork and exec; a Python ``preexec_fn`` would
    do the same but is unsafe in a process with threads (the QMP loop, triage).
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise Mlx5LabError("setpriv is missing: apt-get install util-linux")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv]


class ChildProcess:
    """One child: its own session (a terminal's Ctrl-C reaches only the orchestrator, which then stops it
    in order), a parent-death signal, no stdin, stdout and stderr into ``log_path`` (or nowhere)."""

    def __init__(self, argv: list[str], log_path: Path | None) -> None:
        self.argv = argv
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ChildProcess:
        log.debug("starting %s", " ".join(self.argv))
        out = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(dies_with_parent(self.argv), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=out, start_new_session=True)
        finally:
            if not isinstance(out, int):
                out.close()  # the child has its own copy
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def wait(self, timeout: float) -> bool:
        """True if the child ended within ``timeout`` seconds."""
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self, grace_s: float = 5.0, terminate: bool = True) -> None:
        """Wait up to ``grace_s`` for the child to end (after SIGTERM if ``terminate``), then SIGKILL it.

        Idempotent. QEMU is asked to quit over QMP first, so its caller passes ``terminate=False``.
        """
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if terminate:
                self.proc.terminate()
            if not self.wait(grace_s):
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None:
            return ""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

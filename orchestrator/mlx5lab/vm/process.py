"""Child processes that never outlive the orchestrator."""

from __future__ import annotations

import shutil

from .. import Mlx5LabError


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

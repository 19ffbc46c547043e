"""The one owner of the orchestrator's folders: every file name, and the one atomic write.

A run folder (one guest boot; a campaign's ``iter-NNNN/``)::

    console.log            the guest's serial console
    qemu.stderr            QEMU's own output
    qmp.sock               QMP (removed when QEMU stops)
    card/                  the device server's folder (names in :mod:`mlx5dev.rundir`)
    result.json            the iteration's result (an :class:`~mlx5lab.campaign.outcome.IterationResult`)
    oops.txt               the crash report cut from the console (crashes only)
    vmcore.kdump           guest memory in kdump-zlib format (crashes and hangs)
    triage.json, triage.md the triage of the crash

A campaign folder::

    campaign.json          the campaign's parameters (CampaignSpec)
    journal.jsonl          one result per finished iteration, fsync'ed
    summary.json           counts and per-iteration outcomes
    junit.xml              one test case per iteration
    triage-summary.json    crashes grouped by signature (``mlx5lab triage CAMPAIGN``)
    iter-NNNN/             one run folder per iteration; ``iter-NNNN.interrupted-K`` for cut-off ones

A fix verification folder (``mlx5lab verify-fix``)::

    base/, fix/            the base driver's and the fixed driver's campaigns (campaign folders)
    verdict.json           both tallies, the bound on the fixed panic rate, the verdict

Writers of whole files go through :func:`atomic_write`: a reader (or a killed writer) never sees half a
file, only the old one or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlx5dev.rundir import CardDir, socket_path


def atomic_write(path: Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    The temporary name is unique per writer, so two threads or processes writing the same file (a
    campaign and a ``mlx5lab triage`` of it) never rename each other's half-written file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: Path, data: Any) -> Path:
    return atomic_write(path, json.dumps(data, indent=2, default=str) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; {} if it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_text(path: Path) -> str:
    """The text of ``path`` ("" if it does not exist); undecodable bytes are replaced."""
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""


class _File:
    """A file of a folder type, declared once by its name: ``RunDir.CONSOLE`` is the name,
    ``RunDir(p).console`` the path."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __set_name__(self, owner: type, attr: str) -> None:
        setattr(owner, attr.upper(), self.name)

    def __get__(self, obj: object, owner: type | None = None) -> Path:
        if obj is None:
            raise AttributeError(f"use the class constant {self.name!r} or an instance's path")
        return obj.path / self.name  # type: ignore[attr-defined]


@dataclass(frozen=True)
class RunDir:
    """The files of one guest boot (a ``mlx5lab boot --keep`` folder, or a campaign's ``iter-NNNN/``)."""

    path: Path

    console = _File("console.log")
    qemu_stderr = _File("qemu.stderr")
    QMP_SOCKET = "qmp.sock"
    result = _File("result.json")
    oops = _File("oops.txt")
    vmcore = _File("vmcore.kdump")
    triage_json = _File("triage.json")
    triage_md = _File("triage.md")
    program = _File("program.prog")  # the fuzz program this run executed
    exec_records = _File("exec.jsonl")  # the executor's record of each of its operations
    CARD = "card"
    VMCORE_NAMES = ("vmcore.kdump", "vmcore")  # "vmcore": as makedumpfile or a kdump kernel names it

    @property
    def qmp_socket(self) -> Path:
        return socket_path(self.path / self.QMP_SOCKET)

    @property
    def card(self) -> CardDir:
        return CardDir(self.path / self.CARD)

    def find_vmcore(self) -> Path | None:
        return next((self.path / n for n in self.VMCORE_NAMES if (self.path / n).is_file()), None)

    def relative(self, path: Path) -> str:
        """``path`` as recorded in result.json: relative to this folder."""
        return str(Path(path).relative_to(self.path))


@dataclass(frozen=True)
class CampaignDir:
    """The files of a campaign folder; its iterations are :class:`RunDir` folders."""

    path: Path

    spec = _File("campaign.json")
    journal = _File("journal.jsonl")
    summary = _File("summary.json")
    junit = _File("junit.xml")
    triage_summary = _File("triage-summary.json")
    ITERATION_GLOB = "iter-*"

    @staticmethod
    def iteration_name(i: int) -> str:
        return f"iter-{i:04d}"

    def iteration(self, i: int) -> RunDir:
        return RunDir(self.path / self.iteration_name(i))

    def iterations(self) -> list[RunDir]:
        """Every iteration folder, cut-off ones (``iter-NNNN.interrupted-K``) included, sorted by name."""
        return [RunDir(p) for p in sorted(self.path.glob(self.ITERATION_GLOB)) if p.is_dir()]

    def set_aside(self, i: int) -> Path | None:
        """Rename iteration ``i``'s folder, if any, to a free ``iter-NNNN.interrupted-K`` and return it.

        The folder of an iteration that a kill cut off keeps what it left (perhaps half of a crash's
        evidence), and the iteration runs again from nothing.
        """
        folder = self.iteration(i).path
        if not folder.exists():
            return None
        n = 1
        while (aside := folder.with_name(f"{folder.name}.interrupted-{n}")).exists():
            n += 1
        folder.rename(aside)
        return aside


@dataclass(frozen=True)
class VerifyDir:
    """The files of a ``mlx5lab verify-fix`` folder: two campaigns on one schedule and their verdict."""

    path: Path

    verdict = _File("verdict.json")
    SIDES = ("base", "fix")

    def campaign(self, side: str) -> CampaignDir:
        if side not in self.SIDES:
            raise ValueError(f"a verify-fix folder has the campaigns {self.SIDES}, not {side!r}")
        return CampaignDir(self.path / side)

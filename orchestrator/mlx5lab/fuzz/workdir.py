"""The one owner of a fuzz work folder's file names, in the style of :mod:`mlx5lab.rundir`.

A fuzz work folder (kept across nights: corpus, crashes and coverage grow; each night appends)::

    corpus/<hash>.prog         a program that added coverage (its text)
    corpus/<hash>.json         its meta: added_at, the coverage keys it added, origin; written last, so a
                               .prog without its .json is a cut-off add and not in the corpus
    crashes/<signature>/       one bug: every finding with this crash signature (a :class:`CrashDir`)
    runs/<NNNNNN>-<hash>/      one run folder per program execution (a :class:`~mlx5lab.rundir.RunDir`)
    coverage.json              every coverage key seen so far
    journal.jsonl              one line per finished program execution, fsync'ed
    stats.jsonl                time series: programs, coverage, corpus, bugs, infra (one line per program)
    nights.jsonl               one line per finished run of the fuzzer: start, end, seed, programs, new bugs
    summary.json, report.md,   the reports (:mod:`.report`)
    junit.xml, report.html

A crash folder (:class:`CrashDir`)::

    meta.json                  the bug (:class:`~mlx5lab.fuzz.store.Bug`); the commit point of a record
    title                      its title, one line
    log-N.console, oops-N.txt  the console log and oops of the bug's N-th finding (0-based), for a bounded
                               set of N: the first finding and the latest ones (:mod:`.store` says why)
    vmcore.kdump               the first vmcore seen for the bug (later findings' vmcores are not kept)
    prog-<hash>.prog           every program that hit the bug
    repro.prog                 the reproducer, once one is known
    triage.json, triage.md     the triage of the bug's first finding (:mod:`mlx5lab.triage`: title,
                               signature, and the vmcore verdict when its vmcore could be read)
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ..rundir import RunDir, _File

#: How many hex digits of the program text's SHA-256 name a program.
PROGRAM_HASH_LEN = 16


def program_hash(text: str) -> str:
    """The name of a program: the first 16 hex digits of the SHA-256 of its text."""
    return hashlib.sha256(text.encode()).hexdigest()[:PROGRAM_HASH_LEN]


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(text: str) -> str:
    """``text`` as one folder name: signatures are hex, but a folder name must never escape its parent."""
    name = _UNSAFE.sub("_", text).lstrip(".")
    return name[:120] or "_"


@dataclass(frozen=True)
class CrashDir:
    """The files of one bug: ``crashes/<signature>/``."""

    path: Path

    meta = _File("meta.json")
    title = _File("title")
    vmcore = _File("vmcore.kdump")
    repro = _File("repro.prog")
    triage_json = _File("triage.json")
    triage_md = _File("triage.md")
    LOG_GLOB = "log-*.console"
    OOPS_GLOB = "oops-*.txt"
    TEMP_GLOB = ".*.tmp"  # what a writer killed mid-write leaves (rundir.atomic_write's temporary names)

    def log(self, n: int) -> Path:
        return self.path / f"log-{n}.console"

    def oops(self, n: int) -> Path:
        return self.path / f"oops-{n}.txt"

    def program(self, program_hash: str) -> Path:
        return self.path / f"prog-{program_hash}.prog"

    def kept_logs(self) -> list[int]:
        """The N of every ``log-N.console`` and ``oops-N.txt`` on disk, sorted."""
        found: set[int] = set()
        for glob in (self.LOG_GLOB, self.OOPS_GLOB):
            for p in self.path.glob(glob):
                n = p.name.split("-", 1)[1].split(".", 1)[0]
                if n.isdigit():
                    found.add(int(n))
        return sorted(found)


@dataclass(frozen=True)
class FuzzDir:
    """The files of a fuzz work folder."""

    path: Path

    coverage = _File("coverage.json")
    journal = _File("journal.jsonl")
    stats = _File("stats.jsonl")
    nights = _File("nights.jsonl")
    summary = _File("summary.json")
    report_md = _File("report.md")
    junit = _File("junit.xml")
    report_html = _File("report.html")
    CORPUS = "corpus"
    CRASHES = "crashes"
    RUNS = "runs"
    PROGRAM_SUFFIX = ".prog"
    META_SUFFIX = ".json"

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # -- corpus -----------------------------------------------------------------------------------
    @property
    def corpus_dir(self) -> Path:
        return self.path / self.CORPUS

    def corpus_program(self, program_hash: str) -> Path:
        return self.corpus_dir / f"{program_hash}{self.PROGRAM_SUFFIX}"

    def corpus_meta(self, program_hash: str) -> Path:
        return self.corpus_dir / f"{program_hash}{self.META_SUFFIX}"

    # -- crashes ----------------------------------------------------------------------------------
    @property
    def crashes_dir(self) -> Path:
        return self.path / self.CRASHES

    def crash(self, signature: str) -> CrashDir:
        return CrashDir(self.crashes_dir / safe_name(signature))

    def crash_dirs(self) -> list[CrashDir]:
        if not self.crashes_dir.is_dir():
            return []
        return [CrashDir(p) for p in sorted(self.crashes_dir.iterdir()) if p.is_dir()]

    # -- runs -------------------------------------------------------------------------------------
    @property
    def runs_dir(self) -> Path:
        return self.path / self.RUNS

    @staticmethod
    def run_name(index: int, program_hash: str) -> str:
        return f"{index:06d}-{program_hash}"

    def run(self, index: int, program_hash: str) -> RunDir:
        """The run folder of execution ``index`` (0-based, in the order of the journal) of a program."""
        return RunDir(self.runs_dir / self.run_name(index, program_hash))

    def try_run(self, signature: str, attempt: int, try_number: int, program_hash: str) -> RunDir:
        """The run folder of try ``try_number`` of the ``attempt``-th minimisation of bug ``signature``
        (``min-<signature>-<attempt>-<try>-<program>``): apart from the executions' names, so a try never
        takes the folder of an execution, or of another try, of the same program."""
        return RunDir(self.runs_dir / f"min-{signature}-{attempt}-{try_number:03d}-{program_hash}")

    def run_path(self, name: str) -> Path:
        """A run folder as recorded (relative to this folder, or absolute for a run kept elsewhere)."""
        return self.path / name

    def relative(self, path: Path) -> str:
        """``path`` as recorded in the journal and the crash store: relative to this folder if inside it."""
        path = Path(path)
        try:
            return str(path.resolve().relative_to(self.path.resolve()))
        except ValueError:
            return str(path.resolve())

    def create(self) -> FuzzDir:
        for d in (self.corpus_dir, self.crashes_dir, self.runs_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self

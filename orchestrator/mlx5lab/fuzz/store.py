"""The fuzz work folder's persistent state: the crash store, the corpus, and the JSON-lines logs.

**Crash store.** Findings with the same crash signature are one bug, kept in ``crashes/<signature>/``
(names in :class:`~.workdir.CrashDir`). ``meta.json`` is the commit point of a record: every other file
of the record is written first, each through a temporary name and a rename, and the record counts only once
``meta.json`` says so. A kill at any point therefore leaves a store that loads: a folder without
``meta.json`` is no bug yet, a log or program file that no ``meta.json`` lists was never counted (the retry
rewrites it), and a half-copied file only ever exists under a temporary name (removed by the next record).
``meta.json`` lists the run folder of every finding, so recording the same finding again (a retry after a
kill that came after the commit) counts it once.

**Triage.** A bug's first finding is triaged as a campaign's crashes are (:mod:`mlx5lab.triage`: title,
signature, and, when its vmcore and the kernel's debug info are there, drgn's verdict); the result is kept
in the bug's folder (``triage.json``, ``triage.md``) and summed up in ``meta.json``'s ``triage``.

**Bounded logs: the first finding plus a rotation of the latest.** A bug keeps at most ``max_logs``
console logs and oops texts: ``log-0`` of its first finding stays for good (it goes with the kept vmcore and
with the first run folder, whose trace and triage the reports show), and the other slots hold the most
recent findings, oldest dropped first. First-K alone would describe a months-old bug only by its first
night; rotating alone (syzkaller's manager) would lose the log that matches the vmcore. Files are named by
the finding's ordinal, never reused, so a log on disk is always the one ``meta.json`` says it is.

**Corpus.** ``corpus/<hash>.prog`` and its ``<hash>.json`` (written last: the commit point).

**Logs.** ``journal.jsonl`` (one :class:`Execution` per finished program execution), ``stats.jsonl``
(:class:`StatsSample`) and ``nights.jsonl`` (:class:`Night`) are appended and fsync'ed line by line; a line
torn by a kill is skipped on reading. One fuzzer writes a work folder at a time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..campaign.outcome import IterationResult, Outcome
from ..crash import crash_report
from ..rundir import RunDir, atomic_write, atomic_write_json, read_json, read_text
from ..triage.markdown import render_markdown
from ..triage.result import TriageResult
from .workdir import CrashDir, FuzzDir, program_hash

#: How many console logs (and oops texts) a bug keeps: its first finding and the latest ones.
MAX_LOGS = 5

#: What meta.json keeps of a bug's triage (triage.json has it all), plus the triaged run folder.
TRIAGE_KEYS = ("title", "kind", "signature", "verdict", "verdict_source", "vmcore_skipped")

#: Version of a crash folder's meta.json.
BUG_SCHEMA = 1
# A bug whose minimisation kept no reproducer is minimised again from a later finding's program, up to this
# many minimisations in all: one finding's program may have crashed by a rare timing. syzkaller's manager
# does the same: at most MaxReproAttempts = 3 reproductions per crash title (its crash store).
MAX_REPRO_ATTEMPTS = 3

Key = tuple[Any, ...]  # a coverage key (:mod:`.coverage`); a list in JSON

T = TypeVar("T")


def _fields_of(cls: type[T], data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return {k: v for k, v in data.items() if k in names}


# -- crash store ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One crash seen by one program execution."""

    signature: str
    title: str
    kind: str
    program: str  # the program's text
    run: Path | None  # the run folder: console.log, oops.txt, vmcore.kdump (RunDir names)
    time: float  # wall clock of the finding
    route: tuple[str, ...] = ()  # the crashing task's driver frames, innermost first (OopsSignature.route)

    @property
    def entry(self) -> str | None:
        """Where the crashing task entered the driver (the outermost frame of :attr:`route`)."""
        return self.route[-1] if self.route else None

    @property
    def program_hash(self) -> str:
        return program_hash(self.program)

    @classmethod
    def from_run(cls, run: Path | RunDir, program: str, when: float | None = None) -> Finding | None:
        """The crash of a run folder: its oops (or console) as :func:`~mlx5lab.crash.crash_report` reads it,
        else the title and signature its result.json recorded (a hang whose console has no report); None if
        the folder holds no crash."""
        rd = run if isinstance(run, RunDir) else RunDir(Path(run))
        result = read_json(rd.result)
        report = crash_report(read_text(rd.oops)) or crash_report(read_text(rd.console))
        when = time.time() if when is None else when
        if report is not None:
            return cls(report.signature, report.title, report.kind_text, program, rd.path, when,
                       tuple(report.detail.route))
        if not result:
            return None
        r = IterationResult.from_json(result)
        if not r.outcome.is_finding:
            return None
        return cls(r.signature or f"no-report-{r.outcome.value}", r.title or f"{r.outcome.value} without a report",
                   r.outcome.value, program, rd.path, when)


@dataclass(frozen=True)
class Repro:
    program: str  # the program hash of repro.prog
    rate: float  # the share of tries that crashed with this signature
    ci: tuple[float, float]  # the rate's confidence interval
    tries: int

    def to_json(self) -> dict[str, Any]:
        return {"program": self.program, "rate": self.rate, "ci": list(self.ci), "tries": self.tries}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Repro | None:
        if not data:
            return None
        lo, hi = (list(data.get("ci") or [0.0, 0.0]) + [0.0, 0.0])[:2]
        return cls(str(data.get("program", "")), float(data.get("rate", 0.0)), (float(lo), float(hi)),
                   int(data.get("tries", 0)))


@dataclass
class Bug:
    """One crash signature and everything the store kept of it (what ``meta.json`` holds)."""

    signature: str
    title: str
    kind: str
    first_seen: float
    last_seen: float
    count: int = 0
    programs: list[str] = field(default_factory=list)  # hashes of the programs that hit it, first first
    runs: list[str] = field(default_factory=list)  # run folder of each finding (FuzzDir.relative), first first
    logs: list[int] = field(default_factory=list)  # ordinals N of the kept log-N.console / oops-N.txt
    vmcore_run: str | None = None  # the run whose vmcore is kept as vmcore.kdump
    # findings by driver entry (Finding.entry), in the order first seen: the first is the one its reproducer
    # keeps; several entries are several ways into the same fault
    entries: dict[str, int] = field(default_factory=dict)
    repro: Repro | None = None
    repro_attempts: int = 0  # minimisations started (CrashStore.start_repro), at most MAX_REPRO_ATTEMPTS
    triage: dict[str, Any] | None = None  # the triage of its first finding (CrashStore.set_triage)
    new: bool = False  # first seen in the night that last recorded it (reports use CrashStore.new_since)
    schema: int = BUG_SCHEMA
    folder: Path = field(default=Path("."), compare=False)  # not in meta.json

    @property
    def dir(self) -> CrashDir:
        return CrashDir(self.folder)

    @property
    def needs_repro(self) -> bool:
        """No reproducer kept yet, and a minimisation left to try (:data:`MAX_REPRO_ATTEMPTS`)."""
        return self.repro is None and self.repro_attempts < MAX_REPRO_ATTEMPTS

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("folder")
        data["repro"] = self.repro.to_json() if self.repro else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], folder: Path) -> Bug:
        known = _fields_of(cls, data)
        known["repro"] = Repro.from_json(data.get("repro"))
        known["folder"] = folder
        known["schema"] = BUG_SCHEMA
        return cls(**known)


def _temp_name(dst: Path) -> Path:
    return dst.parent / f".{dst.name}.{uuid.uuid4().hex[:12]}.tmp"


def copy_atomic(src: Path, dst: Path) -> Path:
    """Copy ``src`` to ``dst`` through a temporary name and a rename: ``dst`` is whole or absent."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dst


def link_or_copy(src: Path, dst: Path) -> Path:
    """``dst`` becomes ``src``'s data: a hard link when both are on one file system (a vmcore is large; the
    run folder keeps its own name for triage), else an atomic copy."""
    tmp = _temp_name(dst)
    try:
        os.link(src, tmp)
    except OSError:
        return copy_atomic(src, dst)
    try:
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dst


def kept_logs(logs: list[int], ordinal: int, max_logs: int) -> list[int]:
    """The ordinals to keep once finding ``ordinal`` adds its log: the first one ever kept, then the latest."""
    if max_logs <= 0:
        return []
    if not logs:
        return [ordinal]
    rest = [n for n in logs[1:] if n != ordinal] + [ordinal]
    return logs[:1] + (rest[-(max_logs - 1):] if max_logs > 1 else [])


class CrashStore:
    """The bugs of a fuzz work folder, one folder per crash signature.

    ``night_start`` (wall clock) is the start of the fuzzer's current run: a bug first seen after it is
    marked ``new`` in its meta.json when recorded.
    """

    def __init__(self, workdir: FuzzDir | Path, *, night_start: float | None = None,
                 max_logs: int = MAX_LOGS) -> None:
        self.dir = workdir if isinstance(workdir, FuzzDir) else FuzzDir(Path(workdir))
        self.night_start = night_start
        self.max_logs = max_logs
        self._lock = threading.Lock()

    # -- reading ---------------------------------------------------------------------------------
    def _load(self, crash: CrashDir) -> Bug | None:
        data = read_json(crash.meta)
        if not data.get("signature"):
            return None  # no meta.json yet: a record cut off before its commit
        try:
            return Bug.from_json(data, crash.path)
        except (TypeError, ValueError):
            return None

    def bugs(self) -> list[Bug]:
        """Every bug, in the order they were first seen."""
        found = (self._load(c) for c in self.dir.crash_dirs())
        return sorted((b for b in found if b is not None), key=lambda b: (b.first_seen, b.signature))

    def get(self, signature: str) -> Bug | None:
        return self._load(self.dir.crash(signature))

    def new_since(self, since: float) -> list[Bug]:
        """Bugs first seen at or after ``since`` (e.g. :meth:`Nights.baseline`)."""
        return [b for b in self.bugs() if b.first_seen >= since]

    def split(self, since: float) -> tuple[list[Bug], list[Bug]]:
        """(new, known): bugs first seen at or after ``since``, and those seen before it."""
        bugs = self.bugs()
        return [b for b in bugs if b.first_seen >= since], [b for b in bugs if b.first_seen < since]

    # -- writing ---------------------------------------------------------------------------------
    def record(self, finding: Finding) -> tuple[Bug, bool]:
        """Add ``finding`` to its bug; (the bug, True if this signature was never seen before).

        Recording a finding whose run folder is already listed (a retry) changes nothing.
        """
        with self._lock:
            crash = self.dir.crash(finding.signature)
            crash.path.mkdir(parents=True, exist_ok=True)
            self._sweep(crash)
            old = self._load(crash)
            run = self.dir.relative(finding.run) if finding.run is not None else None
            if old is not None and run is not None and run in old.runs:
                return old, False
            bug = old or Bug(signature=finding.signature, title=finding.title, kind=finding.kind,
                             first_seen=finding.time, last_seen=finding.time, folder=crash.path)
            ordinal = bug.count
            phash = finding.program_hash

            if not crash.program(phash).exists():
                atomic_write(crash.program(phash), finding.program)
            logs = bug.logs
            keep = kept_logs(bug.logs, ordinal, self.max_logs)
            if finding.run is not None and ordinal in keep and self._copy_logs(RunDir(finding.run), crash, ordinal):
                logs = keep
            vmcore_run = bug.vmcore_run
            vmcore = RunDir(finding.run).find_vmcore() if finding.run is not None else None
            if vmcore_run is None and vmcore is not None:
                link_or_copy(vmcore, crash.vmcore)
                vmcore_run = run
            if old is None:
                atomic_write(crash.title, finding.title + "\n")

            bug.count += 1
            bug.first_seen = min(bug.first_seen, finding.time)
            bug.last_seen = max(bug.last_seen, finding.time)
            if phash not in bug.programs:
                bug.programs.append(phash)
            if run is not None:
                bug.runs.append(run)
            if finding.entry is not None:
                bug.entries[finding.entry] = bug.entries.get(finding.entry, 0) + 1
            bug.logs = logs
            bug.vmcore_run = vmcore_run
            bug.new = self.night_start is not None and bug.first_seen >= self.night_start
            atomic_write_json(crash.meta, bug.to_json())  # the commit point
            self._drop_logs(crash, bug.logs)
            return bug, old is None

    def start_repro(self, signature: str) -> Bug:
        """Count one more minimisation of the bug (before it runs: a kill during it still counts it)."""
        with self._lock:
            crash = self.dir.crash(signature)
            bug = self._load(crash)
            if bug is None:
                raise KeyError(f"no bug with signature {signature!r} in {self.dir.crashes_dir}")
            bug.repro_attempts += 1
            atomic_write_json(crash.meta, bug.to_json())
            return bug

    def set_repro(self, signature: str, program_text: str, rate: float, ci: tuple[float, float] | list[float],
                  tries: int) -> Bug:
        """Keep ``program_text`` as the bug's reproducer (repro.prog), with its crash rate over ``tries``."""
        with self._lock:
            crash = self.dir.crash(signature)
            bug = self._load(crash)
            if bug is None:
                raise KeyError(f"no bug with signature {signature!r} in {self.dir.crashes_dir}")
            atomic_write(crash.repro, program_text)
            lo, hi = ci
            bug.repro = Repro(program_hash(program_text), float(rate), (float(lo), float(hi)), int(tries))
            atomic_write_json(crash.meta, bug.to_json())
            return bug

    def set_triage(self, signature: str, triage: TriageResult) -> Bug:
        """Keep ``triage`` (of one of the bug's findings) as the bug's: triage.json and triage.md in its
        folder, and the verdict in meta.json (:data:`TRIAGE_KEYS`)."""
        with self._lock:
            crash = self.dir.crash(signature)
            bug = self._load(crash)
            if bug is None:
                raise KeyError(f"no bug with signature {signature!r} in {self.dir.crashes_dir}")
            data = triage.to_json()
            atomic_write_json(crash.triage_json, data)
            atomic_write(crash.triage_md, render_markdown(data))
            bug.triage = {k: data.get(k) for k in TRIAGE_KEYS}
            bug.triage["run"] = self.dir.relative(triage.folder)
            atomic_write_json(crash.meta, bug.to_json())
            return bug

    def _copy_logs(self, run: RunDir, crash: CrashDir, ordinal: int) -> bool:
        copied = False
        if run.console.is_file():
            copy_atomic(run.console, crash.log(ordinal))
            copied = True
        if run.oops.is_file():
            copy_atomic(run.oops, crash.oops(ordinal))
            copied = True
        return copied

    @staticmethod
    def _drop_logs(crash: CrashDir, keep: Iterable[int]) -> None:
        """Remove the logs that meta.json no longer lists (after the commit; a kill here only leaves extras)."""
        keep = set(keep)
        for n in crash.kept_logs():
            if n not in keep:
                crash.log(n).unlink(missing_ok=True)
                crash.oops(n).unlink(missing_ok=True)

    @staticmethod
    def _sweep(crash: CrashDir) -> None:
        """Remove temporary files that a writer killed mid-write left (one writer per work folder)."""
        for p in crash.path.glob(CrashDir.TEMP_GLOB):
            p.unlink(missing_ok=True)


# -- corpus ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusEntry:
    hash: str
    text: str
    added_at: float
    coverage: list[Key]  # the keys it added
    origin: str  # what made it: "generate", "mutate", "minimize", a seed file...

    def meta(self) -> dict[str, Any]:
        return {"hash": self.hash, "added_at": self.added_at, "coverage": [list(k) for k in self.coverage],
                "origin": self.origin}


class Corpus:
    """The programs that added coverage: ``corpus/<hash>.prog`` with ``<hash>.json``. Loaded on creation."""

    def __init__(self, workdir: FuzzDir | Path) -> None:
        self.dir = workdir if isinstance(workdir, FuzzDir) else FuzzDir(Path(workdir))
        self._entries: dict[str, CorpusEntry] = {}
        self.load()

    def load(self) -> Corpus:
        """Read the corpus folder again; a program without its meta (a cut-off add) is not in it."""
        self._entries = {}
        folder = self.dir.corpus_dir
        if folder.is_dir():
            for meta_path in sorted(folder.glob(f"*{FuzzDir.META_SUFFIX}")):
                h = meta_path.name.removesuffix(FuzzDir.META_SUFFIX)
                meta, prog = read_json(meta_path), self.dir.corpus_program(h)
                if not meta or not prog.is_file():
                    continue
                self._entries[h] = CorpusEntry(h, prog.read_text(), float(meta.get("added_at", 0.0)),
                                               [tuple(k) for k in meta.get("coverage", [])],
                                               str(meta.get("origin", "")))
        return self

    def save(self) -> None:
        """Write every entry (``add`` already did; this repairs a folder whose files were removed)."""
        self.dir.corpus_dir.mkdir(parents=True, exist_ok=True)
        for e in self._entries.values():
            self._write(e)

    def _write(self, e: CorpusEntry) -> None:
        atomic_write(self.dir.corpus_program(e.hash), e.text)
        atomic_write_json(self.dir.corpus_meta(e.hash), e.meta())  # the commit point

    def add(self, program_text: str, coverage_keys: Iterable[Key], origin: str, *,
            when: float | None = None) -> bool:
        """Add a program (written at once); False if a program with the same text is already there."""
        h = program_hash(program_text)
        if h in self._entries:
            return False
        e = CorpusEntry(h, program_text, time.time() if when is None else when,
                        sorted((tuple(k) for k in coverage_keys), key=repr), origin)
        self.dir.corpus_dir.mkdir(parents=True, exist_ok=True)
        self._write(e)
        self._entries[h] = e
        return True

    def programs(self) -> list[CorpusEntry]:
        """Every entry, oldest first."""
        return sorted(self._entries.values(), key=lambda e: (e.added_at, e.hash))

    def get(self, program_hash: str) -> CorpusEntry | None:
        return self._entries.get(program_hash)

    def __contains__(self, program_hash: object) -> bool:
        return program_hash in self._entries

    def __len__(self) -> int:
        return len(self._entries)


# -- JSON-lines logs ------------------------------------------------------------------------------


class JsonLines:
    """A JSON-lines file appended one fsync'ed line at a time; torn lines are skipped on reading."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, data: dict[str, Any]) -> None:
        line = json.dumps(data, default=str, separators=(",", ":")) + "\n"
        with open(self.path, "a+b") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:  # end a line torn by a kill, so this one starts afresh
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.write(line.encode())
            f.flush()
            os.fsync(f.fileno())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            text = self.path.read_text(errors="replace")
        except FileNotFoundError:
            return
        for line in text.splitlines():
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict):
                yield data


@dataclass
class Execution:
    """One finished program execution: a journal.jsonl line."""

    index: int  # 0-based, in execution order; the run folder is FuzzDir.run(index, program)
    program: str  # program hash
    outcome: Outcome
    started: float  # wall clock
    duration_s: float = 0.0
    run: str = ""  # the run folder, relative to the work folder
    title: str = ""
    signature: str = ""
    new_coverage: int = 0  # coverage keys this execution added
    coverage: int = 0  # coverage size after it
    origin: str = ""  # generate, mutate, minimize, repro, ...
    detail: str = ""

    def __post_init__(self) -> None:
        self.outcome = Outcome(self.outcome)

    @property
    def ended(self) -> float:
        return self.started + self.duration_s

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["outcome"] = self.outcome.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Execution:
        return cls(**_fields_of(cls, data))


class Journal:
    """journal.jsonl: resume loses no finished execution."""

    def __init__(self, workdir: FuzzDir | Path) -> None:
        self.dir = workdir if isinstance(workdir, FuzzDir) else FuzzDir(Path(workdir))
        self._lines = JsonLines(self.dir.journal)

    def append(self, execution: Execution) -> None:
        self._lines.append(execution.to_json())

    def load(self) -> list[Execution]:
        """Every complete entry in index order (a later entry for the same index wins)."""
        found: dict[int, Execution] = {}
        for data in self._lines:
            try:
                e = Execution.from_json(data)
            except (TypeError, ValueError, KeyError):
                continue
            found[e.index] = e
        return [found[i] for i in sorted(found)]

    def next_index(self) -> int:
        entries = self.load()
        return entries[-1].index + 1 if entries else 0


@dataclass
class StatsSample:
    """One point of stats.jsonl's time series."""

    t: float  # wall clock
    programs: int  # executions so far (every night)
    coverage: int  # coverage size
    corpus: int = 0
    bugs: int = 0
    crashes: int = 0  # findings (executions that crashed)
    infra: int = 0  # infrastructure failures so far

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StatsSample:
        return cls(**_fields_of(cls, data))


class Stats:
    def __init__(self, workdir: FuzzDir | Path) -> None:
        self.dir = workdir if isinstance(workdir, FuzzDir) else FuzzDir(Path(workdir))
        self._lines = JsonLines(self.dir.stats)

    def append(self, sample: StatsSample) -> None:
        self._lines.append(sample.to_json())

    def load(self) -> list[StatsSample]:
        out: list[StatsSample] = []
        for data in self._lines:
            try:
                out.append(StatsSample.from_json(data))
            except (TypeError, ValueError):
                continue
        return sorted(out, key=lambda s: s.t)


@dataclass
class Night:
    """One finished run of the fuzzer: a nights.jsonl line."""

    start: float
    end: float
    seed: int | None = None
    programs: int = 0
    new_bugs: list[str] = field(default_factory=list)  # signatures first seen in it

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Night:
        return cls(**_fields_of(cls, data))


class Nights:
    """nights.jsonl: what "new since the last run" is measured against."""

    def __init__(self, workdir: FuzzDir | Path) -> None:
        self.dir = workdir if isinstance(workdir, FuzzDir) else FuzzDir(Path(workdir))
        self._lines = JsonLines(self.dir.nights)

    def append(self, night: Night) -> None:
        self._lines.append(night.to_json())

    def load(self) -> list[Night]:
        out: list[Night] = []
        for data in self._lines:
            try:
                out.append(Night.from_json(data))
            except (TypeError, ValueError):
                continue
        return sorted(out, key=lambda n: n.start)

    def baseline(self, start: float | None = None) -> float:
        """The time from which a bug is new for the night that started at ``start`` (default: now): the end
        of the last finished night that started before it, 0.0 if none did.

        A night cut off by a kill wrote no line, so its bugs stay new for the next one: nobody saw them in a
        finished night's report.
        """
        start = time.time() if start is None else start
        ends = [n.end for n in self.load() if n.start < start]
        return max(ends, default=0.0)

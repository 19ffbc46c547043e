"""The reports of a fuzz work folder: summary.json, report.md, junit.xml, report.html, and the exit status.

Everything is read back from the work folder (journal, stats, coverage, corpus, crash store, nights), so
the reports can be written at any time, by the fuzzer after each program or afterwards from a copy.

"New" means first seen since the end of the last finished night before this one (:meth:`Nights.baseline`);
the night's figures (rate, infrastructure share) count the executions that started in it.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from mlx5dev.mlx5.trace import read_trace

from ..campaign.campaign import EXIT_CLEAN, EXIT_FOUND, EXIT_INFRA
from ..campaign.outcome import Outcome
from ..rundir import RunDir, atomic_write, atomic_write_json, read_json
from ..triage.result import TriageResult
from .coverage import Coverage
from .store import MAX_REPRO_ATTEMPTS, Bug, Corpus, CrashStore, Execution, Journal, Nights, Stats
from .workdir import FuzzDir

#: Above this share of infrastructure failures in a night, junit.xml has an error and the exit status is 3.
INFRA_THRESHOLD = 0.05
#: Trace records shown per function around a crash.
TRACE_TAIL = 40
#: Points of the coverage series kept in summary.json (the chart draws them all).
SUMMARY_POINTS = 200

SUMMARY_SCHEMA = 1


def plural(n: int, word: str) -> str:
    """``1 program``, ``2 programs``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def iso(t: float | None) -> str:
    return "-" if not t else datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class ReportData:
    """What every report is made of, read once from the work folder."""

    dir: FuzzDir
    generated_at: float
    night_start: float | None  # None: the whole folder is one night
    since: float  # bugs first seen at or after this are new
    executions: list[Execution]
    stats: list[tuple[float, int, int]]  # (time, programs, coverage size)
    coverage: int
    corpus: int
    bugs: list[Bug]
    new: set[str] = field(default_factory=set)  # signatures

    @property
    def night(self) -> list[Execution]:
        start = self.night_start
        return [e for e in self.executions if start is None or e.started >= start]

    def new_bugs(self) -> list[Bug]:
        return [b for b in self.bugs if b.signature in self.new]

    def known_bugs(self) -> list[Bug]:
        return [b for b in self.bugs if b.signature not in self.new]

    def run_dirs(self, bug: Bug) -> list[RunDir]:
        return [RunDir(self.dir.run_path(r)) for r in bug.runs]

    def triage(self, bug: Bug) -> TriageResult | None:
        """The bug's triage (its crash folder's triage.json), else that of the first of its run folders
        that has one."""
        for path in (bug.dir.triage_json, *(rd.triage_json for rd in self.run_dirs(bug))):
            data = read_json(path)
            if data:
                return TriageResult.from_json(data)
        return None

    def trace_tail(self, bug: Bug, n: int = TRACE_TAIL) -> dict[str, list[dict[str, Any]]]:
        """The last ``n`` trace records of each function in the bug's first run folder."""
        runs = self.run_dirs(bug)
        if not runs:
            return {}
        card = runs[0].card
        out: dict[str, list[dict[str, Any]]] = {}
        i = 0
        while (path := card.trace(i)).is_file():
            out[f"fn{i}"] = read_trace(path)[-n:]
            i += 1
        return out

    def reproducer(self, bug: Bug) -> str | None:
        path = bug.dir.repro
        return path.read_text(errors="replace") if bug.repro and path.is_file() else None

    def first_program(self, bug: Bug) -> str | None:
        if not bug.programs:
            return None
        path = bug.dir.program(bug.programs[0])
        return path.read_text(errors="replace") if path.is_file() else None


def collect(workdir: FuzzDir | Path, night_start: float | None = None, now: float | None = None) -> ReportData:
    """Read the work folder. ``night_start``: the start of the night being reported; by default the last
    finished night in nights.jsonl (a report written afterwards), or none (the whole folder)."""
    fd = workdir if isinstance(workdir, FuzzDir) else FuzzDir(Path(workdir))
    nights = Nights(fd)
    if night_start is None:
        finished = nights.load()
        night_start = finished[-1].start if finished else None
    since = nights.baseline(night_start) if night_start is not None else 0.0
    executions = Journal(fd).load()
    samples = Stats(fd).load()
    if samples:
        series = [(s.t, s.programs, s.coverage) for s in samples]
    else:
        series = [(e.ended, i + 1, e.coverage) for i, e in enumerate(executions)]
    bugs = CrashStore(fd).bugs()
    return ReportData(dir=fd, generated_at=time.time() if now is None else now, night_start=night_start,
                      since=since, executions=executions, stats=series, coverage=Coverage.load(fd.coverage).size,
                      corpus=len(Corpus(fd)), bugs=bugs, new={b.signature for b in bugs if b.first_seen >= since})


# -- summary.json ---------------------------------------------------------------------------------


def _counts(executions: list[Execution]) -> dict[str, Any]:
    c = collections.Counter(e.outcome.value for e in executions)
    n = len(executions)
    span = (max(e.ended for e in executions) - min(e.started for e in executions)) if executions else 0.0
    infra = c[Outcome.INFRA.value]
    share = infra / n if n else 0.0
    return {"programs": n, "duration_s": round(span, 3),
            "rate_per_hour": round(n / (span / 3600), 2) if span > 0 else 0.0,
            "outcomes": {o.value: c[o.value] for o in Outcome},
            "infra": {"count": infra, "share": round(share, 4), "threshold": INFRA_THRESHOLD,
                      "exceeded": share > INFRA_THRESHOLD}}


def _decimate(series: list[tuple[float, int, int]], points: int = SUMMARY_POINTS) -> list[tuple[float, int, int]]:
    if len(series) <= points:
        return series
    step = -(-len(series) // points)
    kept = series[::step]
    return kept if kept[-1] == series[-1] else [*kept, series[-1]]


def bug_entry(data: ReportData, bug: Bug) -> dict[str, Any]:
    return {"signature": bug.signature, "title": bug.title, "kind": bug.kind, "count": bug.count,
            "first_seen": bug.first_seen, "last_seen": bug.last_seen, "new": bug.signature in data.new,
            "programs": len(bug.programs), "entries": bug.entries,
            "repro": bug.repro.to_json() if bug.repro else None, "repro_attempts": bug.repro_attempts,
            "triage": _triage_entry(data.triage(bug)),
            "folder": data.dir.relative(bug.folder)}


def _triage_entry(t: TriageResult | None) -> dict[str, Any] | None:
    if t is None:
        return None
    return {"title": t.title, "signature": t.signature, "kind": t.kind, "verdict": t.verdict,
            "verdict_source": t.verdict_source, "vmcore_skipped": t.vmcore_skipped}


def summary(data: ReportData) -> dict[str, Any]:
    start_cov = 0
    if data.night_start is not None:
        start_cov = max((c for t, _, c in data.stats if t < data.night_start), default=0)
    out: dict[str, Any] = {
        "schema": SUMMARY_SCHEMA, "workdir": str(data.dir.path), "generated_at": data.generated_at,
        "night": {"start": data.night_start, "new_since": data.since, **_counts(data.night)},
        "total": _counts(data.executions),
        "coverage": {"size": data.coverage, "night_growth": data.coverage - start_cov, "corpus": data.corpus,
                     "growth": [list(p) for p in _decimate(data.stats)]},
        "bugs": [bug_entry(data, b) for b in data.new_bugs() + data.known_bugs()],
        "new_bugs": [b.signature for b in data.new_bugs()],
    }
    out["exit_status"] = exit_status(out)
    return out


def exit_status(summary: dict[str, Any]) -> int:
    """0 nothing new, 1 a new bug (whatever else happened), 3 infrastructure failures above the threshold
    and no new bug."""
    if summary.get("new_bugs"):
        return EXIT_FOUND
    if summary.get("night", {}).get("infra", {}).get("exceeded"):
        return EXIT_INFRA
    return EXIT_CLEAN


# -- report.md ------------------------------------------------------------------------------------


def no_repro_text(bug: Bug) -> str:
    """Why a bug has no reproducer: not minimised yet, or how many minimisations kept none."""
    n = bug.repro_attempts
    if n == 0:
        return "no reproducer yet"
    left = ("; the next finding's program is minimised" if bug.needs_repro
            else f"; no more tries (at most {MAX_REPRO_ATTEMPTS})")
    return f"no reproducer: {plural(n, 'minimisation')} kept none{left}"


def _repro_line(bug: Bug) -> str:
    r = bug.repro
    if r is None:
        return no_repro_text(bug)
    return (f"reproducer `{r.program}`: crashes {r.rate:.0%} of {r.tries} tries "
            f"(confidence interval {r.ci[0]:.0%} to {r.ci[1]:.0%})")


def entries_line(bug: Bug) -> str:
    """Where its crashing tasks entered the driver, by count: ``mlx5e_update_stats_work (3), ...``."""
    return ", ".join(f"{e} ({n})" for e, n in bug.entries.items()) or "-"


def _bug_markdown(data: ReportData, bug: Bug) -> list[str]:
    lines = [f"### {bug.title}", "",
             f"- signature `{bug.signature}`, kind {bug.kind}",
             f"- seen {plural(bug.count, 'time')} by {plural(len(bug.programs), 'program')}; "
             f"first {iso(bug.first_seen)}, last {iso(bug.last_seen)}",
             f"- entered the driver at: {entries_line(bug)}",
             f"- {_repro_line(bug)}"]
    triage = data.triage(bug)
    if triage is None:
        lines.append("- triage: not yet")
    else:
        if triage.verdict:
            lines.append(f"- triage ({triage.verdict_source}): {triage.verdict}")
        lines.append(f"- triage title: {triage.title or '-'} (signature `{triage.signature or '-'}`)")
        if triage.vmcore_skipped:
            lines.append(f"- vmcore not read: {triage.vmcore_skipped}")
    lines.append(f"- evidence: `{data.dir.relative(bug.folder)}/`")
    program = data.reproducer(bug)
    label = "Reproducer"
    if program is None:
        program, label = data.first_program(bug), "First program that hit it"
    if program is not None:
        lines += ["", f"{label}:", "", "```", program.rstrip("\n"), "```"]
    return [*lines, ""]


def markdown(data: ReportData, summ: dict[str, Any] | None = None) -> str:
    s = summ or summary(data)
    night, cov = s["night"], s["coverage"]
    crashes = sum(night["outcomes"][o.value] for o in Outcome if o.is_finding)
    lines = ["# mlx5lab fuzz report", "",
             f"Work folder `{data.dir.path}`, written {iso(data.generated_at)}.", "",
             f"- this night (from {iso(data.night_start)}): {night['programs']} programs, "
             f"{night['rate_per_hour']} per hour, {plural(crashes, 'crash')}, "
             f"{plural(night['infra']['count'], 'infrastructure failure')} ({night['infra']['share']:.1%})",
             f"- coverage {plural(cov['size'], 'key')} (+{cov['night_growth']} this night), "
             f"corpus {plural(cov['corpus'], 'program')}",
             f"- bugs: {len(data.bugs)}, new since {iso(data.since) if data.since else 'the first night'}: "
             f"{len(data.new)}",
             f"- exit status {s['exit_status']}", ""]
    lines += ["## New bugs", ""]
    new = data.new_bugs()
    if not new:
        lines += ["No new bugs.", ""]
    for bug in new:
        lines += _bug_markdown(data, bug)
    lines += ["## Known bugs", ""]
    known = data.known_bugs()
    if not known:
        lines += ["None.", ""]
    for bug in known:
        lines += _bug_markdown(data, bug)
    return "\n".join(lines)


# -- junit.xml ------------------------------------------------------------------------------------


def junit(data: ReportData, summ: dict[str, Any] | None = None) -> str:
    s = summ or summary(data)
    infra = s["night"]["infra"]
    suite = ET.Element("testsuite", name="mlx5lab-fuzz", tests=str(len(data.bugs) + 1),
                       failures=str(len(data.new)), errors=str(int(infra["exceeded"])))
    for bug in data.new_bugs() + data.known_bugs():
        case = ET.SubElement(suite, "testcase", classname="fuzz.bug", name=f"{bug.title} [{bug.signature}]",
                             time="0")
        text = (f"seen {plural(bug.count, 'time')}, first {iso(bug.first_seen)}, last {iso(bug.last_seen)}; "
                f"{_repro_line(bug)}; evidence in {bug.folder}")
        if bug.signature in data.new:
            fail = ET.SubElement(case, "failure", message=f"new bug: {bug.title}", type=bug.kind)
            fail.text = text
        else:
            ET.SubElement(case, "system-out").text = "known bug: " + text
    case = ET.SubElement(suite, "testcase", classname="fuzz", name="infrastructure", time="0")
    text = (f"{infra['count']} of {s['night']['programs']} programs failed for infrastructure reasons "
            f"({infra['share']:.1%}, threshold {INFRA_THRESHOLD:.0%})")
    if infra["exceeded"]:
        ET.SubElement(case, "error", message=text, type="infra")
    else:
        ET.SubElement(case, "system-out").text = text
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)


# -- all of them ----------------------------------------------------------------------------------


def write_reports(workdir: FuzzDir | Path, night_start: float | None = None, *, html: bool = True,
                  now: float | None = None) -> dict[str, Any]:
    """Write summary.json, report.md, junit.xml and (unless ``html`` is False) report.html; return the
    summary."""
    from .html_report import render  # matplotlib is imported only when a page is drawn

    data = collect(workdir, night_start, now)
    s = summary(data)
    atomic_write_json(data.dir.summary, s)
    atomic_write(data.dir.report_md, markdown(data, s))
    atomic_write(data.dir.junit, junit(data, s))
    if html:
        atomic_write(data.dir.report_html, render(data, s))
    return s

"""report.html: one self-contained page (inline CSS and SVG, no script, nothing fetched).

Charts of coverage growth, programs per hour and when each bug was first seen (:mod:`.charts`), then one
section per bug, new ones first: title, counts, reproducer, triage verdict, and the device's command
sequence around the crash (the last trace records of each function of the bug's first run).
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

from . import charts
from .coverage import op_label
from .report import entries_line, iso, no_repro_text, plural

if TYPE_CHECKING:
    from .report import ReportData
    from .store import Bug

_CSS = """
body { font: 14px/1.4 sans-serif; margin: 1.5em auto; max-width: 80em; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.3em; margin-top: 1.8em; } h3 { font-size: 1.1em; }
table { border-collapse: collapse; margin: .5em 0; } td, th { padding: 2px 8px; text-align: left; }
table.trace td, table.trace th { font: 12px monospace; border-bottom: 1px solid #eee; }
tr.failed td { color: #b00; } tr.note td { color: #666; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; }
figure.chart { margin: 1em 0; } figure.chart svg { max-width: 100%; height: auto; }
section.bug { border-left: 4px solid #1f77b4; padding-left: 1em; margin: 1.5em 0; }
section.bug.new { border-left-color: #d62728; }
.badge { font-size: .8em; padding: 1px 6px; border-radius: 3px; background: #d62728; color: white; }
.muted { color: #666; }
"""


def bug_anchor(bug: Bug) -> str:
    return f"bug-{bug.signature}"


def _trace_row(r: dict[str, Any], t_end: int) -> str:
    ts = r.get("ts_ns")
    when = f"{(ts - t_end) / 1e6:+.3f} ms" if isinstance(ts, int) else ""
    if r.get("kind") == "cmd":
        status = r.get("status_name") or ("dropped" if r.get("status") is None else str(r.get("status")))
        cls = ' class="failed"' if r.get("status") or r.get("status") is None or r.get("fault") else ""
        cells = [when, "cmd", op_label(r), str(r.get("op_mod", "")), status,
                 str(r.get("fault") or r.get("detail") or "")]
    else:
        cls = ' class="note"'
        cells = [when, str(r.get("kind", "")), "", "", "", str(r.get("detail", ""))]
    return f"<tr{cls}>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"


def _traces(data: ReportData, bug: Bug) -> str:
    tails = data.trace_tail(bug)
    if not tails:
        return '<p class="muted">No device trace in the first run folder.</p>'
    parts = []
    for fn, records in tails.items():
        stamps = [r["ts_ns"] for r in records if isinstance(r.get("ts_ns"), int)]
        t_end = max(stamps, default=0)
        rows = "".join(_trace_row(r, t_end) for r in records)
        parts.append(f'<h4>{escape(fn)}: the last {len(records)} records</h4>'
                     f'<table class="trace" data-function="{escape(fn)}"><tr><th>time to last</th><th>kind</th>'
                     f"<th>op</th><th>op_mod</th><th>status</th><th>fault / detail</th></tr>{rows}</table>")
    return "".join(parts)


def _bug_section(data: ReportData, bug: Bug) -> str:
    new = bug.signature in data.new
    badge = ' <span class="badge">new</span>' if new else ""
    r = bug.repro
    repro = (f"crashes {r.rate:.0%} of {r.tries} tries (confidence interval {r.ci[0]:.0%} to {r.ci[1]:.0%})"
             if r else no_repro_text(bug))
    program = data.reproducer(bug)
    label = "Reproducer"
    if program is None:
        program, label = data.first_program(bug), "First program that hit it"
    triage = data.triage(bug)
    verdict = (f'<p class="triage"><b>Triage</b> ({escape(triage.verdict_source)}): {escape(triage.verdict)}</p>'
               if triage is not None and triage.verdict else '<p class="muted">No triage yet.</p>')
    if triage is not None and triage.vmcore_skipped:
        verdict += f'<p class="muted">vmcore not read: {escape(triage.vmcore_skipped)}</p>'
    prog = f"<h4>{label}</h4><pre>{escape(program)}</pre>" if program is not None else ""
    return (f'<section class="bug{" new" if new else ""}" id="{escape(bug_anchor(bug))}" '
            f'data-signature="{escape(bug.signature)}" data-new="{str(new).lower()}">'
            f"<h3>{escape(bug.title)}{badge}</h3>"
            f"<table><tr><th>signature</th><td><code>{escape(bug.signature)}</code></td></tr>"
            f"<tr><th>kind</th><td>{escape(bug.kind)}</td></tr>"
            f"<tr><th>seen</th><td>{plural(bug.count, 'time')} by {plural(len(bug.programs), 'program')}</td></tr>"
            f"<tr><th>first / last seen</th><td>{iso(bug.first_seen)} / {iso(bug.last_seen)}</td></tr>"
            f"<tr><th>entered the driver at</th><td>{escape(entries_line(bug))}</td></tr>"
            f"<tr><th>reproducer</th><td>{escape(repro)}</td></tr>"
            f"<tr><th>evidence</th><td><code>{escape(data.dir.relative(bug.folder))}/</code></td></tr></table>"
            f"{verdict}{prog}<h4>Device commands around the crash</h4>{_traces(data, bug)}</section>")


def _bug_list(data: ReportData, bugs: list[Bug], empty: str) -> str:
    if not bugs:
        return f'<p class="muted">{empty}</p>'
    items = "".join(f'<li><a href="#{escape(bug_anchor(b))}">{escape(b.title)}</a> '
                    f'<span class="muted">({b.count}x, first {iso(b.first_seen)})</span></li>' for b in bugs)
    return f"<ul>{items}</ul>"


def render(data: ReportData, summary: dict[str, Any]) -> str:
    night, cov = summary["night"], summary["coverage"]
    new, known = data.new_bugs(), data.known_bugs()
    ends = [(e.ended, e.outcome) for e in data.executions]
    figures = [charts.coverage_chart(data.stats), charts.programs_chart(ends),
               charts.bugs_chart([(b.first_seen, b.title, b.signature in data.new) for b in data.bugs])]
    stats = (f"<table><tr><th>this night</th><td>{night['programs']} programs from {iso(data.night_start)}, "
             f"{night['rate_per_hour']} per hour</td></tr>"
             f"<tr><th>infrastructure failures</th><td>{night['infra']['count']} "
             f"({night['infra']['share']:.1%})</td></tr>"
             f"<tr><th>coverage</th><td>{cov['size']} keys (+{cov['night_growth']} this night), "
             f"corpus {plural(cov['corpus'], 'program')}</td></tr>"
             f"<tr><th>bugs</th><td>{len(data.bugs)}, {len(new)} new</td></tr>"
             f"<tr><th>exit status</th><td>{summary['exit_status']}</td></tr></table>")
    body = (f"<h1>mlx5lab fuzz report</h1><p class=\"muted\">{escape(str(data.dir.path))}, written "
            f"{iso(data.generated_at)}</p>{stats}<h2>Charts</h2>"
            + "".join(f'<figure class="chart">{svg}</figure>' for svg in figures)
            + f'<h2 id="new-bugs">New bugs</h2>{_bug_list(data, new, "No new bugs.")}'
            + "".join(_bug_section(data, b) for b in new)
            + f'<h2 id="known-bugs">Known bugs</h2>{_bug_list(data, known, "None.")}'
            + "".join(_bug_section(data, b) for b in known))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>mlx5lab fuzz report</title>'
            f"<style>{_CSS}</style></head><body>{body}</body></html>\n")

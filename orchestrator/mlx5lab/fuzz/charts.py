"""The charts of report.html, drawn with matplotlib as inline SVG.

matplotlib rather than plotly: an SVG of a few tens of kB per chart, inline in the page, needs no script
(plotly's offline page carries ~4 MB of JavaScript and draws nothing until it has run), shows in any
browser or mail client and in a headless ``--dump-dom`` as plain DOM elements, and text is drawn as glyph
paths, so the page looks the same on a machine without fonts. The report wants static charts of a night,
not interaction. The object API (:class:`~matplotlib.figure.Figure`, no pyplot) keeps no global state,
so a report can be drawn from any thread.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from datetime import UTC, datetime

import matplotlib
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..campaign.outcome import Outcome

SIZE = (7.5, 2.8)  # inches; 540 x 202 pt
HOUR = 3600.0
_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.S)
_ID = re.compile(r'\bid="([^"]+)"')
_ID_USE = re.compile(r'(\bid="|href="#|url\(#)([^")]+)')


def _when(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


def _figure() -> tuple[Figure, Axes]:
    fig = Figure(figsize=SIZE, layout="constrained")
    ax: Axes = fig.subplots()
    return fig, ax


def _dates(ax: Axes) -> None:
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def _empty(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def to_svg(fig: Figure, name: str, label: str) -> str:
    """The figure as an ``<svg>`` element to put inside HTML (no XML prologue, no metadata), tagged
    ``data-chart=name``.

    Every id of the SVG (matplotlib's ``figure_1``, glyphs, clip paths) and every reference to one gets the
    prefix ``name-``: the ids of two inline SVGs of one page never collide.
    """
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"mlx5lab-{name}", "svg.fonttype": "path"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    svg = _METADATA.sub("", svg[svg.index("<svg"):], count=1)  # RDF naming the creator: not for the page
    ids = set(_ID.findall(svg))
    svg = _ID_USE.sub(lambda m: m.group(1) + (f"{name}-" if m.group(2) in ids else "") + m.group(2), svg)
    return svg.replace("<svg", f'<svg data-chart="{name}" role="img" aria-label="{label}"', 1)


def coverage_chart(series: Sequence[tuple[float, int, int]]) -> str:
    """Coverage size over time; ``series`` holds (wall clock, programs run, coverage size)."""
    fig, ax = _figure()
    if series:
        ax.step([_when(t) for t, _, _ in series], [c for _, _, c in series], where="post", color="#1f77b4")
        ax.set_ylabel("coverage keys")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        _dates(ax)
    else:
        _empty(ax, "coverage")
    ax.set_title("Coverage growth")
    return to_svg(fig, "coverage", "coverage growth over time")


def programs_chart(executions: Sequence[tuple[float, Outcome]]) -> str:
    """Programs finished per hour, stacked by outcome; ``executions`` holds (end time, outcome)."""
    fig, ax = _figure()
    if executions:
        t0 = min(t for t, _ in executions) // HOUR * HOUR
        hours = int((max(t for t, _ in executions) - t0) // HOUR) + 1
        groups = {"clean": [Outcome.CLEAN], "crash": [Outcome.PANIC, Outcome.HANG], "infra": [Outcome.INFRA]}
        colors = {"clean": "#2ca02c", "crash": "#d62728", "infra": "#7f7f7f"}
        bottom = [0] * hours
        x = [_when(t0 + (h + 0.5) * HOUR) for h in range(hours)]
        for name, outcomes in groups.items():
            counts = [0] * hours
            for t, o in executions:
                if o in outcomes:
                    counts[int((t - t0) // HOUR)] += 1
            ax.bar(x, counts, width=0.8 / 24, bottom=bottom, label=name, color=colors[name])
            bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
        ax.set_ylabel("programs / hour")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="upper left", fontsize="small")
        ax.grid(alpha=0.3, axis="y")
        _dates(ax)
    else:
        _empty(ax, "programs")
    ax.set_title("Programs per hour")
    return to_svg(fig, "programs", "programs run per hour")


def bugs_chart(bugs: Sequence[tuple[float, str, bool]]) -> str:
    """Bugs found so far over time, each marked when first seen; ``bugs`` holds (first seen, title, new)."""
    fig, ax = _figure()
    if bugs:
        ordered = sorted(bugs)
        times = [_when(t) for t, _, _ in ordered]
        ax.step(times, range(1, len(ordered) + 1), where="post", color="#555555")
        first, last = ordered[0][0], ordered[-1][0]
        for i, (t, title, new) in enumerate(ordered, start=1):
            ax.plot([_when(t)], [i], "o", color="#d62728" if new else "#1f77b4")
            short = title if len(title) <= 48 else title[:45] + "..."
            right_half = last > first and t > (first + last) / 2  # label towards the middle: it stays inside
            ax.annotate(short, (_when(t), i), xytext=(-5 if right_half else 5, -3), textcoords="offset points",
                        ha="right" if right_half else "left", fontsize="x-small")
        ax.set_ylabel("bugs")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, len(ordered) + 1)
        ax.grid(alpha=0.3)
        _dates(ax)
    else:
        _empty(ax, "bugs")
    ax.set_title("Bugs, when first seen (red: new)")
    return to_svg(fig, "bugs", "when each bug was first seen")

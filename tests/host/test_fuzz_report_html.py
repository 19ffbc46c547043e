"""report.html rendered by a real headless Chromium (Debian's ``chromium``, installed by
scripts/setup-host.sh): the charts and the bug sections are in the DOM it builds, and a screenshot of the
page is not blank. The work folder is synthetic; no guest is booted."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mlx5lab.campaign.outcome import Outcome
from mlx5lab.fuzz.coverage import Coverage
from mlx5lab.fuzz.report import write_reports
from mlx5lab.fuzz.store import CrashStore, Execution, Finding, Journal, Stats, StatsSample
from mlx5lab.fuzz.workdir import FuzzDir, program_hash

if TYPE_CHECKING:
    from .conftest import Unavailable

T0 = 1_700_000_000.0
BUGS = {"aaaa000011112222": "general protection fault in dma_pool_alloc",
        "bbbb000011112222": "KASAN: use-after-free in mlx5_cmd_exec"}
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


@pytest.fixture(scope="module")
def chromium(unavailable: Unavailable) -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    unavailable("chromium is not installed (scripts/setup-host.sh installs it: apt-get install chromium)")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> FuzzDir:
    fd = FuzzDir(tmp_path_factory.mktemp("fuzz")).create()
    store, journal, stats, cov = CrashStore(fd, night_start=T0), Journal(fd), Stats(fd), Coverage()
    for i in range(30):
        program = f"# mlx5lab-program v1\nread speed &\nsleep {i}\npath unbind fn=1\nwait\n"
        run = fd.run(i, program_hash(program))
        run.card.path.mkdir(parents=True)
        run.console.write_text(f"console of {i}\n")
        t = T0 + i * 300.0
        run.card.trace(0).write_text("".join(
            json.dumps({"kind": "cmd", "function": "fn0", "op": op, "op_mod": 0, "status": 0, "status_name": "OK",
                        "ts_ns": int(t * 1e9) + k * 250_000}) + "\n"
            for k, op in enumerate(["ENABLE_HCA", "INIT_HCA", "DESTROY_EQ", "TEARDOWN_HCA"])))
        cov.add({("cmd", "up", f"OP{i % 12}", 0, "OK")})
        sig = list(BUGS)[i % 2] if i % 7 == 3 else ""
        outcome = Outcome.PANIC if sig else (Outcome.INFRA if i == 5 else Outcome.CLEAN)
        journal.append(Execution(i, program_hash(program), outcome, t, 60.0, run=f"runs/{run.path.name}",
                                 signature=sig, coverage=cov.size))
        stats.append(StatsSample(t=t + 60.0, programs=i + 1, coverage=cov.size))
        if sig:
            store.record(Finding(sig, BUGS[sig], "KASAN", program, run.path, t))
    cov.save(fd.coverage)
    write_reports(fd, T0)
    return fd


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.charts: list[str] = []
        self.bugs: list[str] = []
        self.svg_shapes = 0
        self._in_svg = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "svg":
            self._in_svg += 1
            if a.get("data-chart"):
                self.charts.append(str(a["data-chart"]))
        elif self._in_svg and tag in ("path", "use", "rect"):
            self.svg_shapes += 1
        if tag == "section" and "bug" in (a.get("class") or "").split():
            self.bugs.append(str(a.get("data-signature")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._in_svg -= 1


def _run(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False, stdin=subprocess.DEVNULL)


def test_dom_has_the_charts_and_the_bugs(chromium: str, report: FuzzDir, tmp_path: Path) -> None:
    out = _run(chromium, tmp_path / "profile", "--dump-dom", report.report_html.as_uri())
    assert out.returncode == 0, out.stderr[-2000:]
    dom = _Dom()
    dom.feed(out.stdout)
    assert dom.charts == ["coverage", "programs", "bugs"]
    assert dom.svg_shapes > 100  # axes, lines, bars and glyphs were parsed as SVG elements
    assert sorted(dom.bugs) == sorted(BUGS)
    for title in BUGS.values():
        assert title in out.stdout
    assert "DESTROY_EQ" in out.stdout  # the command sequence around each crash


def test_screenshot_is_not_blank(chromium: str, report: FuzzDir, tmp_path: Path) -> None:
    from PIL import Image  # matplotlib's own dependency

    png = tmp_path / "report.png"
    out = _run(chromium, tmp_path / "profile", f"--screenshot={png}", "--window-size=1200,1600",
               report.report_html.as_uri())
    assert out.returncode == 0 and png.is_file(), out.stderr[-2000:]
    with Image.open(png) as img:
        rgb = img.convert("RGB")
        assert rgb.size == (1200, 1600)
        raw = rgb.tobytes()
    pixels = [tuple(raw[i:i + 3]) for i in range(0, len(raw), 3)]
    ink = sum(1 for p in pixels if min(p) < 200)
    blue = sum(1 for r, g, b in pixels if b > 150 and r < 90 and g < 150)  # the coverage line, #1f77b4
    assert ink > 0.01 * len(pixels), f"only {ink} non-white pixels"
    assert blue > 50, f"only {blue} pixels of the coverage chart's colour"

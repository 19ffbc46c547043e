"""The fuzz reports on a synthetic work folder: summary.json, report.md, junit.xml, report.html (its
content; tests/host/test_fuzz_report_html.py renders it in a browser) and the exit status."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from mlx5lab.campaign.outcome import Outcome
from mlx5lab.fuzz.coverage import Coverage
from mlx5lab.fuzz.report import collect, exit_status, markdown, summary, write_reports
from mlx5lab.fuzz.store import (
    Corpus,
    CrashStore,
    Execution,
    Finding,
    Journal,
    Night,
    Nights,
    Stats,
    StatsSample,
)
from mlx5lab.fuzz.workdir import FuzzDir, program_hash
from mlx5lab.rundir import atomic_write_json

KNOWN, NEW = "aaaa000011112222", "bbbb000011112222"
PROG_A = "# mlx5lab-program v1\nread speed &\npath unbind fn=1\nwait\n"
PROG_B = "# mlx5lab-program v1\ndevice fw_fatal synd=1 &\npath reload fn=0\nwait\n"
NIGHT1, NIGHT2 = 10_000.0, 100_000.0


def build(root: Path, *, infra: int = 1, programs: int = 10, new_bug: bool = True) -> FuzzDir:
    """Night 1 found KNOWN; night 2 (running, from NIGHT2) ran ``programs`` programs, ``infra`` of them
    infrastructure failures, found KNOWN again and, if ``new_bug``, NEW."""
    fd = FuzzDir(root).create()
    journal, stats, cov = Journal(fd), Stats(fd), Coverage()
    store = CrashStore(fd, night_start=NIGHT1)

    def execute(i: int, t: float, program: str, outcome: Outcome, sig: str = "", title: str = "") -> None:
        run = fd.run(i, program_hash(program))
        run.path.mkdir(parents=True)
        run.card.path.mkdir()
        run.console.write_text(f"console {i}\n")
        for fn in range(2):
            records = [{"kind": "cmd", "function": f"fn{fn}", "op": "ACCESS_REG", "reg": "PTYS", "op_mod": 0,
                        "status": 0, "status_name": "OK", "ts_ns": int(t * 1e9) + k * 1000}
                       for k in range(50)]
            records.append({"kind": "info", "function": f"fn{fn}", "detail": "halted: <fatal>",
                            "ts_ns": int(t * 1e9) + 60_000})
            run.card.trace(fn).write_text("".join(json.dumps(r) + "\n" for r in records))
        new = cov.add({("cmd", "up", f"OP{i}", 0, "OK")} if i % 2 == 0 else set())
        journal.append(Execution(i, program_hash(program), outcome, t, 30.0, run=f"runs/{run.path.name}",
                                 signature=sig, title=title, new_coverage=len(new), coverage=cov.size))
        stats.append(StatsSample(t=t + 30.0, programs=i + 1, coverage=cov.size))
        if sig:
            run.oops.write_text(f"oops {i}\n")
            store.record(Finding(sig, title, "general protection fault", program, run.path, t))

    execute(0, NIGHT1 + 100, PROG_A, Outcome.PANIC, KNOWN, "general protection fault in dma_pool_alloc")
    Nights(fd).append(Night(start=NIGHT1, end=NIGHT1 + 3600, seed=1, programs=1, new_bugs=[KNOWN]))
    store.set_repro(KNOWN, PROG_A, 0.7, (0.4, 0.9), 10)
    atomic_write_json(fd.run_path(store.get(KNOWN).runs[0]) / "triage.json",  # type: ignore[union-attr]
                      {"folder": "x", "verdict": "use after free of the command pool", "verdict_source": "vmcore"})
    store.night_start = NIGHT2
    for k in range(programs):
        i = k + 1
        t = NIGHT2 + k * 360.0  # 10 per hour
        if k < infra:
            execute(i, t, PROG_A + f"sleep {k}\n", Outcome.INFRA)
        elif k == infra and new_bug:
            execute(i, t, PROG_B, Outcome.PANIC, NEW, "KASAN: use-after-free in mlx5_cmd_exec")
        elif k == infra + 1:
            execute(i, t, PROG_A, Outcome.PANIC, KNOWN, "general protection fault in dma_pool_alloc")
        else:
            execute(i, t, PROG_A + f"sleep {k}\n", Outcome.CLEAN)
    cov.save(fd.coverage)
    Corpus(fd).add(PROG_A, [("cmd", "up", "OP0", 0, "OK")], "generate", when=NIGHT1)
    return fd


def test_summary(tmp_path: Path) -> None:
    fd = build(tmp_path / "w")
    s = summary(collect(fd, NIGHT2, now=NIGHT2 + 4000))
    night = s["night"]
    assert night["programs"] == 10 and night["outcomes"] == {"clean": 7, "panic": 2, "hang": 0, "report": 0,
                                                             "infra": 1}
    assert night["new_since"] == NIGHT1 + 3600
    assert night["rate_per_hour"] == pytest.approx(10 / ((9 * 360 + 30) / 3600), rel=1e-3)
    assert night["infra"] == {"count": 1, "share": 0.1, "threshold": 0.05, "exceeded": True}
    assert s["total"]["programs"] == 11
    assert s["coverage"]["size"] == 6 and s["coverage"]["corpus"] == 1
    assert s["coverage"]["night_growth"] == 5
    assert s["coverage"]["growth"][-1] == [NIGHT2 + 9 * 360 + 30, 11, 6]
    assert s["new_bugs"] == [NEW]
    bugs = {b["signature"]: b for b in s["bugs"]}
    assert [b["signature"] for b in s["bugs"]] == [NEW, KNOWN]  # new first
    assert bugs[KNOWN]["count"] == 2 and not bugs[KNOWN]["new"]
    assert bugs[KNOWN]["repro"] == {"program": program_hash(PROG_A), "rate": 0.7, "ci": [0.4, 0.9], "tries": 10}
    assert bugs[NEW]["new"] and bugs[NEW]["repro"] is None and bugs[NEW]["title"].startswith("KASAN")
    assert bugs[KNOWN]["first_seen"] == NIGHT1 + 100 and bugs[KNOWN]["last_seen"] == NIGHT2 + 2 * 360
    assert s["exit_status"] == 1


def test_markdown_lists_new_bugs_first(tmp_path: Path) -> None:
    fd = build(tmp_path / "w")
    md = markdown(collect(fd, NIGHT2))
    new_at, known_at = md.index("## New bugs"), md.index("## Known bugs")
    assert new_at < md.index("KASAN: use-after-free in mlx5_cmd_exec") < known_at
    assert known_at < md.index("### general protection fault in dma_pool_alloc")
    assert f"`{KNOWN}`" in md and f"`{NEW}`" in md
    assert "crashes 70% of 10 tries" in md
    assert "triage (vmcore): use after free of the command pool" in md
    assert PROG_A.splitlines()[1] in md and "fw_fatal synd=1" in md  # reproducer, first program
    assert "seen 2 times" in md


def test_junit(tmp_path: Path) -> None:
    fd = build(tmp_path / "w")
    write_reports(fd, NIGHT2, html=False)
    suite = ET.parse(fd.junit).getroot()
    cases = {c.get("name"): c for c in suite}
    assert suite.get("tests") == "3" and suite.get("failures") == "1" and suite.get("errors") == "1"
    new = cases[f"KASAN: use-after-free in mlx5_cmd_exec [{NEW}]"]
    assert new.find("failure") is not None
    known = cases[f"general protection fault in dma_pool_alloc [{KNOWN}]"]
    assert known.find("failure") is None and "known bug" in (known.findtext("system-out") or "")
    assert cases["infrastructure"].find("error") is not None
    assert json.loads(fd.summary.read_text())["exit_status"] == 1
    assert fd.report_md.is_file() and not fd.report_html.exists()


def test_infrastructure_under_the_threshold_is_no_error(tmp_path: Path) -> None:
    fd = build(tmp_path / "w", infra=1, programs=40, new_bug=False)
    s = write_reports(fd, NIGHT2, html=False)
    assert s["night"]["infra"]["share"] == 0.025 and not s["night"]["infra"]["exceeded"]
    suite = ET.parse(fd.junit).getroot()
    assert suite.get("errors") == "0" and suite.get("failures") == "0"
    assert exit_status(s) == 0
    assert "No new bugs." in fd.report_md.read_text()


def test_exit_statuses(tmp_path: Path) -> None:
    assert exit_status(write_reports(build(tmp_path / "a"), NIGHT2, html=False)) == 1  # new bug beats infra
    assert exit_status(write_reports(build(tmp_path / "b", infra=3, new_bug=False), NIGHT2, html=False)) == 3
    assert exit_status(write_reports(build(tmp_path / "c", infra=0, new_bug=False), NIGHT2, html=False)) == 0
    assert exit_status({"new_bugs": [], "night": {"infra": {"exceeded": False}}}) == 0
    assert exit_status({"new_bugs": ["x"], "night": {"infra": {"exceeded": True}}}) == 1
    assert exit_status({"new_bugs": [], "night": {"infra": {"exceeded": True}}}) == 3


def test_after_the_night_the_default_is_the_last_finished_night(tmp_path: Path) -> None:
    fd = build(tmp_path / "w")
    Nights(fd).append(Night(start=NIGHT2, end=NIGHT2 + 3600, seed=2, programs=10, new_bugs=[NEW]))
    s = summary(collect(fd))
    assert s["night"]["start"] == NIGHT2 and s["new_bugs"] == [NEW]


def test_empty_work_folder(tmp_path: Path) -> None:
    fd = FuzzDir(tmp_path / "empty").create()
    s = write_reports(fd)
    assert s["night"]["programs"] == 0 and s["bugs"] == [] and s["exit_status"] == 0
    assert "No new bugs." in fd.report_md.read_text()
    assert 'data-chart="coverage"' in fd.report_html.read_text()


def test_html_content(tmp_path: Path) -> None:
    fd = build(tmp_path / "w")
    write_reports(fd, NIGHT2)
    page = fd.report_html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http://" not in page.split("<svg")[0]
    for chart in ("coverage", "programs", "bugs"):
        assert f'data-chart="{chart}"' in page
    assert page.index(f'id="bug-{NEW}"') < page.index(f'id="bug-{KNOWN}"')
    assert 'data-new="true"' in page
    assert "use after free of the command pool" in page
    assert page.count('class="trace"') == 4  # two functions for each bug
    assert page.count("ACCESS_REG/PTYS") == 4 * 39  # the last 40 records: 39 commands and the halt
    assert "halted: &lt;fatal&gt;" in page  # escaped


def test_html_ids_are_unique_and_resolve(tmp_path: Path) -> None:
    import re

    fd = build(tmp_path / "w")
    write_reports(fd, NIGHT2)
    page = fd.report_html.read_text()
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    refs = set(re.findall(r'(?:href="#|url\(#)([^")]+)', page))
    assert refs and refs <= set(ids)
    assert "<metadata>" not in page

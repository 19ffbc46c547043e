"""Triage of an iteration folder (or a whole campaign): triage.json and triage.md next to the evidence.

The console part always runs. The vmcore part runs when the folder has a vmcore and the kernel's debug info
is cached (or ``fetch_debuginfo=True``); otherwise the report says why it was skipped and how to get it.
Nothing here keeps state between calls, so :func:`triage_iteration` can run in a thread beside a campaign.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import Mlx5LabError
from ..crash import CrashReport, OopsSignature, crash_report
from ..rundir import CampaignDir, RunDir, atomic_write, atomic_write_json, read_json, read_text
from .debuginfo import debug_files, find_debuginfo, package_name
from .debuginfo import fetch_debuginfo as _fetch
from .markdown import render_markdown
from .result import TriageResult
from .verdict import console_verdict

_BANNER = re.compile(r"Linux version (\S+)")
_OOPS_RELEASE = re.compile(r"CPU: \d+ PID: \d+ Comm: .*? (?:Not tainted|Tainted: [A-Z ]*?) (\S+) #")

Progress = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


def console_crash(folder: Path) -> tuple[CrashReport | None, str | None]:
    """(crash report, where it came from): from oops.txt if it holds a report, else from console.log.

    Both go through :func:`mlx5lab.crash.crash_report`, as the campaign did when it kept the evidence, so an
    iteration's title here is the one in its result.json.
    """
    run = RunDir(folder)
    for path in (run.oops, run.console):
        if path.is_file():
            report = crash_report(path.read_text(errors="replace"))
            if report is not None:
                return report, path.name
    return None, None


def kernel_release(folder: Path, identity: dict[str, Any], oops: str | None) -> str | None:
    """From result.json's identity, else the console's boot banner, else the oops's CPU/PID line."""
    if identity.get("kernel_release"):
        return str(identity["kernel_release"])
    banners = _BANNER.findall(read_text(RunDir(folder).console))
    if banners:
        return banners[-1]
    m = _OOPS_RELEASE.search(oops or "")
    return m.group(1) if m else None


def _vmcore_part(folder: Path, vmcore: Path, release: str | None, identity: dict[str, Any],
                 sig: OopsSignature | None, fetch: bool, progress: Progress) -> tuple[dict[str, Any] | None, str]:
    """(vmcore findings, why skipped): exactly one of them is meaningful."""
    if release is None:
        return None, "the kernel release is unknown (no result.json identity and no boot banner in console.log)"
    info = find_debuginfo(release)
    if info is None and fetch:
        info = _fetch(release, progress=progress)
    if info is None:
        return None, (f"the debug info for {release} is not cached; get it once with "
                      f"`mlx5lab triage --fetch-debuginfo {folder}` (downloads {package_name(release)}, ~860 MB, "
                      "and keeps ~750 MB of it; about a minute)")
    files, warnings = debug_files(info, identity)
    from .vmcore import triage_vmcore  # drgn is imported only when a vmcore is triaged

    result = triage_vmcore(vmcore, files, sig)
    result["warnings"] = warnings + result.get("warnings", [])
    result["debug_files"] = [str(p) for p in files]
    return result, ""


def triage_iteration(folder: Path, *, vmcore: bool = True, fetch_debuginfo: bool = False,
                     progress: Progress = _quiet, write: bool = True) -> TriageResult:
    """Triage one iteration folder; write triage.json and triage.md there (unless ``write`` is False).

    Never raises for a bad vmcore or missing debug info: those end up in the report. Safe to run in a
    background thread while the next iteration runs (its own drgn Program, no globals).
    """
    run = RunDir(Path(folder))
    t0 = time.monotonic()
    result_json = read_json(run.result)
    identity = result_json.get("identity") or {}
    report, source = console_crash(run.path)
    sig = report.detail if report else None
    t_console = time.monotonic() - t0
    release = kernel_release(run.path, identity, report.oops if report else None)
    out = TriageResult(
        folder=run.path, iteration=result_json.get("iteration"), outcome=result_json.get("outcome"),
        identity={"kernel_release": release, "package_version": identity.get("package_version"),
                  "variant": identity.get("variant")},
        title=report.title if report else None, kind=report.kind_text if report else None,
        signature=report.signature if report else None, console_source=source,
        console=sig.to_json() if sig else None)
    vmcore_path = run.find_vmcore()
    t1 = time.monotonic()
    if vmcore_path is None:
        out.vmcore_skipped = "no vmcore in this folder"
    elif not vmcore:
        out.vmcore_skipped = "vmcore triage was turned off (--no-vmcore)"
    else:
        try:
            out.vmcore, skipped = _vmcore_part(run.path, vmcore_path, release, identity, sig, fetch_debuginfo,
                                               progress)
            out.vmcore_skipped = skipped or None
        except Mlx5LabError as exc:
            out.vmcore_skipped = f"vmcore triage failed: {exc}"
        except Exception as exc:  # noqa: BLE001 - a campaign's background triage must never die on one dump
            out.vmcore_skipped = f"vmcore triage failed: {type(exc).__name__}: {exc}"
    if out.vmcore and out.console is None and out.vmcore.get("log_signature"):
        log_sig = out.vmcore["log_signature"]
        out.console, out.console_source = log_sig, "the vmcore's printk log (not on the serial console)"
        out.title, out.kind, out.signature = log_sig["title"], log_sig["kind"], log_sig["signature"]
    if out.vmcore:
        out.verdict, out.verdict_source = out.vmcore["verdict"], "vmcore"
        if not out.kind:
            out.kind = out.title = out.vmcore["kind"]
    else:
        out.verdict, out.verdict_source = console_verdict(sig), "console"
    out.timings = {"console_s": round(t_console, 3), "vmcore_s": round(time.monotonic() - t1, 3),
                   "total_s": round(time.monotonic() - t0, 3)}
    if write:
        data = out.to_json()
        atomic_write_json(run.triage_json, data)
        atomic_write(run.triage_md, render_markdown(data))
    return out


def is_crash_folder(folder: Path) -> bool:
    """An iteration folder with something to triage: a vmcore, or a crash report in its oops.txt or console.log."""
    if RunDir(folder).find_vmcore() is not None:
        return True
    report, _ = console_crash(folder)
    return report is not None


def crash_folders(path: Path) -> list[Path]:
    """``path`` itself if it is an iteration folder, else its iter-*/ folders with a crash."""
    path = Path(path)
    if not path.is_dir():
        raise Mlx5LabError(f"{path} is not a folder")
    iters = [d.path for d in CampaignDir(path).iterations()]
    if not iters:
        if is_crash_folder(path):
            return [path]
        raise Mlx5LabError(f"{path} holds no crash to triage (no vmcore, oops.txt or crash in console.log) "
                           "and no iter-*/ folders")
    return [p for p in iters if is_crash_folder(p)]


def group_by_signature(results: list[TriageResult]) -> list[dict[str, Any]]:
    """One entry per crash signature, most frequent first, for a campaign's overview."""
    groups: dict[str, dict[str, Any]] = {}
    for r in results:
        key = r.signature or "none"
        g = groups.setdefault(key, {"signature": key, "title": r.title, "count": 0, "iterations": [],
                                    "verdict": r.verdict})
        g["count"] += 1
        g["iterations"].append(r.folder.name)
    return sorted(groups.values(), key=lambda g: -g["count"])


def triage_path(path: Path, *, vmcore: bool = True, fetch_debuginfo: bool = False,
                progress: Progress = _quiet) -> list[TriageResult]:
    """Triage one iteration folder or every crashed iteration of a campaign folder.

    For a campaign, also writes ``triage-summary.json`` (crashes grouped by signature) in its folder.
    """
    path = Path(path)
    folders = crash_folders(path)
    results = []
    for folder in folders:
        progress(f"triage {folder}")
        results.append(triage_iteration(folder, vmcore=vmcore, fetch_debuginfo=fetch_debuginfo,
                                        progress=progress))
    if folders and folders != [path]:
        atomic_write_json(CampaignDir(path).triage_summary, {"campaign": str(path), "crashes": len(results),
                                                             "groups": group_by_signature(results)})
    return results

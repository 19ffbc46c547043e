"""Evidence kept for an iteration that crashed or hung: vmcore, oops, console, device state, identity.

Scenarios call :func:`keep_crash` once they have decided a panic or a hang; the crash report is cut and
titled by ``mlx5lab.crash.crash_report`` (through ``Machine.crash_after_event``), the function triage
uses too, so a campaign and ``mlx5lab triage`` give one console the same title.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from mlx5image.build import GuestImage

from .. import Mlx5LabError
from ..rundir import RunDir, atomic_write
from ..vm.machine import Machine
from .outcome import IterationResult

log = logging.getLogger("mlx5lab.evidence")


def dump_vmcore(m: Machine, path: Path, timeout: float = 120.0) -> float:
    """Save guest memory in kdump-zlib format (drgn opens it with vmcoreinfo); return seconds taken.

    Needs the guest's ``-device vmcoreinfo`` and its ``qemu_fw_cfg`` module, both always present.
    """
    assert m.qmp is not None
    t0 = time.monotonic()
    path.unlink(missing_ok=True)
    m.qmp.execute("dump-guest-memory", {"paging": False, "protocol": f"file:{path}", "format": "kdump-zlib"},
                  timeout=timeout)
    os.chmod(path, 0o644)  # QEMU creates dumps 0400
    return time.monotonic() - t0


def kernel_identity(image: GuestImage) -> dict[str, Any]:
    ident: dict[str, Any] = {
        "kernel_release": image.kernel_release,
        "package_version": image.package_version,
        "variant": image.variant,
        "image_manifest": str(image.manifest),
    }
    if image.variant_manifest is not None:
        ident["variant_manifest"] = json.loads(image.variant_manifest.read_text())
    return ident


def keep_crash(m: Machine, run: RunDir, result: IterationResult, no_report_title: str) -> None:
    """Title the crash from the console, save oops.txt, write result.json, then dump the vmcore.

    ``no_report_title`` is the title when the console holds no crash report (an NMI's panic text may never
    reach the serial console; triage then reads the kernel log in the vmcore). The decided outcome is on
    disk before the slowest step, the dump; a failed dump is said in ``detail`` and loses nothing else.
    """
    report = m.crash_after_event(wait_s=0.1)
    result.title = report.title if report else no_report_title
    result.signature = report.signature if report else ""
    atomic_write(run.oops, report.oops if report else "")
    result.files["oops"] = run.OOPS
    result.write(run)
    try:
        result.timings["vmcore_dump_s"] = round(dump_vmcore(m, run.vmcore), 3)
        result.files["vmcore"] = run.VMCORE
    except Exception as exc:  # keep the iteration's other evidence; say why the dump is missing
        result.detail = (result.detail + f"; vmcore dump failed: {exc!r}").lstrip("; ")


def device_status(m: Machine) -> list[dict[str, Any]]:
    """Each function's state as the device server sees it; never raises (the verdict matters more)."""
    if m.card is None or not m.card.alive():
        return []
    try:
        return [{k: s.get(k) for k in ("function", "state", "mode", "commands_executed", "pending_slots")}
                for s in m.card.control.status()]
    except (Mlx5LabError, OSError, ValueError) as exc:
        return [{"error": f"{type(exc).__name__}: {exc}"}]

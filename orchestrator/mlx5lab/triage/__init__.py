"""Crash triage: console signatures, debug info, drgn vmcore analysis, and the reports.

Modules, one job each: ``signature`` (oops text -> kind, task, frames, title, signature hash), ``debuginfo``
(the -dbg vmlinux and module .ko files), ``program`` / ``frames`` / ``tasks`` / ``pcidevs`` / ``mlx5objs`` /
``pools`` (drgn readers), ``verdict``, ``vmcore`` (runs the readers), ``report`` and ``markdown``
(triage.json, triage.md), ``background`` (a campaign's triage thread). drgn is imported only by the vmcore
side, so console triage works without it.
"""

from .report import triage_iteration, triage_path
from .signature import OopsSignature, parse_console, parse_oops

__all__ = ["OopsSignature", "parse_console", "parse_oops", "triage_iteration", "triage_path"]

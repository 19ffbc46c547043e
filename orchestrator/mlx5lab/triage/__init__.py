"""Crash triage: debug info, drgn vmcore analysis, and the reports.

The console side (crash kinds, the oops cutter, frames, titles, signature hashes) is :mod:`mlx5lab.crash`,
shared with the campaigns. Modules here, one job each: ``debuginfo`` (the -dbg vmlinux and module .ko
files), ``program`` / ``frames`` / ``tasks`` / ``pcidevs`` / ``mlx5objs`` / ``pools`` (drgn readers),
``verdict``, ``vmcore`` (runs the readers), ``report`` (the triage of a folder, a ``result.TriageResult``)
and ``markdown`` (triage.json, triage.md),
``background`` (a campaign's triage thread). drgn is imported only by the vmcore side, so console triage
works without it.
"""

from .report import triage_iteration, triage_path
from .result import TriageResult

__all__ = ["TriageResult", "triage_iteration", "triage_path"]

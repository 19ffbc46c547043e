"""Kernel crash reports from console text, in the style of syzkaller's ``pkg/report``.

``kinds`` (the crash kinds and the one table of opening lines, title rules and stack rules), ``cut``
(the last crash of a console log), ``signature`` (oops text -> kind, task, frames, title, signature hash)
and ``report`` (:func:`crash_report`, the one call from console text to a report that campaigns and triage
share). Nothing here needs drgn or a guest.
"""

from .cut import extract_oops
from .kinds import TABLE, CrashKind, Rule, kind_from_stack
from .report import CrashReport, crash_report
from .signature import Frame, OopsSignature, is_generic, normalize_function, parse_console, parse_oops, strip_timestamp

__all__ = ["TABLE", "CrashKind", "CrashReport", "Frame", "OopsSignature", "Rule", "crash_report", "extract_oops",
           "is_generic", "kind_from_stack", "normalize_function", "parse_console", "parse_oops", "strip_timestamp"]

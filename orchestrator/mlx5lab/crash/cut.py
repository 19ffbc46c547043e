"""Cutting the last crash out of a serial console log (or a printk buffer), by the table's opening lines."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .kinds import TABLE, Rule, match_line, strip_timestamp

# A boot banner (init/version.c: linux_banner) means an earlier boot's report is over.
_BOOT_BANNER = re.compile(r"Linux version \d")
# Report openers further apart than this belong to different crashes.
RUN_GAP = 200
# include/asm-generic/bug.h: CUT_HERE, printed by __warn_printk before a WARN()'s message, which comes before
# the "WARNING:" line the table opens at; the cut starts there to keep the message.
_CUT_HERE = "------------[ cut here ]------------"
_CUT_HERE_BEFORE = 2  # lines between the marker and the opening line: the WARN's one-line message


def extract_oops(text: str, table: Sequence[Rule] = TABLE) -> str | None:
    """The text of the last crash in ``text``, from its first report line to the end; None if no crash.

    The crash ends at the last "Kernel panic - not syncing" line (or, with none, at the last report); it
    starts at the earliest opening line of the run of openers before that end, each within
    :data:`RUN_GAP` lines of the next, so a WARNING or the first of several hung tasks just before a panic
    is kept as its context (and a "cut here" marker just before that line, so a WARN()'s message is kept
    too). With ``-action panic=pause`` the guest stops inside the panic notifiers, so the
    log ends after the panic line and its call trace; there is no end-of-panic marker to wait for.
    """
    lines = text.splitlines()
    last_boot = max((i for i, line in enumerate(lines) if _BOOT_BANNER.search(line)), default=0)
    lines = lines[last_boot:]
    starts: list[tuple[int, Rule]] = []
    for i, line in enumerate(lines):
        hit = match_line(strip_timestamp(line), table)
        if hit is not None:
            starts.append((i, hit[0]))
    if not starts:
        return None
    panics = [i for i, rule in starts if rule.panic]
    end = panics[-1] if panics else starts[-1][0]
    before = [i for i, _ in starts if i <= end]
    begin = before[-1]
    for i in reversed(before[:-1]):
        if begin - i > RUN_GAP:
            break
        begin = i
    for i in range(begin - 1, max(begin - 1 - _CUT_HERE_BEFORE, -1), -1):
        if strip_timestamp(lines[i]) == _CUT_HERE:
            begin = i
            break
    return "\n".join(lines[begin:]).strip() + "\n"

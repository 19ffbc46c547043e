"""Reading the guest's serial console log: boot markers and the oops text of a crash."""

from __future__ import annotations

import re

INIT_MARKER = "MLX5LAB-INIT"
SSH_MARKER = "SSH-READY"
PORTS_MARKER = "MLX5LAB-PORTS"  # the mlx5 interfaces are up

# Lines that open a kernel crash report. The earliest of them before the final "Kernel panic" line is
# where the oops text starts.
_OOPS_START = re.compile(
    r"(sysrq: Trigger a crash"
    r"|BUG: "
    r"|kernel BUG at "
    r"|Oops: "
    r"|general protection fault"
    r"|WARNING: CPU: "
    r"|Unable to handle kernel"
    r"|watchdog: BUG: soft lockup"
    r"|INFO: task .* blocked for more than"
    r"|Uhhuh\. NMI received"
    r"|Kernel panic - not syncing)"
)
_PANIC_LINE = re.compile(r"Kernel panic - not syncing")
# A crash report is one run of lines; a boot banner means an earlier boot's report is over.
_BOOT_BANNER = re.compile(r"Linux version \d")


def count_markers(text: str, marker: str) -> int:
    return sum(1 for line in text.splitlines() if line.startswith(marker) or f" {marker}" in line)


def extract_oops(text: str) -> str | None:
    """The text of the last crash in ``text``, from its first report line to the end; None if no crash.

    With ``-action panic=pause`` the guest stops inside the panic notifiers, so the log ends after the
    "Kernel panic - not syncing" line and its call trace; there is no end-of-panic marker to wait for.
    """
    lines = text.splitlines()
    last_boot = max((i for i, line in enumerate(lines) if _BOOT_BANNER.search(line)), default=0)
    lines = lines[last_boot:]
    panic_idx = max((i for i, line in enumerate(lines) if _PANIC_LINE.search(line)), default=None)
    starts = [i for i, line in enumerate(lines) if _OOPS_START.search(line)]
    if not starts:
        return None
    if panic_idx is None:
        begin = starts[-1]
    else:
        # Walk back from the panic line through the report lines that belong to the same crash.
        before = [i for i in starts if i <= panic_idx]
        begin = before[0] if before else panic_idx
        # Keep only the last contiguous crash: drop report starts separated by a long quiet stretch.
        for i in reversed(before):
            begin = i
            earlier = [j for j in before if j < i]
            if not earlier or i - earlier[-1] > 200:
                break
    return "\n".join(lines[begin:]).strip() + "\n"


def oops_title(oops: str) -> str:
    """A one-line title: the first report line without its timestamp."""
    for line in oops.splitlines():
        if _OOPS_START.search(line):
            return re.sub(r"^\[\s*\d+\.\d+\]\s*", "", line).strip()
    return oops.splitlines()[0].strip() if oops else ""

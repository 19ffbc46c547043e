"""From console text to one crash report: the single path a campaign and ``mlx5lab triage`` both take."""

from __future__ import annotations

from dataclasses import dataclass

from .cut import extract_oops
from .kinds import CrashKind
from .signature import OopsSignature, parse_oops


@dataclass(frozen=True)
class CrashReport:
    """The last crash of a console log: its text, kind, title and signature, and the parsed details."""

    oops: str  # the cut text, what a campaign keeps as oops.txt
    kind: CrashKind
    kind_text: str  # e.g. "KASAN: use-after-free"; equals kind.value for kinds without a variable part
    title: str  # e.g. "general protection fault in dma_pool_alloc"
    signature: str  # groups the same crash across iterations, boots and campaigns
    is_panic: bool  # a "Kernel panic - not syncing" line ends it (a lone WARNING does not)
    detail: OopsSignature

    @property
    def first_line(self) -> str:
        """The crash's opening line without its timestamp, e.g. "sysrq: Trigger a crash"."""
        return self.detail.first_line


def crash_report(text: str) -> CrashReport | None:
    """The last crash in ``text`` (a whole console log, a printk buffer or an oops text); None if none."""
    oops = extract_oops(text)
    if oops is None:
        return None
    sig = parse_oops(oops)
    if sig is None:
        return None
    return CrashReport(oops=oops, kind=sig.crash_kind, kind_text=sig.kind, title=sig.title,
                       signature=sig.signature, is_panic=sig.is_panic, detail=sig)

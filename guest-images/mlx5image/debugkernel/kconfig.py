"""The debug kernel's configuration as data: wanted symbols -> a config fragment, and the check that a
resulting ``.config`` kept every one of them (``make olddefconfig`` silently drops a symbol whose
dependencies are not met, scripts/kconfig/conf.c)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Want:
    """One symbol (without ``CONFIG_``) and its value: ``y``, ``m``, ``n`` or a literal (``"..."``, 42)."""

    symbol: str
    value: str
    why: str


@dataclass(frozen=True)
class Mismatch:
    """A wanted symbol the resulting configuration does not have; ``got`` is None when it is absent."""

    symbol: str
    wanted: str
    got: str | None

    def __str__(self) -> str:
        return f"CONFIG_{self.symbol}: wanted {self.wanted}, got {self.got or 'nothing (not offered)'}"


_SET = re.compile(r"^CONFIG_([A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# CONFIG_([A-Za-z0-9_]+) is not set$")
_SYMBOL = re.compile(r"^[A-Z0-9_]+$")


def line(want: Want) -> str:
    """The fragment line of one symbol: ``n`` is written the way kconfig writes it."""
    if not _SYMBOL.match(want.symbol):
        raise ValueError(f"not a Kconfig symbol name: {want.symbol!r}")
    if want.value == "n":
        return f"# CONFIG_{want.symbol} is not set"
    if not want.value:
        raise ValueError(f"CONFIG_{want.symbol} has an empty value")
    return f"CONFIG_{want.symbol}={want.value}"


def fragment(wants: Iterable[Want]) -> str:
    """The config fragment, one line per symbol in the given order; a symbol named twice is an error."""
    seen: set[str] = set()
    out = []
    for w in wants:
        if w.symbol in seen:
            raise ValueError(f"CONFIG_{w.symbol} is wanted twice")
        seen.add(w.symbol)
        out.append(line(w))
    return "\n".join(out) + "\n"


def fragment_digest(text: str) -> str:
    """16 hex digits naming a fragment (part of the build's cache key)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_config(text: str) -> dict[str, str]:
    """``.config`` text -> {symbol: value}; ``# CONFIG_X is not set`` reads as ``n``."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        s = raw.strip()
        if m := _SET.match(s):
            values[m.group(1)] = m.group(2)
        elif m := _UNSET.match(s):
            values[m.group(1)] = "n"
    return values


def unstuck(wants: Iterable[Want], config: Mapping[str, str]) -> list[Mismatch]:
    """Every wanted symbol whose value in ``config`` differs. A wanted ``n`` is met by an absent symbol
    (kconfig does not write symbols whose menu is invisible)."""
    out = []
    for w in wants:
        got = config.get(w.symbol)
        if got == w.value or (w.value == "n" and got is None):
            continue
        out.append(Mismatch(w.symbol, w.value, got))
    return out

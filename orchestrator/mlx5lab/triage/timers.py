"""The timer a crash in the timer softirq was expiring: its callback, its module, and its list links.

A fault inside ``kernel/time/timer.c: expire_timers`` (``detach_timer`` unlinking the timer from the
expiry list) runs no driver code, so its stack names no driver; yet the timer it was handling belongs to
someone. Its callback (``timer_list.function``) names the owner, and poisoned links (``entry.next`` already
LIST_POISON2, set by ``detach_timer`` when the timer was last removed) say the wheel held a timer that had
been detached or re-initialised while it was pending.
"""

from __future__ import annotations

from typing import Any

import drgn

from .frames import frame_module
from .pools import LIST_POISON2

TIMER_FRAMES = ("detach_timer", "expire_timers", "call_timer_fn")


def expiring_timer(prog: drgn.Program, trace: drgn.StackTrace) -> dict[str, Any] | None:
    """The ``struct timer_list`` a timer-softirq frame of ``trace`` holds (None: no such frame, or its
    ``timer`` local is optimized out)."""
    for frame in trace:
        if frame.name not in TIMER_FRAMES:
            continue
        try:
            timer = frame["timer"]
        except KeyError:
            continue
        if timer.absent_:
            continue
        t = timer[0]
        fn = t.function.value_()
        try:
            name = prog.symbol(fn).name
        except LookupError:
            name = hex(fn)
        nxt = t.entry.next.value_()
        return {"address": hex(timer.value_()), "function": name, "module": frame_module(prog, fn),
                "frame": frame.name, "next": hex(nxt), "next_poisoned": nxt == LIST_POISON2}
    return None

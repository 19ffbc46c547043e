"""A program as the guest executor runs it (``/bin/mlx5lab-exec``), and the host's share of it.

Guest operations (readers and guest-side paths) become ``op IDX fg|bg 'SHELL'`` lines, the triggers alone:
no waiting for ports, no checks, since the fuzzer's oracle is what the kernel and the device report, not a
path's expected end state. Device operations (``device`` events and device-side paths) become
``dev IDX``: a console marker on which the host sends the control request(s) of :data:`HostAction`.
``IDX`` is the op's index in the program, so every record of the executor names its line.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from .ops import Vocabulary, control_request, full_args, vocabulary
from .program import Op, Program

DRIVER = "/sys/bus/pci/drivers/mlx5_core"


@dataclass(frozen=True)
class HostAction:
    """What the host does for one ``dev IDX`` marker: control requests, in order, then more after a delay."""

    requests: tuple[tuple[str, dict[str, Any]], ...]
    later_s: float = 0.0
    later: tuple[tuple[str, dict[str, Any]], ...] = ()


@dataclass
class Compiled:
    script: str
    actions: dict[int, HostAction] = field(default_factory=dict)
    ops: tuple[Op, ...] = ()

    def describe(self, idx: int) -> str:
        return self.ops[idx].text() if 0 <= idx < len(self.ops) else f"op {idx}"


def _fns(fn: str) -> str:
    """The shell word list of functions ``fn`` names (``both``: every function the guest sees)."""
    return "$(functions_of both)" if fn == "both" else shlex.quote(str(fn))


def _each(fn: str, body: str, order: str = "forward") -> str:
    fns = f"$(functions_of both | {'tac' if order == 'reverse' else 'cat'})" if fn == "both" else _fns(fn)
    return f"for f in {fns}; do {body}; done"


def _repeat(count: int, body: str) -> str:
    return body if count <= 1 else f"for _i in $(seq {count}); do {body}; done"


def guest_path_shell(name: str, a: dict[str, Any]) -> str:
    """The guest commands that trigger path ``name`` with arguments ``a`` (every argument present)."""
    fn, order = str(a.get("fn", "both")), a.get("order", "forward")
    unbind = _each(fn, f'echo $(bdf $f) > {DRIVER}/unbind', order)
    bind = _each(fn, f'echo $(bdf $f) > {DRIVER}/bind', a.get("bind_order", order)) + f"; sleep 1; up {fn}"
    if name == "unbind":
        return unbind
    if name == "bind":
        return bind
    if name == "unbind-bind":
        return _repeat(a["count"], f"{unbind}; {bind}")
    if name == "remove-rescan":
        remove = _each(fn, "echo 1 > /sys/bus/pci/devices/$(bdf $f)/remove", order)
        return _repeat(a["count"], f"{remove}; echo 1 > /sys/bus/pci/rescan; sleep 1; up {fn}")
    if name == "devlink-reload":
        limit = f" limit {a['limit']}" if a.get("limit") else ""
        reload = _each(fn, f"devlink dev reload pci/$(bdf $f) action {a['action']}{limit}", order)
        return _repeat(a["count"], f"{reload}; sleep 1; up {fn}")
    if name == "module-reload":
        return _repeat(a["count"], "rmmod mlx5_core; modprobe mlx5_core; sleep 1; up both")
    if name == "ethtool-channels":
        body = _each(fn, 'i=$(ifname $f); [ -n "$i" ] && { ethtool -L $i combined 1; '
                         'm=$(ethtool -l $i | awk \'/Combined/{print $2; exit}\'); ethtool -L $i combined $m; }')
        return _repeat(a["count"], body)
    if name == "ethtool-rings":
        sizes = [s for s in str(a["sizes"]).split(",") if s]
        steps = "; ".join('n=$(ethtool -g $i | awk \'/RX:/{print $2; exit}\'); ethtool -G $i rx $n tx $n'
                          if s == "max" else f"ethtool -G $i rx {int(s)} tx {int(s)}" for s in sizes)
        return _repeat(a["count"], _each(fn, f'i=$(ifname $f); [ -n "$i" ] && {{ {steps}; }}'))
    if name in ("stack-bond", "stack-vlan"):
        kind = name.split("-")[1]
        return _repeat(a["count"], f"mlx5lab-stack {kind} up; mlx5lab-stack {kind} down")
    if name in ("reboot", "poweroff"):
        return f"{name} -f" if a.get("force") else name
    if name == "flr":
        return _each(fn, "echo 1 > /sys/bus/pci/devices/$(bdf $f)/reset")
    raise ValueError(f"path {name!r} has no guest trigger in the fuzzer (mlx5lab.fuzz.compile)")


def device_path_action(name: str, a: dict[str, Any]) -> HostAction:
    """The control requests of device-side path ``name`` (the trigger alone, as ``paths/device.py`` sends)."""
    fn = a.get("fn", "both")
    function = {} if fn == "both" else {"function": int(fn)}
    if name == "fw-fatal":
        return HostAction((("fw_fatal", {"synd": a["synd"]}),))
    if name == "fw-dead":
        return HostAction((("fw_dead", {"seconds": a["seconds"]}),))
    if name == "health-counter-freeze":
        return HostAction((("freeze_health_counter", {"frozen": True}),), a["seconds"],
                          (("freeze_health_counter", {"frozen": False}),))
    if name == "sync-reset":
        return HostAction((("sync_reset", {}),))
    if name == "cmd-timeout":
        mode = {"hold": True} if a["mode"] == "hold" else {"drop": True}
        req = ("add_fault", {**function, "opcode": "ACCESS_REG", "register": "PTYS", "count": 1, **mode})
        later = (("release_held", function),) if a["mode"] == "hold" else ()
        return HostAction((req,), 10.0 if later else 0.0, later)
    if name == "link-flap":
        return HostAction((("flap_link", {**function, "down_ms": a["down_ms"]}),))
    if name == "speed-change":
        return HostAction((("set_speed", {**function, "mbps": a["mbps"]}),))
    raise ValueError(f"device path {name!r} has no control request in the fuzzer (mlx5lab.fuzz.compile)")


def read_shell(name: str, a: dict[str, Any]) -> str:
    return (f"mlx5lab-read {shlex.quote(name)} -t {int(a['threads'])} -d {float(a['duration']):g}"
            + (f" -i $(ifnames {shlex.quote(str(a['fn']))})" if a.get("fn", "both") != "both" else ""))


def compile_program(program: Program, vocab: Vocabulary | None = None) -> Compiled:
    vocab = vocab or vocabulary()
    lines = ["# compiled by mlx5lab.fuzz.compile"]
    actions: dict[int, HostAction] = {}
    for idx, op in enumerate(program.ops):
        mode = "bg" if op.background else "fg"
        if op.kind == "sleep":
            lines.append(f"pause {float(full_args(op, vocab).get('seconds', 0)):g}")
            continue
        if op.kind == "wait":
            lines.append("waitall")
            continue
        a = full_args(op, vocab)
        if op.kind == "read":
            lines.append(f"op {idx} {mode} {shlex.quote(read_shell(op.name, a))}")
        elif op.kind == "path" and vocab.spec("path", op.name).side == "guest":
            lines.append(f"op {idx} {mode} {shlex.quote(guest_path_shell(op.name, a))}")
        elif op.kind == "path":
            actions[idx] = device_path_action(op.name, a)
            lines.append(f"dev {idx}")
        elif op.kind == "device":
            name, req = control_request(op, vocab)
            if name == "corrupt":
                req = {**req, "count": 1}
            actions[idx] = HostAction(((name, req),))
            lines.append(f"dev {idx}")
        else:
            raise ValueError(f"op kind {op.kind!r} cannot be compiled")
    return Compiled("\n".join(lines) + "\n", actions, tuple(program.ops))

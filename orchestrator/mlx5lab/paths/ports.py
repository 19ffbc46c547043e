"""The card's functions and ports as the guest sees them: PCI addresses, netdevs, link state, speed.

One SSH round trip reads every mlx5 port (name, PCI address, operstate, ``speed``), so waits poll cheaply
under TCG. A port belongs to function ``i`` when its ``device`` link is the card's PCI function ``i``
(QEMU places function ``i`` at ``<bus>:00.<i>``, vm/card.py: CardServer.qemu_args).
"""

from __future__ import annotations

import shlex
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..vm.machine import Machine
from .registry import PathError

MLX5_VENDOR = "0x15b3"
DRIVER_DIR = "/sys/bus/pci/drivers/mlx5_core"

# name, PCI address, operstate and speed of every interface mlx5_core drives ("-": speed unreadable), with
# bash builtins only (a fork costs tens of milliseconds under TCG)
_PORTS_SH = (
    'for d in /sys/class/net/*; do [ "$d/device/driver" -ef /sys/bus/pci/drivers/mlx5_core ] || continue; '
    'cd -P "$d/device" 2>/dev/null || continue; read -r o < "$d/operstate"; '
    '{ read -r s < "$d/speed"; } 2>/dev/null || s=-; echo "${d##*/} ${PWD##*/} $o ${s:--}"; done; true'
)
_BDFS_SH = (f'for d in /sys/bus/pci/devices/*; do [ "$(cat $d/vendor)" = {MLX5_VENDOR} ] && echo "${{d##*/}}"; '
            'done; true')

_bdfs: weakref.WeakKeyDictionary[Machine, list[str]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Port:
    ifname: str
    bdf: str
    operstate: str
    speed: str  # as read from sysfs; "-" when the read failed (e.g. the interface is down)

    @property
    def function(self) -> int:
        return int(self.bdf.rsplit(".", 1)[1])

    def describe(self) -> str:
        return f"{self.ifname} ({self.bdf}) {self.operstate} speed {self.speed}"


def sh(m: Machine, command: str, timeout: float = 120.0) -> str:
    """Run ``command`` in the guest; its stdout, or PathError with the status and stderr."""
    res = m.run(command, timeout=timeout)
    if res.status != 0:
        raise PathError(f"`{command}` exited {res.status}: {(res.stderr or res.stdout).strip()[-800:]}")
    return res.stdout


def functions(m: Machine) -> int:
    if m.card is None:
        raise PathError("the machine has no emulated card")
    return len(m.card.spec.functions)


def card_bdfs(m: Machine) -> list[str]:
    """PCI address of each function of the card, by function index (found once per machine, while every
    function is present, as at boot)."""
    if m not in _bdfs:
        found = sorted(sh(m, _BDFS_SH).split())
        if len(found) != functions(m):
            raise PathError(f"expected {functions(m)} mlx5 PCI functions in the guest, found {found}")
        _bdfs[m] = found
    return _bdfs[m]


def bdf(m: Machine, fn: int) -> str:
    return card_bdfs(m)[fn]


def read_ports(m: Machine) -> list[Port]:
    ports = []
    for line in sh(m, _PORTS_SH).splitlines():
        parts = line.split()
        if len(parts) == 4:
            ports.append(Port(*parts))
    return ports


def by_function(ports: Iterable[Port]) -> dict[int, Port]:
    return {p.function: p for p in ports}


def port_of(m: Machine, fn: int) -> Port:
    port = by_function(read_ports(m)).get(fn)
    if port is None:
        raise PathError(f"function {fn} ({bdf(m, fn)}) has no mlx5 netdev; ports: {describe(read_ports(m))}")
    return port


def describe(ports: Iterable[Port]) -> str:
    return "; ".join(p.describe() for p in ports) or "none"


def expected_speeds(m: Machine) -> list[int]:
    """Each function's configured port speed: what the card says now (a device path may have changed it),
    else what it was started with."""
    assert m.card is not None
    try:
        return [int(s["speed_mbps"]) for s in m.card.control.status()]
    except Exception:  # noqa: BLE001 - the health check reports a dead device server on its own
        return [f.speed_mbps for f in m.card.spec.functions]


def port_state_problems(ports: list[Port], want: Iterable[int], speeds: list[int],
                        absent: Iterable[int] = ()) -> list[str]:
    """What is wrong with ``ports``: each function in ``want`` has one port, up, at its speed; no function in
    ``absent`` has one."""
    problems = []
    seen: dict[int, list[Port]] = {}
    for p in ports:
        seen.setdefault(p.function, []).append(p)
    for fn, ps in sorted(seen.items()):
        if len(ps) > 1:
            problems.append(f"function {fn} has {len(ps)} netdevs: {describe(ps)}")
    for fn in want:
        ps = seen.get(fn)
        if not ps:
            problems.append(f"function {fn} has no netdev")
            continue
        p = ps[0]
        if p.operstate != "up":
            problems.append(f"{p.ifname} (function {fn}) is {p.operstate}, not up")
        elif p.speed != str(speeds[fn]):
            problems.append(f"{p.ifname} (function {fn}) speed reads {p.speed}, configured {speeds[fn]}")
    for fn in absent:
        if fn in seen:
            problems.append(f"function {fn} should have no netdev but has {describe(seen[fn])}")
    return problems


def wait_ports(m: Machine, want: Iterable[int], *, absent: Iterable[int] = (), timeout: float = 30.0,
               what: str = "") -> list[Port]:
    """Wait until every function in ``want`` has its port up at its configured speed and none in ``absent``
    has one; PathError with the last state seen otherwise."""
    want, absent = list(want), list(absent)
    speeds = expected_speeds(m)
    deadline = time.monotonic() + timeout
    while True:
        ports = read_ports(m)
        problems = port_state_problems(ports, want, speeds, absent)
        if not problems:
            return ports
        if time.monotonic() > deadline:
            raise PathError(f"{what or 'ports'}: not as expected after {timeout:.0f} s: {'; '.join(problems)} "
                            f"(ports seen: {describe(ports)})")
        time.sleep(0.1)


def wait_netdevs(m: Machine, fns: Iterable[int], timeout: float = 30.0) -> dict[int, Port]:
    """Wait until each function in ``fns`` has a netdev (in any state); return them."""
    fns = list(fns)
    deadline = time.monotonic() + timeout
    while True:
        ports = by_function(read_ports(m))
        if all(fn in ports for fn in fns):
            return ports
        if time.monotonic() > deadline:
            raise PathError(f"no netdev for function(s) {[fn for fn in fns if fn not in ports]} after "
                            f"{timeout:.0f} s (ports seen: {describe(ports.values())})")
        time.sleep(0.1)


def bring_up(m: Machine, fns: Iterable[int], timeout: float = 30.0) -> None:
    """``ip link set IF up`` on the ports of ``fns`` (the guest's init does it only at boot), then wait for
    them to be up at their speed."""
    fns = list(fns)
    if not fns:
        return
    ports = wait_netdevs(m, fns, timeout)
    sh(m, " && ".join(f"ip link set {shlex.quote(ports[fn].ifname)} up" for fn in fns))
    wait_ports(m, fns, timeout=timeout, what="after ip link set up")


def bound(m: Machine, fn: int) -> bool:
    return sh(m, f"[ -e {DRIVER_DIR}/{bdf(m, fn)} ] && echo yes || echo no").strip() == "yes"


def ptys_reads(m: Machine, fn: int) -> int:
    """How many PTYS register accesses function ``fn``'s trace holds (proof a read reached the port)."""
    assert m.card is not None
    path = m.card.trace_file(fn)
    n = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if '"reg":"PTYS"' in line:
                n += 1
    return n


def wait_until(check: Callable[[], list[str]], timeout: float, what: str) -> None:
    """Poll ``check`` (it returns what is still wrong) until it returns nothing; PathError with the last
    answer after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        problems = check()
        if not problems:
            return
        if time.monotonic() > deadline:
            raise PathError(f"{what}: not as expected after {timeout:.0f} s: {'; '.join(problems)}")
        time.sleep(0.1)

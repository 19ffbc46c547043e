"""Stacked devices over the mlx5 ports, and a driver unbind under them: bonding and VLANs.

``stack-bond``: an active-backup bond (miimon 100) over every mlx5 port; ``stack-vlan``: a VLAN on each
port. Both check that ``speed`` read through the upper device reaches the mlx5 port, unbind a function
while the stack is up (the upper device must follow: the slave is released, the VLAN goes), bind it back,
rebuild the stack on the new netdev, then remove the stack and leave every port up.

:func:`stack_script` is the shell text that builds or removes a stack, the same stacks as the guest helper
``/bin/mlx5lab-stack bond|vlan up|down`` (guest-images/reader/mlx5lab-stack) builds; the path also has to
rebuild the stack on one port after the bind, which the helper does not do.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from dataclasses import dataclass
from typing import ClassVar

from ..vm.machine import Machine
from . import ports
from .guest import BIND_FUNCTIONS, UNBIND_FUNCTIONS, bind, unbind
from .registry import MAX_FUNCTIONS, DriverPath, PathError, arg, count_arg, register_path

BOND = "bond0"
SYSFS = "/sys/class/net"


def stack_script(kind: str, action: str, ifnames: list[str], *, vid: int = 100, bond: str = BOND,
                 fresh: bool = True) -> str:
    """Shell text that builds (``up``) or removes (``down``) a stack on ``ifnames``, as mlx5lab-stack does.

    bond up: load bonding without its automatic bond0 (max_bonds=0: otherwise the module, loaded on demand
    by ``ip link add``, makes bond0 itself and the add fails with "File exists"), (``fresh``: delete any
    bond of that name and) create the bond, enslave each port (down first, as bonding wants), bring the bond
    up; with ``fresh=False`` it enslaves more ports to the existing bond. bond down: delete the bond (its
    slaves are released). vlan up: a VLAN ``IF.VID`` on each port, up. vlan down: delete them.
    """
    q = shlex.quote
    if kind == "bond" and action == "up":
        add = f"ip link add {q(bond)} type bond mode active-backup miimon 100"
        exists = f"[ -d {SYSFS}/{q(bond)} ]"
        steps = ["modprobe bonding max_bonds=0"]
        steps += [f"{{ ! {exists} || ip link del {q(bond)}; }}", add] if fresh else [f"{{ {exists} || {add}; }}"]
        for ifname in ifnames:
            steps += [f"ip link set {q(ifname)} down", f"ip link set {q(ifname)} master {q(bond)}"]
        steps.append(f"ip link set {q(bond)} up")
    elif kind == "bond" and action == "down":
        steps = [f"ip link del {q(bond)}"]
    elif kind == "vlan" and action == "up":
        steps = ["modprobe 8021q"]
        for ifname in ifnames:
            steps += [f"ip link add link {q(ifname)} name {q(f'{ifname}.{vid}')} type vlan id {vid}",
                      f"ip link set {q(f'{ifname}.{vid}')} up"]
    elif kind == "vlan" and action == "down":
        steps = [f"ip link del {q(f'{ifname}.{vid}')}" for ifname in ifnames]
    else:
        raise ValueError(f"stack {kind!r} {action!r}: kind is bond or vlan, action up or down")
    return " && ".join(steps)


def read_dev(m: Machine, name: str, extra: tuple[str, ...] = ()) -> dict[str, str]:
    """operstate, speed ("-" if unreadable) and the files ``extra`` (relative to its sysfs folder) of
    ``name``; {} if it does not exist."""
    d = f"{SYSFS}/{shlex.quote(name)}"
    reads = " ".join(f'v=""; {{ read -r v < {d}/{f}; }} 2>/dev/null; echo "{f}=$v";' for f in
                     ("operstate", "speed", *extra))
    out = ports.sh(m, f"[ -d {d} ] || exit 0; {reads}")
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    if values and not values.get("speed"):
        values["speed"] = "-"
    return values


def _stack_functions(what: str) -> tuple[str, ...]:
    return (*UNBIND_FUNCTIONS, f"{what}", *BIND_FUNCTIONS)


@dataclass(frozen=True)
class StackArgs:
    fn: str = arg("0", "the function unbound (and bound back) under the stack: a function index",
                  tuple(str(i) for i in range(MAX_FUNCTIONS)))
    count: int = count_arg("unbind-bind cycles under the stack")


class _Stack(DriverPath):
    Args: ClassVar[type[StackArgs]] = StackArgs
    variants: ClassVar[tuple[dict[str, str], ...]] = ({"fn": "0"}, {"fn": "1"})

    def perform(self, m: Machine, args: StackArgs) -> None:
        n = ports.functions(m)
        gone = int(args.fn)
        if gone >= n:
            raise PathError(f"fn={gone}: the card has {n} function(s)")
        names = {p.function: p.ifname for p in ports.wait_ports(m, range(n), what="before building the stack")}
        self.build(m, [names[fn] for fn in range(n)])
        try:
            self.check(m, names, gone=None)
            for _ in range(args.count):
                unbind(m, gone)
                del names[gone]
                self.check(m, names, gone=gone)
                bind(m, gone)
                names = {fn: p.ifname for fn, p in ports.wait_netdevs(m, range(n)).items()}
                self.rebuild(m, gone, names[gone])
                self.check(m, names, gone=None)
        except Exception:
            with contextlib.suppress(Exception):  # leave no stack behind; the first error is the one to report
                self.remove(m, [names[fn] for fn in sorted(names)])
            raise
        self.remove(m, [names[fn] for fn in sorted(names)])
        ports.bring_up(m, range(n))

    def build(self, m: Machine, ifnames: list[str]) -> None:
        raise NotImplementedError

    def rebuild(self, m: Machine, fn: int, ifname: str) -> None:
        raise NotImplementedError

    def remove(self, m: Machine, ifnames: list[str]) -> None:
        raise NotImplementedError

    def check(self, m: Machine, names: dict[int, str], gone: int | None) -> None:
        raise NotImplementedError


@register_path
class StackBond(_Stack):
    name: ClassVar[str] = "stack-bond"
    summary: ClassVar[str] = ("active-backup bond over both ports; unbind a function under it, bind back, "
                              "re-enslave, remove the bond")
    trigger: ClassVar[str] = (f"ip link add {BOND} type bond mode active-backup miimon 100; ip link set IF "
                              f"master {BOND}; echo BDF > .../mlx5_core/unbind; .../bind; ip link set IF master "
                              f"{BOND}; ip link del {BOND}")
    device: ClassVar[str] = ("PTYS reads when bonding asks each slave's speed; the unbound function's "
                             "teardown and probe as in unbind-bind")
    kernel_functions: ClassVar[tuple[str, ...]] = _stack_functions(
        "bonding/bond_main.c: bond_netdev_event NETDEV_UNREGISTER -> __bond_release_one (the slave goes, the "
        "other becomes active: bond_select_active_slave); bond_enslave -> bond_update_speed_duplex "
        "-> __ethtool_get_link_ksettings -> en_ethtool.c: mlx5e_get_link_ksettings (PTYS)")

    def build(self, m: Machine, ifnames: list[str]) -> None:
        ports.sh(m, stack_script("bond", "up", ifnames))

    def rebuild(self, m: Machine, fn: int, ifname: str) -> None:
        ports.sh(m, stack_script("bond", "up", [ifname], fresh=False))

    def remove(self, m: Machine, ifnames: list[str]) -> None:
        ports.sh(m, stack_script("bond", "down", ifnames))

    def check(self, m: Machine, names: dict[int, str], gone: int | None) -> None:
        """The bond is up with every remaining port as a slave; bonding's speed (its cached copy of the active
        slave's, bond_main.c: bond_ethtool_get_link_ksettings) is the active slave's configured speed; each
        slave's own speed reads its configured value."""
        speeds = ports.expected_speeds(m)
        fn_of = {ifname: fn for fn, ifname in names.items()}

        def problems() -> list[str]:
            bond = read_dev(m, BOND, ("bonding/slaves", "bonding/active_slave"))
            if not bond:
                return [f"{BOND} does not exist"]
            found = []
            slaves = bond.get("bonding/slaves", "").split()
            if sorted(slaves) != sorted(names.values()):
                found.append(f"{BOND} slaves are {slaves}, expected {sorted(names.values())}")
            if bond["operstate"] != "up":
                found.append(f"{BOND} is {bond['operstate']}")
            active = bond.get("bonding/active_slave", "")
            if active not in fn_of:
                found.append(f"{BOND} active slave is {active or 'none'}")
            elif bond["speed"] != str(speeds[fn_of[active]]):
                found.append(f"{BOND} speed reads {bond['speed']}, its active slave {active} is "
                             f"configured {speeds[fn_of[active]]}")
            return found + ports.port_state_problems(ports.read_ports(m), names, speeds,
                                                     absent=[gone] if gone is not None else [])

        ports.wait_until(problems, 30, f"{BOND}" + (f" after unbinding function {gone}" if gone is not None
                                                    else ""))


@register_path
class StackVlan(_Stack):
    name: ClassVar[str] = "stack-vlan"
    summary: ClassVar[str] = ("a VLAN on each port; unbind a function under it (its VLAN goes), bind back, "
                              "recreate, remove the VLANs")
    trigger: ClassVar[str] = ("ip link add link IF name IF.100 type vlan id 100; echo BDF > "
                              ".../mlx5_core/unbind; .../bind; ip link del IF.100")
    device: ClassVar[str] = ("PTYS reads for each speed read through a VLAN; the unbound function's "
                             "teardown and probe as in unbind-bind")
    kernel_functions: ClassVar[tuple[str, ...]] = _stack_functions(
        "8021q/vlan.c: vlan_device_event NETDEV_UNREGISTER -> unregister_vlan_dev (the VLAN on the unbound "
        "port goes); 8021q/vlan_dev.c: vlan_ethtool_get_link_ksettings -> __ethtool_get_link_ksettings -> "
        "en_ethtool.c: mlx5e_get_link_ksettings (PTYS)")
    vid: ClassVar[int] = 100

    def build(self, m: Machine, ifnames: list[str]) -> None:
        ports.sh(m, stack_script("vlan", "up", ifnames, vid=self.vid))

    def rebuild(self, m: Machine, fn: int, ifname: str) -> None:
        ports.bring_up(m, [fn])
        ports.sh(m, stack_script("vlan", "up", [ifname], vid=self.vid))

    def remove(self, m: Machine, ifnames: list[str]) -> None:
        ports.sh(m, stack_script("vlan", "down", ifnames, vid=self.vid))

    def check(self, m: Machine, names: dict[int, str], gone: int | None) -> None:
        """Each remaining port's VLAN is up and its speed is the port's configured speed, read through the
        VLAN to the mlx5 port (the function's trace gains a PTYS access); no VLAN is left on a gone port."""
        speeds = ports.expected_speeds(m)

        def problems() -> list[str]:
            found = []
            for fn, ifname in names.items():
                vlan = read_dev(m, f"{ifname}.{self.vid}")
                if not vlan:
                    found.append(f"{ifname}.{self.vid} does not exist")
                elif vlan["operstate"] != "up":
                    found.append(f"{ifname}.{self.vid} is {vlan['operstate']}")
                elif vlan["speed"] != str(speeds[fn]):
                    found.append(f"{ifname}.{self.vid} speed reads {vlan['speed']}, configured {speeds[fn]}")
            if gone is not None:
                left = ports.sh(m, f"ls {SYSFS} | grep '\\.{self.vid}$' || true").split()
                stale = [v for v in left if v.rsplit(".", 1)[0] not in names.values()]
                if stale:
                    found.append(f"VLAN(s) {stale} outlived their port")
            return found

        ports.wait_until(problems, 30, "VLANs" + (f" after unbinding function {gone}" if gone is not None else ""))
        for fn, ifname in names.items():
            self._reaches_port(m, fn, f"{ifname}.{self.vid}")

    def _reaches_port(self, m: Machine, fn: int, vlan: str) -> None:
        before = ports.ptys_reads(m, fn)
        ports.sh(m, f"cat {SYSFS}/{vlan}/speed")
        deadline = time.monotonic() + 2  # the trace line is written just after the command completes
        while ports.ptys_reads(m, fn) <= before:
            if time.monotonic() > deadline:
                raise PathError(f"reading {vlan}/speed did not reach function {fn}'s port (no PTYS access)")
            time.sleep(0.02)

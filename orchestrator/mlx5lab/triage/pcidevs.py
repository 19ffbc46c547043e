"""The mlx5 PCI functions in a vmcore: pci_dev, mlx5_core_dev, net_devices, and devices_kset membership.

``device_shutdown()`` takes each device off ``devices_kset->list`` before calling its shutdown, so a function
that is missing from that list is being shut down or is done; one still on it has not been reached yet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import drgn
from drgn.helpers.linux.device import bus_for_each_dev, dev_name
from drgn.helpers.linux.list import list_for_each_entry
from drgn.helpers.linux.net import for_each_netdev, netdev_name

MELLANOX_VENDOR = 0x15B3
# net_device.state bits (include/linux/netdevice.h, enum netdev_state_t)
LINK_STATE_START, LINK_STATE_PRESENT = 0, 1
# net_device.reg_state is a u8 bitfield, not an enum, in this kernel's debug info
REG_STATES = ("UNINITIALIZED", "REGISTERED", "UNREGISTERING", "UNREGISTERED", "RELEASED", "DUMMY")


@dataclass
class NetDev:
    name: str
    address: int
    parent: int  # struct device * of the PCI function
    running: bool  # __LINK_STATE_START: what netif_running() tests
    present: bool  # __LINK_STATE_PRESENT: cleared by netif_device_detach()
    reg_state: str

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["address"], d["parent"] = hex(self.address), hex(self.parent)
        return d


@dataclass
class Mlx5Function:
    bdf: str
    pci_dev: int
    device: int  # &pci_dev->dev
    driver: str | None
    mdev: int | None  # struct mlx5_core_dev * (the PCI drvdata), None once unbound
    device_state: str | None = None  # mlx5_core_dev.state
    cmd_state: str | None = None  # mlx5_core_dev.cmd.state: DOWN means mlx5_cmd_is_down() refuses commands
    cmd_pool: int | None = None  # the dev->cmd.pool pointer value
    in_devices_kset: bool = True
    netdevs: list[NetDev] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("pci_dev", "device", "mdev", "cmd_pool"):
            d[key] = hex(d[key]) if d[key] is not None else None
        d["netdevs"] = [n.to_json() for n in self.netdevs]
        return d

    @property
    def ifnames(self) -> list[str]:
        return [n.name for n in self.netdevs]


def _enum_name(obj: drgn.Object) -> str:
    try:
        return obj.format_(type_name=False).split(")")[-1]
    except (drgn.FaultError, ValueError):
        return "?"


def _reg_state(value: int) -> str:
    return REG_STATES[value] if 0 <= value < len(REG_STATES) else str(value)


def devices_kset_names(prog: drgn.Program) -> list[str]:
    """Names of the devices still on ``devices_kset->list`` (shutdown walks it from the tail)."""
    kset = prog["devices_kset"]
    head = kset.list.address_of_()
    names = []
    for dev in list_for_each_entry("struct device", head, "kobj.entry"):
        try:
            names.append(dev_name(dev).decode(errors="replace"))
        except drgn.FaultError:
            names.append(f"<unreadable {hex(dev.value_())}>")
    return names


def netdevs(prog: drgn.Program) -> list[NetDev]:
    out = []
    for nd in for_each_netdev(prog):
        state = nd.state.value_()
        out.append(NetDev(name=netdev_name(nd).decode(errors="replace"), address=nd.value_(),
                          parent=nd.dev.parent.value_(), running=bool(state >> LINK_STATE_START & 1),
                          present=bool(state >> LINK_STATE_PRESENT & 1), reg_state=_reg_state(nd.reg_state.value_())))
    return out


def mlx5_functions(prog: drgn.Program) -> list[Mlx5Function]:
    """Every Mellanox PCI function on the PCI bus, bound to mlx5_core or not."""
    in_kset = set(devices_kset_names(prog))
    all_netdevs = netdevs(prog)
    out = []
    for dev in bus_for_each_dev(prog["pci_bus_type"].address_of_()):
        pdev = drgn.container_of(dev, "struct pci_dev", "dev")
        if pdev.vendor.value_() != MELLANOX_VENDOR:
            continue
        bdf = dev_name(dev).decode()
        driver = dev.driver.name.string_().decode() if dev.driver else None
        fn = Mlx5Function(bdf=bdf, pci_dev=pdev.value_(), device=dev.value_(), driver=driver, mdev=None,
                          in_devices_kset=bdf in in_kset,
                          netdevs=[n for n in all_netdevs if n.parent == dev.value_()])
        if driver == "mlx5_core" and dev.driver_data:
            mdev = drgn.cast("struct mlx5_core_dev *", dev.driver_data)
            fn.mdev = mdev.value_()
            try:
                fn.device_state = _enum_name(mdev.state)
                fn.cmd_state = _enum_name(mdev.cmd.state)
                fn.cmd_pool = mdev.cmd.pool.value_()
            except drgn.FaultError:
                pass
        out.append(fn)
    return out


def function_of(functions: list[Mlx5Function], *, mdev: int | None = None, device: int | None = None,
                pci_dev: int | None = None, netdev: int | None = None) -> Mlx5Function | None:
    for fn in functions:
        if (mdev and fn.mdev == mdev) or (device and fn.device == device) or (pci_dev and fn.pci_dev == pci_dev):
            return fn
        if netdev and any(n.address == netdev for n in fn.netdevs):
            return fn
    return None

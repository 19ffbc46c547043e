"""Guest-triggered paths that unbind and rebind the driver: sysfs unbind/bind, PCI remove/rescan, devlink
reload, module unload/load.

Each waits for its own end state: after an unbind the function's netdev is gone and the other functions
keep working (their ``speed`` reads the configured value); after a bind, rescan, reload or modprobe the new
netdevs exist and are brought up with ``ip link set IF up`` (the guest's init brings ports up only at boot).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..vm.machine import Machine
from . import ports
from .registry import DriverPath, PathError, arg, count_arg, fn_arg, order_arg, register_path, select_functions

UNBIND_FUNCTIONS = (
    "drivers/base/dd.c: device_release_driver -> drivers/pci/pci-driver.c: pci_device_remove",
    "main.c: remove_one -> mlx5_drain_fw_reset, mlx5_drain_health_wq, devlink_unregister",
    "main.c: mlx5_uninit_one -> dev.c: mlx5_unregister_device (mlx5e netdev unregistered: en_main.c: "
    "mlx5e_remove) -> main.c: mlx5_unload, mlx5_cleanup_once, mlx5_function_teardown "
    "(TEARDOWN_HCA, page reclaim, DISABLE_HCA)",
    "main.c: mlx5_pci_close, mlx5_mdev_uninit",
)
BIND_FUNCTIONS = (
    "drivers/pci/pci-driver.c: pci_device_probe -> main.c: probe_one -> mlx5_mdev_init, mlx5_pci_init",
    "main.c: mlx5_init_one -> mlx5_function_setup (ENABLE_HCA, pages, INIT_HCA), mlx5_init_once, "
    "mlx5_load, dev.c: mlx5_register_device (en_main.c: mlx5e_probe: new netdev)",
    "main.c: probe_one -> devlink_register",
)
BIND_DEVICE = ("commands of a full probe: ENABLE_HCA, QUERY_ISSI, pages, HCA caps, INIT_HCA, UAR, EQs, "
               "vport and flow-steering objects; on ifup the queues and PAOS/PTYS")
UNBIND_DEVICE = "every object destroyed by command, then TEARDOWN_HCA, MANAGE_PAGES reclaim, DISABLE_HCA"


def unbind(m: Machine, fn: int) -> None:
    """``echo BDF > .../mlx5_core/unbind`` (synchronous: remove_one has run when the write returns)."""
    ports.sh(m, f"echo {ports.bdf(m, fn)} > {ports.DRIVER_DIR}/unbind")
    if ports.bound(m, fn):
        raise PathError(f"function {fn} ({ports.bdf(m, fn)}) is still bound after unbind")


def bind(m: Machine, fn: int) -> None:
    """``echo BDF > .../mlx5_core/bind`` (probe_one runs in the write)."""
    ports.sh(m, f"echo {ports.bdf(m, fn)} > {ports.DRIVER_DIR}/bind")
    if not ports.bound(m, fn):
        raise PathError(f"function {fn} ({ports.bdf(m, fn)}) is not bound after bind")


def unbind_checked(m: Machine, fn: int, still_bound: set[int]) -> None:
    """Unbind ``fn``; its netdev must be gone, the ports of ``still_bound`` up at their speed."""
    unbind(m, fn)
    ports.wait_ports(m, sorted(still_bound), absent=[fn], what=f"after unbinding function {fn}")


@dataclass(frozen=True)
class UnbindArgs:
    fn: str = fn_arg(what="the function(s) to unbind")
    order: str = order_arg()


@register_path
class Unbind(DriverPath):
    """Half of unbind-bind, for sequences that do something else before binding back."""

    name: ClassVar[str] = "unbind"
    summary: ClassVar[str] = "driver unbind of function(s) through sysfs; the driver stays off them"
    trigger: ClassVar[str] = "echo BDF > /sys/bus/pci/drivers/mlx5_core/unbind"
    device: ClassVar[str] = UNBIND_DEVICE
    kernel_functions: ClassVar[tuple[str, ...]] = UNBIND_FUNCTIONS
    Args: ClassVar[type[UnbindArgs]] = UnbindArgs
    ends_bound: ClassVar[bool] = False
    variants: ClassVar[tuple[dict[str, str], ...]] = ({"fn": "0"},)

    def perform(self, m: Machine, args: UnbindArgs) -> None:
        n = ports.functions(m)
        still = {fn for fn in range(n) if ports.bound(m, fn)}
        for fn in select_functions(args.fn, args.order, n):
            if fn in still:  # already unbound: nothing to do
                still.discard(fn)
                unbind_checked(m, fn, still)


@dataclass(frozen=True)
class BindArgs:
    fn: str = fn_arg(what="the function(s) to bind (those already bound are left alone)")
    order: str = order_arg()


@register_path
class Bind(DriverPath):
    name: ClassVar[str] = "bind"
    summary: ClassVar[str] = "driver bind of unbound function(s) through sysfs, ports brought up"
    trigger: ClassVar[str] = "echo BDF > /sys/bus/pci/drivers/mlx5_core/bind; ip link set IF up"
    device: ClassVar[str] = BIND_DEVICE
    kernel_functions: ClassVar[tuple[str, ...]] = BIND_FUNCTIONS
    Args: ClassVar[type[BindArgs]] = BindArgs

    def perform(self, m: Machine, args: BindArgs) -> None:
        fns = [fn for fn in select_functions(args.fn, args.order, ports.functions(m)) if not ports.bound(m, fn)]
        for fn in fns:
            bind(m, fn)
        ports.bring_up(m, fns)


@dataclass(frozen=True)
class UnbindBindArgs:
    fn: str = fn_arg(what="the function(s) to unbind and bind back")
    order: str = order_arg("the functions are unbound")
    bind_order: str = order_arg("they are bound back")
    count: int = count_arg("unbind-bind cycles")


@register_path
class UnbindBind(DriverPath):
    name: ClassVar[str] = "unbind-bind"
    summary: ClassVar[str] = "driver unbind then bind of one function or both, in either order"
    trigger: ClassVar[str] = ("echo BDF > /sys/bus/pci/drivers/mlx5_core/unbind; echo BDF > "
                              "/sys/bus/pci/drivers/mlx5_core/bind; ip link set IF up")
    device: ClassVar[str] = f"{UNBIND_DEVICE}; then {BIND_DEVICE}"
    kernel_functions: ClassVar[tuple[str, ...]] = UNBIND_FUNCTIONS + BIND_FUNCTIONS
    Args: ClassVar[type[UnbindBindArgs]] = UnbindBindArgs
    variants: ClassVar[tuple[dict[str, str], ...]] = (
        {"fn": "0"}, {"fn": "1"}, {"fn": "both"}, {"fn": "both", "order": "reverse", "bind_order": "reverse"})

    def perform(self, m: Machine, args: UnbindBindArgs) -> None:
        n = ports.functions(m)
        fns = select_functions(args.fn, args.order, n)
        for _ in range(args.count):
            still = set(range(n))
            for fn in fns:
                still.discard(fn)
                unbind_checked(m, fn, still)
            back = select_functions(args.fn, args.bind_order, n)
            for fn in back:
                bind(m, fn)
            ports.bring_up(m, back)
            ports.wait_ports(m, range(n), what="after binding back")


@dataclass(frozen=True)
class RemoveRescanArgs:
    fn: str = fn_arg(what="the function(s) to remove from the PCI bus")
    order: str = order_arg("the functions are removed")
    count: int = count_arg("remove-rescan cycles")


@register_path
class RemoveRescan(DriverPath):
    name: ClassVar[str] = "remove-rescan"
    summary: ClassVar[str] = "PCI hot-remove of function(s) in the guest, then a bus rescan re-probes them"
    trigger: ClassVar[str] = "echo 1 > /sys/bus/pci/devices/BDF/remove; echo 1 > /sys/bus/pci/rescan"
    device: ClassVar[str] = (f"{UNBIND_DEVICE}; the rescan reads config space and reassigns BAR0; "
                             f"then {BIND_DEVICE}")
    kernel_functions: ClassVar[tuple[str, ...]] = (
        "drivers/pci/pci-sysfs.c: remove_store -> drivers/pci/remove.c: pci_stop_and_remove_bus_device_locked "
        "-> pci_stop_dev -> device_release_driver",
        *UNBIND_FUNCTIONS[1:],
        "drivers/pci/pci-sysfs.c: rescan_store -> pci_rescan_bus -> pci_bus_add_devices -> device_attach",
        *BIND_FUNCTIONS,
    )
    Args: ClassVar[type[RemoveRescanArgs]] = RemoveRescanArgs
    variants: ClassVar[tuple[dict[str, str], ...]] = ({"fn": "0"}, {"fn": "1"}, {"fn": "both"})

    def perform(self, m: Machine, args: RemoveRescanArgs) -> None:
        n = ports.functions(m)
        fns = select_functions(args.fn, args.order, n)
        for _ in range(args.count):
            still = set(range(n))
            for fn in fns:
                dev = f"/sys/bus/pci/devices/{ports.bdf(m, fn)}"
                ports.sh(m, f"echo 1 > {dev}/remove")
                if ports.sh(m, f"[ -e {dev} ] && echo present || echo gone").strip() != "gone":
                    raise PathError(f"{dev} is still there after remove")
                still.discard(fn)
                ports.wait_ports(m, sorted(still), absent=[fn], what=f"after removing function {fn}")
            ports.sh(m, "echo 1 > /sys/bus/pci/rescan")
            unbound = [fn for fn in fns if not ports.bound(m, fn)]
            if unbound:
                raise PathError(f"function(s) {unbound} not bound to mlx5_core after the rescan")
            ports.bring_up(m, fns)
            ports.wait_ports(m, range(n), what="after the rescan")


@dataclass(frozen=True)
class ReloadArgs:
    fn: str = fn_arg(what="the function(s) to reload")
    order: str = order_arg()
    action: str = arg("driver_reinit", "devlink reload action (fw_activate needs the device's MFRL and "
                      "sync-reset support)", ("driver_reinit", "fw_activate"))
    limit: str = arg("", "devlink reload limit (no_reset: with fw_activate, a firmware live patch)",
                     ("", "no_reset"))
    count: int = count_arg("reloads of each function")

    def __post_init__(self) -> None:
        if self.limit == "no_reset" and self.action != "fw_activate":
            raise ValueError("limit=no_reset goes with action=fw_activate (devlink: no_reset needs it)")


@register_path
class DevlinkReload(DriverPath):
    name: ClassVar[str] = "devlink-reload"
    summary: ClassVar[str] = "devlink dev reload: the driver unloads and loads the function in place"
    trigger: ClassVar[str] = "devlink dev reload pci/BDF action driver_reinit; ip link set IF up"
    device: ClassVar[str] = ("the unload's destroys, TEARDOWN_HCA, reclaim, DISABLE_HCA, then a probe's "
                             "commands without QUERY_ADAPTER (mlx5_init_once is not rerun)")
    kernel_functions: ClassVar[tuple[str, ...]] = (
        "net/devlink/leftover.c: devlink_reload -> devlink.c: mlx5_devlink_reload_down",
        "main.c: mlx5_unload_one_devl_locked -> dev.c: mlx5_detach_device (aux devices deleted: netdev "
        "unregistered) -> main.c: mlx5_unload, mlx5_function_teardown",
        "devlink.c: mlx5_devlink_reload_up -> main.c: mlx5_load_one_devl_locked -> mlx5_function_setup, "
        "mlx5_load, dev.c: mlx5_attach_device (new netdev)",
    )
    Args: ClassVar[type[ReloadArgs]] = ReloadArgs
    variants: ClassVar[tuple[dict[str, str], ...]] = ({"fn": "0"}, {"fn": "both"})

    @classmethod
    def expected_dmesg_for(cls, args: ReloadArgs) -> tuple[str, ...]:
        # fw_activate with a reset is a sync reset the driver asks for (devlink.c:
        # mlx5_devlink_reload_fw_activate -> fw_reset.c: mlx5_fw_reset_set_reset_sync): the same lines
        from .device import SYNC_RESET_DMESG  # imported late: device.py's paths are listed after these
        return SYNC_RESET_DMESG if cls._resets_card(args) else cls.expected_dmesg

    @classmethod
    def expected_trace_for(cls, args: ReloadArgs) -> tuple[str, ...]:
        from .device import RECOVERY_TRACE
        return RECOVERY_TRACE if cls._resets_card(args) else cls.expected_trace

    @staticmethod
    def _resets_card(args: ReloadArgs) -> bool:
        return args.action == "fw_activate" and args.limit != "no_reset"

    def perform(self, m: Machine, args: ReloadArgs) -> None:
        from .device import RELOADED, count_lines, wait_lines
        n = ports.functions(m)
        fns = select_functions(args.fn, args.order, n)
        limit = f" limit {args.limit}" if args.limit else ""
        for _ in range(args.count):
            for fn in fns:
                # a card reset reloads every other function too, on its own (fw_reset.c:
                # mlx5_fw_reset_complete_reload), its netdev re-created admin-down
                others = [o for o in range(n) if o != fn] if self._resets_card(args) else []
                before = {ports.bdf(m, o): count_lines(m, RELOADED, ports.bdf(m, o)) for o in others}
                ports.sh(m, f"devlink dev reload pci/{ports.bdf(m, fn)} action {args.action}{limit}")
                if others:
                    wait_lines(m, RELOADED, list(before), before, 60, "the other functions' reload")
                ports.bring_up(m, [fn, *others])
            ports.wait_ports(m, range(n), what="after devlink reload")


@dataclass(frozen=True)
class ModuleReloadArgs:
    count: int = count_arg("rmmod-modprobe cycles")


@register_path
class ModuleReload(DriverPath):
    name: ClassVar[str] = "module-reload"
    summary: ClassVar[str] = "rmmod mlx5_core then modprobe mlx5_core: every function removed and probed"
    trigger: ClassVar[str] = "rmmod mlx5_core && modprobe mlx5_core; ip link set IF up"
    device: ClassVar[str] = f"on every function: {UNBIND_DEVICE}; then {BIND_DEVICE}"
    kernel_functions: ClassVar[tuple[str, ...]] = (
        "main.c: mlx5_cleanup -> drivers/pci/pci-driver.c: pci_unregister_driver -> remove_one (each function)",
        *UNBIND_FUNCTIONS[1:],
        "main.c: mlx5_init -> pci_register_driver -> probe_one (each function)",
        *BIND_FUNCTIONS[1:],
    )
    Args: ClassVar[type[ModuleReloadArgs]] = ModuleReloadArgs

    def perform(self, m: Machine, args: ModuleReloadArgs) -> None:
        n = ports.functions(m)
        for _ in range(args.count):
            ports.sh(m, "rmmod mlx5_core")
            ports.wait_ports(m, [], absent=range(n), what="after rmmod")
            ports.sh(m, "modprobe mlx5_core")
            ports.bring_up(m, range(n))

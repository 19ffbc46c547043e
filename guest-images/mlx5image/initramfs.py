"""Choose the guest's kernel modules and turn the staged root filesystem into a gzipped newc archive."""

from __future__ import annotations

import gzip
import stat
from dataclasses import dataclass
from pathlib import Path

from .cpio import Entry, entries_from_tree, write_archive
from .errors import ImageError
from .kmod import ModuleTree, normalize, resolve_dependencies

# Loaded by /init on every boot, in this order. virtio_pci is the bus driver virtio_net needs to see the
# NIC at all (it is not a symbol dependency, so it must be named).
BOOT_MODULES = ("virtio_pci", "virtio_net", "pvpanic-mmio", "pvpanic-pci", "qemu_fw_cfg")
# Loaded by /init only when an mlx5 PCI function is present.
DRIVER_MODULES = ("mlx5_core",)
# Shipped, loaded by scenarios that stack devices on the mlx5 ports (bonding with miimon, a VLAN per port).
STACKING_MODULES = ("bonding", "8021q")
EXCLUDED_MODULES = ("mlx5_ib",)
# What a kernel may have instead of a module above. 5.10 has one pvpanic module, which binds QEMU's ISA
# pvpanic through ACPI (drivers/misc/pvpanic.c); 5.12 split it into pvpanic-mmio and pvpanic-pci
# (drivers/misc/pvpanic/). The PCI variant is not the device the guests get, so it may be absent.
ALTERNATIVES: dict[str, tuple[str, ...]] = {"pvpanic-mmio": ("pvpanic",)}
OPTIONAL_MODULES = ("pvpanic-pci",)

CONSOLE = Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))


@dataclass(frozen=True)
class ModuleSelection:
    order: list[str]  # every needed module, dependencies first (built-ins included)
    shipped: list[str]  # loadable ones, i.e. the .ko files that go into the image
    paths: dict[str, str]  # shipped module -> path relative to lib/modules/<release>
    boot: list[str]  # the BOOT_MODULES that are loadable (built-ins need no modprobe)


def select_modules(tree: ModuleTree) -> ModuleSelection:
    """Resolve the boot and driver modules with all their dependencies from the kernel's own metadata.

    A module the kernel lacks is replaced by its alternative (``ALTERNATIVES``) or left out when it is
    optional; anything else missing is one ImageError listing every missing module.
    """
    roots, missing = [], []
    for name in (*BOOT_MODULES, *DRIVER_MODULES, *STACKING_MODULES):
        have = next((m for m in (name, *ALTERNATIVES.get(name, ())) if tree.exists(m)), None)
        if have is not None:
            roots.append(have)
        elif name not in OPTIONAL_MODULES:
            missing.append(" or ".join((name, *ALTERNATIVES.get(name, ()))))
    if missing:
        raise ImageError(f"kernel {tree.release} has no module {', '.join(missing)} (neither loadable nor "
                         "built in), which the guest needs; use a Debian kernel that builds them.")
    try:
        order = resolve_dependencies(roots, tree.depends_with_softdeps, exclude=EXCLUDED_MODULES)
    except ValueError as err:
        msg = f"cannot assemble the module set of kernel {tree.release} ({err}); use another kernel."
        raise ImageError(msg) from err
    shipped = [m for m in order if not tree.is_builtin(m)]
    paths = {m: str(tree.path(m).resolve().relative_to(tree.moddir.resolve())) for m in shipped}
    loadable = {normalize(m) for m in shipped}
    boot = [m for m in roots if normalize(m) in loadable and m not in (*DRIVER_MODULES, *STACKING_MODULES)]
    return ModuleSelection(order, shipped, paths, boot)


def write_initramfs(staging: Path, out: Path) -> list[Entry]:
    """Archive ``staging`` (plus /dev/console, which the kernel needs before devtmpfs is mounted).

    Returns the entries written, for the manifest. gzip with mtime 0 keeps the output reproducible.
    """
    entries = [*entries_from_tree(staging), CONSOLE]
    if not (staging / "dev").is_dir():
        entries.append(Entry("dev", stat.S_IFDIR | 0o755))
    entries.sort(key=lambda e: e.path.split("/"))
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as gz:
        write_archive(gz, entries)
    return entries

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

CONSOLE = Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))


@dataclass(frozen=True)
class ModuleSelection:
    order: list[str]  # every needed module, dependencies first (built-ins included)
    shipped: list[str]  # loadable ones, i.e. the .ko files that go into the image
    paths: dict[str, str]  # shipped module -> path relative to lib/modules/<release>
    boot: list[str]  # the BOOT_MODULES that are loadable (built-ins need no modprobe)


def select_modules(tree: ModuleTree) -> ModuleSelection:
    """Resolve the boot and driver modules with all their dependencies from the kernel's own metadata."""
    try:
        order = resolve_dependencies(
            [*BOOT_MODULES, *DRIVER_MODULES, *STACKING_MODULES], tree.depends_with_softdeps, exclude=EXCLUDED_MODULES
        )
    except ValueError as err:
        msg = f"cannot assemble the module set of kernel {tree.release} ({err}); use another kernel."
        raise ImageError(msg) from err
    shipped = [m for m in order if not tree.is_builtin(m)]
    paths = {m: str(tree.path(m).resolve().relative_to(tree.moddir.resolve())) for m in shipped}
    loadable = {normalize(m) for m in shipped}
    boot = [m for m in BOOT_MODULES if normalize(m) in loadable]
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

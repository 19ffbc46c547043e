"""What callers get back: a built guest image, and the kernel command line it should boot with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .manifest import MANIFEST_NAME

# console=ttyS0: kernel log and init markers on the serial port the orchestrator reads.
# net.ifnames=0 / ipv6.disable=1: plain eth0, no IPv6 noise. rcupdate.rcu_cpu_stall_timeout=300: TCG is
# slow enough to trip the default 21 s. panic=0: never auto-reboot after a panic, so the state can be
# dumped. printk.devkmsg=on: tests may write markers to /dev/kmsg without being rate-limited.
# (The kernel only knows the parameter as rcupdate.*; plain rcu_cpu_stall_timeout= is passed to /init.)
CMDLINE = ("console=ttyS0 net.ifnames=0 ipv6.disable=1 modprobe.blacklist=mlx5_ib "
           "rcupdate.rcu_cpu_stall_timeout=300 panic=0 printk.devkmsg=on")
# KASLR lives in the bzImage decompressor, so a PVH boot never randomises (and the kernel proper calls
# "nokaslr" unknown); bzImage boots get nokaslr so addresses in triage are the same either way.
BZIMAGE_EXTRA = " nokaslr"


def cmdline_for(pvh: bool) -> str:
    """Recommended kernel command line for the PVH vmlinux (True) or the bzImage (False)."""
    return CMDLINE if pvh else CMDLINE + BZIMAGE_EXTRA


@dataclass(frozen=True)
class GuestImage:
    """A bootable guest: give QEMU ``kernel``, ``initrd`` and ``cmdline``; log in as root with ``ssh_key``."""

    kernel_release: str
    package_version: str
    kernel: Path  # the file for -kernel: the PVH ELF vmlinux if pvh, else the bzImage
    pvh: bool
    initrd: Path
    ssh_key: Path  # OpenSSH ed25519 private key (paramiko reads it)
    manifest: Path
    modules_dir: Path  # host copy of the guest's /lib/modules/<release>
    cmdline: str
    vmlinuz: Path  # the bzImage, always present (for firmware that cannot load an ELF)
    directory: Path  # the image folder
    variant: str = "stock"  # "stock", or "vulnerable": the positive control's mlx5_core (see variants.py)
    variant_manifest: Path | None = None  # the variant's own manifest (module identity), if not stock
    mlx5_debug_ko: Path | None = None  # mlx5_core.ko with debug info, for triage, when we built it


def image_from_manifest(folder: Path, data: dict[str, Any], ssh_key: Path) -> GuestImage:
    """The GuestImage described by a manifest of the image in ``folder`` (KeyError if incomplete)."""
    k = data["kernel"]
    return GuestImage(
        kernel_release=k["release"],
        package_version=k["version"],
        kernel=folder / k["file"],
        pvh=bool(k["pvh"]),
        initrd=folder / data["initrd"]["file"],
        ssh_key=ssh_key,
        manifest=folder / MANIFEST_NAME,
        modules_dir=folder / data["modules_dir"],
        cmdline=data["cmdline"],
        vmlinuz=folder / k["vmlinuz"],
        directory=folder,
    )

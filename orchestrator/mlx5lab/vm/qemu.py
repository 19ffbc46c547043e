"""Find the QEMU that has the vfio-user-pci client, and the command line every guest starts with."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from mlx5image.cache import cache_dir

from .. import Mlx5LabError

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "qemu-device" / "build-qemu.sh"
QEMU_VERSION = "10.2.2"  # keep in step with qemu-device/build-qemu.sh
FIRMWARE_DIRS = ("/usr/share/qemu", "/usr/share/seabios")
QBOOT = Path("/usr/share/qemu/qboot.rom")


@functools.cache
def has_vfio_user(binary: str) -> bool:
    try:
        out = subprocess.run([binary, "-device", "help"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return '"vfio-user-pci"' in out


def find_qemu() -> Path:
    """The QEMU to use, in the order build-qemu.sh documents; never builds (that is `make setup`)."""
    override = os.environ.get("MLX5LAB_QEMU")
    if override:
        if not has_vfio_user(override):
            raise Mlx5LabError(f"MLX5LAB_QEMU={override} does not offer -device vfio-user-pci (QEMU >= 10.1)")
        return Path(override)
    candidates = [shutil.which("qemu-system-x86_64"),
                  str(cache_dir() / "qemu" / QEMU_VERSION / "bin" / "qemu-system-x86_64")]
    for cand in candidates:
        if cand and Path(cand).is_file() and has_vfio_user(cand):
            return Path(cand)
    raise Mlx5LabError(
        "no QEMU with the vfio-user-pci client found: run `make setup` (or "
        f"`{BUILD_SCRIPT}`) to build one into {cache_dir() / 'qemu'}, or set MLX5LAB_QEMU"
    )


def firmware_args() -> list[str]:
    missing = [d for d in FIRMWARE_DIRS if not Path(d).is_dir()]
    if missing or not QBOOT.is_file():
        raise Mlx5LabError(
            "QEMU firmware is missing (qboot.rom, SeaBIOS): apt-get install qemu-system-data seabios, "
            "or run `make setup`"
        )
    args: list[str] = []
    for d in FIRMWARE_DIRS:
        args += ["-L", d]
    return args


def machine_args(qemu: Path, *, accel: str, memory_mb: int = 1024, cpus: int = 1, shared_memory: bool = False,
                 bios: Path = QBOOT, ram_file: Path | None = None) -> list[str]:
    """The machine every QEMU of the project runs: q35, ``-cpu max``, no display, no default devices.

    ``shared_memory`` backs guest RAM with a shared memfd, which the vfio-user client needs: it passes the
    memory's file descriptors to the device server (vfio-user spec, "VFIO_USER_DMA_MAP"), which maps them
    to reach guest memory directly. Without it, the server reaches guest memory only through
    VFIO_USER_DMA_READ/WRITE messages. ``ram_file`` (with ``shared_memory``) backs it with that file instead
    of a memfd: a snapshot boot's RAM, which outlives QEMU (:mod:`mlx5lab.vm.snapshot`).
    """
    mem = f"{memory_mb}M"
    backend = (f"memory-backend-file,id=mem,size={mem},mem-path={ram_file},share=on" if ram_file
               else f"memory-backend-memfd,id=mem,size={mem},share=on")
    return [
        str(qemu), *firmware_args(),
        "-accel", accel, "-cpu", "max", "-smp", str(cpus), "-m", mem,
        *(["-object", backend] if shared_memory else []),
        "-machine", "q35,memory-backend=mem" if shared_memory else "q35", "-bios", str(bios),
        "-display", "none", "-nodefaults", "-no-user-config",
    ]


def guest_args(qemu: Path, *, accel: str, kernel: Path, initrd: Path, cmdline: str, console: Path,
               memory_mb: int = 1024, cpus: int = 1, shared_memory: bool = False, ram_file: Path | None = None,
               console_append: bool = False) -> list[str]:
    """:func:`machine_args` booting a PVH (or bzImage) kernel directly with qboot, the serial console into a
    file: how every guest starts (a Machine, the KVM probe). ``console_append`` keeps what the file holds
    (a restored guest's console goes on from its snapshot's)."""
    serial = (["-chardev", f"file,id=console0,path={console},append=on", "-serial", "chardev:console0"]
              if console_append else ["-serial", f"file:{console}"])
    return [
        *machine_args(qemu, accel=accel, memory_mb=memory_mb, cpus=cpus, shared_memory=shared_memory,
                      ram_file=ram_file),
        "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline,
        *serial,
    ]

"""Find the QEMU that has the vfio-user-pci client, and decide between KVM and TCG."""

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

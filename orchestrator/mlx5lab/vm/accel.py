"""KVM or TCG: use KVM only when a short probe boot proves it works.

On these machines /dev/kvm exists but nested virtualisation hangs guests, so its existence proves
nothing. The probe boots the guest image under KVM and waits for its init marker; the verdict is cached
per host boot, QEMU binary and kernel, so it costs one probe per host boot.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

from mlx5image.build import GuestImage
from mlx5image.cache import cache_dir

from .. import Mlx5LabError
from ..rundir import RunDir, atomic_write_json, read_text
from .console import INIT_MARKER
from .process import ChildProcess
from .qemu import guest_args

log = logging.getLogger("mlx5lab.accel")
PROBE_TIMEOUT = 10.0


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def probe_kvm(qemu: Path, image: GuestImage, timeout: float = PROBE_TIMEOUT) -> bool:
    """Boot ``image`` under KVM; True if its init marker appears within ``timeout`` seconds."""
    with tempfile.TemporaryDirectory(prefix="mlx5lab-kvm-probe-") as tmp:
        console = Path(tmp) / RunDir.CONSOLE
        args = guest_args(qemu, accel="kvm", kernel=image.kernel, initrd=image.initrd,
                          cmdline=f"{image.cmdline} mlx5lab.probe=1", console=console, memory_mb=512)
        child = ChildProcess(args, None).start()
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and child.alive():
                if INIT_MARKER in read_text(console):
                    return True
                time.sleep(0.1)
            return False
        finally:
            child.stop(grace_s=0, terminate=False)


_PROBE_LOCK = threading.Lock()


def choose_accel(qemu: Path, image: GuestImage) -> str:
    forced = os.environ.get("MLX5LAB_ACCEL")
    if forced:
        if forced not in ("kvm", "tcg"):
            raise Mlx5LabError(f"MLX5LAB_ACCEL must be kvm or tcg, not {forced!r}")
        return forced
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    with _PROBE_LOCK:  # a pool's guests start together: one probe, not one per thread
        return _cached_verdict(qemu, image)


def _cached_verdict(qemu: Path, image: GuestImage) -> str:
    key = f"{_boot_id()}|{qemu}|{image.kernel_release}"
    verdict_file = cache_dir() / "kvm-probe.json"
    try:
        verdicts = json.loads(verdict_file.read_text())
    except (OSError, ValueError):
        verdicts = {}
    if key not in verdicts:
        log.info("probing whether KVM works (up to %.0fs, once per host boot)", PROBE_TIMEOUT)
        # Verdicts of earlier host boots are stale: keep this boot's only.
        verdicts = {k: v for k, v in verdicts.items() if k.startswith(_boot_id() + "|")}
        verdicts[key] = probe_kvm(qemu, image)
        atomic_write_json(verdict_file, verdicts)
    return "kvm" if verdicts[key] else "tcg"

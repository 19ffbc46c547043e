"""Snapshot boots: a guest booted once without its card, restored for each iteration, the card hot-plugged.

A classic iteration boots the kernel every time. A snapshot boot skips that: the *template* is a guest
booted with the card's PCIe root port empty and ``mlx5_core`` loaded, saved with QEMU's migration to a file;
each iteration restores it in a new QEMU and hot-plugs the card's functions into the root port. QEMU cannot
migrate a vfio-user device, so the card must not exist when the template is saved; hot-plug is how it then
appears. The guest's pciehp (``drivers/pci/hotplug/pciehp_ctrl.c: pciehp_enable_slot`` ->
``pciehp_pci.c: pciehp_configure_device``: ``pci_scan_slot``, then ``pci_bus_add_devices``) adds and probes
the functions in slot order, function 0 first, so ``devices_kset`` (the order ``kernel/reboot.c:
device_shutdown`` walks backwards) holds them in the order a boot's enumeration gives.

Guest RAM is a file (``memory-backend-file``, shared, as vfio-user needs) and the migration runs with
QEMU's ``x-ignore-shared`` capability: the stream holds the device state only, and an iteration's RAM is a
sparse copy of the template's RAM file (copy-on-start, ~0.1 s) instead of a RAM stream to parse.

Root-port hot-plug is the port's own PCIe native hot-plug (``-global
ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off``), as on a server's slot, not the ACPI-based scheme q35
machines use for root ports by default. What differs from a classic boot: the kernel's boot happened once,
in the template (its console is the start of every iteration's console), the card's probe runs in pciehp's
thread instead of ``modprobe``, and each iteration's guest starts from the same RAM (the same random
state): runs differ by the host's timing, as classic boots largely do under TCG.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlx5image.build import GuestImage
from mlx5image.cache import cache_dir

from .. import Mlx5LabError
from ..rundir import atomic_write_json
from .card import ROOT_PORT_ARGS

BOOT_MODES = ("classic", "snapshot")
NATIVE_HOTPLUG_ARGS = ("-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off")
SNAPSHOT_ARGS = (*ROOT_PORT_ARGS, *NATIVE_HOTPLUG_ARGS)  # the same in the template and in every restore
TEMPLATE_FORMAT = 1  # bump when what a template holds changes
MIGRATION_TIMEOUT_S = 120.0

Progress = Callable[[str], None]

# Waits (in the restored guest, over SSH) until ``$1`` mlx5 functions are bound (the ``driver`` link exists
# only once the probe returned: drivers/base/dd.c: driver_bound) with their netdevs, brings every mlx5
# netdev up unless mlx5lab.ifup=0, and prints the ports marker on the console as the init does at boot.
CARD_WAIT_SCRIPT = r"""
want=$1 deadline=$((SECONDS + $2)) ifs=""
while :; do
    bound=0 ifs=""
    for d in /sys/bus/pci/devices/*; do
        [ "$(cat "$d/vendor" 2>/dev/null)" = 0x15b3 ] || continue
        [ -e "$d/driver" ] && [ -d "$d/net" ] || continue
        bound=$((bound + 1))
        for n in "$d"/net/*; do ifs="$ifs ${n##*/}"; done
    done
    [ "$bound" -ge "$want" ] && break
    [ "$SECONDS" -ge "$deadline" ] && { echo "only $bound of $want mlx5 functions came up" >&2; break; }
    sleep 0.02
done
grep -q 'mlx5lab.ifup=0' /proc/cmdline || for i in $ifs; do ip link set "$i" up; done
read -r up _ </proc/uptime
echo "MLX5LAB-PORTS $up$ifs" >/dev/console
"""


@dataclass(frozen=True)
class Template:
    """A saved guest without its card: device state, RAM file, the boot's console."""

    folder: Path

    @property
    def state(self) -> Path:
        return self.folder / "state.mig"

    @property
    def ram(self) -> Path:
        return self.folder / "ram"

    @property
    def console(self) -> Path:
        return self.folder / "console.log"

    @property
    def meta(self) -> Path:
        return self.folder / "template.json"


def _file_id(p: Path) -> list[Any]:
    st = p.stat()
    return [str(p), st.st_size, st.st_mtime_ns]


def template_inputs(qemu: Path, image: GuestImage, *, cmdline: str, memory_mb: int, cpus: int,
                    accel: str) -> dict[str, Any]:
    """Everything a template depends on: a change to any of them makes a new template."""
    return {"format": TEMPLATE_FORMAT, "qemu": _file_id(qemu), "kernel": _file_id(image.kernel),
            "initrd": _file_id(image.initrd), "cmdline": cmdline, "memory_mb": memory_mb, "cpus": cpus,
            "accel": accel, "args": list(SNAPSHOT_ARGS)}


def template_key(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def template_exists(qemu: Path, image: GuestImage, *, cmdline: str, memory_mb: int, cpus: int,
                    accel: str) -> bool:
    inputs = template_inputs(qemu, image, cmdline=cmdline, memory_mb=memory_mb, cpus=cpus, accel=accel)
    return Template(cache_dir() / "snapshots" / template_key(inputs)).meta.is_file()


def ensure_template(qemu: Path, image: GuestImage, *, cmdline: str, memory_mb: int, cpus: int, accel: str,
                    extra_cmdline: str, progress: Progress | None = None) -> Template:
    """The template for this guest, made on first use (one boot, ~10 s under TCG) under a lock, so guests of
    a pool or of several processes wait for one making it."""
    inputs = template_inputs(qemu, image, cmdline=cmdline, memory_mb=memory_mb, cpus=cpus, accel=accel)
    root = cache_dir() / "snapshots"
    root.mkdir(parents=True, exist_ok=True)
    key = template_key(inputs)
    tpl = Template(root / key)
    if tpl.meta.is_file():
        return tpl
    with (root / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tpl.meta.is_file():
            return tpl
        (progress or (lambda _m: None))(f"snapshot boot: saving a guest without its card to {tpl.folder} "
                                        "(once per kernel, variant and machine)")
        tmp = root / f".{key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            _save_template(Template(tmp), image, memory_mb=memory_mb, cpus=cpus, accel=accel,
                           extra_cmdline=extra_cmdline)
            atomic_write_json(Template(tmp).meta, {**inputs, "saved": time.time()})
            shutil.rmtree(tpl.folder, ignore_errors=True)
            tmp.rename(tpl.folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return tpl


def _save_template(tpl: Template, image: GuestImage, *, memory_mb: int, cpus: int, accel: str,
                   extra_cmdline: str) -> None:
    from .machine import Machine, MachineConfig  # (machine.py imports this module)

    cfg = MachineConfig(image=image, memory_mb=memory_mb, cpus=cpus, accel=accel, workdir=tpl.folder / "boot",
                        extra_cmdline=extra_cmdline, extra_args=list(SNAPSHOT_ARGS), ram_file=tpl.ram)
    with Machine(cfg) as m:
        m.wait_ssh(timeout=180)
        res = m.run("modprobe mlx5_core", timeout=60)
        if res.status != 0:
            raise Mlx5LabError(f"snapshot template: modprobe mlx5_core failed: {res.stderr.strip()}")
        assert m.shell is not None and m.qmp is not None
        m.shell.close()
        m.shell = None
        m.qmp.execute("stop")
        set_ignore_shared(m)
        m.qmp.execute("migrate", {"uri": f"file:{tpl.state}"})
        wait_migration(m, "saving the snapshot template")
        shutil.copyfile(m.console_log, tpl.console)
    shutil.rmtree(tpl.folder / "boot", ignore_errors=True)


def set_ignore_shared(m: Any) -> None:
    m.qmp.execute("migrate-set-capabilities",
                  {"capabilities": [{"capability": "x-ignore-shared", "state": True}]})


def wait_migration(m: Any, what: str, timeout: float = MIGRATION_TIMEOUT_S) -> None:
    """Wait for the (outgoing or incoming) migration to complete; Mlx5LabError if it fails or stalls."""
    deadline = time.monotonic() + timeout
    while True:
        st = m.qmp.execute("query-migrate")
        status = st.get("status")
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            raise Mlx5LabError(f"{what}: migration {status}: {st.get('error-desc', 'no reason given')}")
        if time.monotonic() > deadline:
            raise Mlx5LabError(f"{what}: migration still {status} after {timeout:.0f} s")
        time.sleep(0.01)


def copy_ram(template: Template, dest: Path) -> None:
    """A sparse copy of the template's RAM (coreutils cp: holes stay holes, so ~0.1 s, not 1 GiB)."""
    res = subprocess.run(["cp", "--sparse=always", str(template.ram), str(dest)], capture_output=True,
                         text=True)
    if res.returncode != 0:
        raise Mlx5LabError(f"could not copy the snapshot's RAM to {dest}: {res.stderr.strip()}")


RAM_COPY_PREFIX = "mlx5lab-ram-"


def ram_copy_path(owner: int) -> Path:
    """A new RAM copy's name: it carries its process id, so a copy a killed process left can be found."""
    sweep_ram_copies()
    return ram_dir() / f"{RAM_COPY_PREFIX}{os.getpid()}-{owner:x}"


def sweep_ram_copies() -> list[Path]:
    """Remove the RAM copies of processes that are gone (a kill -9 between the copy and QEMU's start)."""
    removed = []
    for p in ram_dir().glob(f"{RAM_COPY_PREFIX}*-*"):
        pid = p.name[len(RAM_COPY_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def ram_dir() -> Path:
    """Where an iteration's RAM copy lives while QEMU starts (it is unlinked once QEMU has it open)."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(os.environ.get("TMPDIR", "/tmp"))

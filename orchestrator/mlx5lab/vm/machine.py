"""A QEMU guest: start, wait for SSH, run commands, catch a panic, and always clean up.

Nothing outlives a Machine: QEMU runs in its own session (a terminal's Ctrl-C reaches only the
orchestrator, which then shuts QEMU down in order) and with a parent-death signal (if the orchestrator
is killed outright, the kernel kills QEMU); the run folder is a temporary one unless the caller keeps it.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import socket
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from mlx5dev.rundir import remove_socket
from mlx5image.build import GuestImage

from .. import Mlx5LabError
from ..crash import CrashReport, crash_report
from ..rundir import RunDir, read_text
from .accel import choose_accel
from .card import CardConfig, CardServer
from .console import INIT_MARKER, PORTS_MARKER, SSH_MARKER, count_markers
from .process import ChildProcess
from .qemu import find_qemu, guest_args
from .qmp import QmpConnection, QmpEvent
from .snapshot import (
    CARD_WAIT_SCRIPT,
    SNAPSHOT_ARGS,
    Template,
    copy_ram,
    ensure_template,
    ram_copy_path,
    set_ignore_shared,
    wait_migration,
)
from .ssh import CommandResult, GuestShell

log = logging.getLogger("mlx5lab.machine")
BOOT_MARKERS = (INIT_MARKER, PORTS_MARKER, SSH_MARKER)


CONSOLE_TAIL_LINES = 15  # of the console, in a timeout's message (a CI log then shows where the guest stood)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MachineConfig:
    image: GuestImage
    memory_mb: int = 1024
    cpus: int = 2
    accel: str | None = None  # None: KVM if a probe boot proves it works, else TCG
    extra_args: list[str] = field(default_factory=list)  # e.g. vfio-user devices
    extra_cmdline: str = ""
    workdir: Path | None = None  # kept after close; None: a temporary folder that is removed
    card: CardConfig | None = None  # the emulated ConnectX card; None: no mlx5 device
    boot: str = "classic"  # or "snapshot": restore a saved guest and hot-plug the card (vm/snapshot.py)
    ram_file: Path | None = None  # guest RAM in this file instead of a memfd (a snapshot template's)


@dataclass
class PanicReport:
    event_time: float  # monotonic time of GUEST_PANICKED
    title: str
    oops: str
    console_log: Path


_LIVE: weakref.WeakSet[Machine] = weakref.WeakSet()  # every started, not yet closed guest of this process
_LIVE_LOCK = threading.Lock()


def kill_all_guests() -> int:
    """SIGKILL the QEMU of every live guest of this process (a pool's Ctrl-C: the guests run in other
    threads, which then see their QEMU gone and clean up as usual); return how many were killed."""
    with _LIVE_LOCK:
        machines = list(_LIVE)
    killed = 0
    for m in machines:
        proc = m.qemu.proc if m.qemu is not None else None
        if proc is not None and proc.poll() is None:
            proc.kill()
            killed += 1
    return killed


class Machine:
    """One guest. Use as a context manager; ``close()`` is idempotent."""

    def __init__(self, config: MachineConfig) -> None:
        self.config = config
        self._tmp = None if config.workdir else tempfile.mkdtemp(prefix="mlx5lab-")
        self.workdir = Path(config.workdir or self._tmp or ".")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.dir = RunDir(self.workdir)
        self.console_log = self.dir.console
        self.qmp_socket = self.dir.qmp_socket
        self.qemu: ChildProcess | None = None
        self.qmp: QmpConnection | None = None
        self.shell: GuestShell | None = None
        self.ssh_port = 0
        self.started_at = 0.0
        self.accel = ""
        self._closed = False
        self._ssh_markers_seen = 0
        self._cleanups: list[Callable[[], None]] = []
        self.marker_times: dict[str, list[float]] = {}
        self.card: CardServer | None = None
        self.phases: dict[str, float] = {}  # a snapshot boot's steps, seconds from start() (host clock)
        self.console_offset = 0  # where this machine's own console output starts (after a snapshot's)
        self._ram_copy: Path | None = None
        self._start_t0 = 0.0
        self._card_pending = False  # a snapshot boot's card is plugged but not yet seen up

    # -- life cycle -------------------------------------------------------------------------------
    def __enter__(self) -> Machine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_cleanup(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` at close, after QEMU is gone (device servers and the like)."""
        self._cleanups.append(fn)

    @property
    def cmdline(self) -> str:
        return " ".join(filter(None, [self.config.image.cmdline, self.config.extra_cmdline]))

    @property
    def snapshot(self) -> bool:
        return self.config.boot == "snapshot"

    def qemu_args(self, qemu: Path) -> list[str]:
        img = self.config.image
        ram = self._ram_copy or self.config.ram_file
        if self.snapshot:  # the card comes later, by hot-plug, into the saved root port
            devices = [*SNAPSHOT_ARGS, "-incoming", "defer"]
        else:
            devices = self.card.qemu_args() if self.card else []
        return [
            *guest_args(qemu, accel=self.accel, kernel=img.kernel, initrd=img.initrd, cmdline=self.cmdline,
                        console=self.console_log, memory_mb=self.config.memory_mb, cpus=self.config.cpus,
                        shared_memory=True, ram_file=ram, console_append=self.snapshot),
            "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22",
            "-device", "virtio-net-pci,netdev=n0,romfile=",
            "-device", "pvpanic", "-device", "vmcoreinfo", "-action", "panic=pause",
            "-qmp", f"unix:{self.qmp_socket},server=on,wait=off",
            *devices,
            *self.config.extra_args,
        ]

    def start(self) -> None:
        """Start the card's device server (if any) and QEMU; on any failure, clean up and re-raise."""
        with _LIVE_LOCK:
            _LIVE.add(self)
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        t0 = self._start_t0 = time.monotonic()
        qemu = find_qemu()
        self.accel = self.config.accel or choose_accel(qemu, self.config.image)
        template = None
        if self.snapshot:
            if self.config.card is None:
                raise Mlx5LabError("a snapshot boot needs a card (it is what the restore hot-plugs)")
            template = ensure_template(qemu, self.config.image, cmdline=self.cmdline,
                                       memory_mb=self.config.memory_mb, cpus=self.config.cpus, accel=self.accel,
                                       extra_cmdline=self.config.extra_cmdline)
            self.phases["template_s"] = time.monotonic() - t0
        if self.config.card is not None:
            self.card = CardServer(self.config.card, self.dir.card.path)
            self.add_cleanup(self.card.stop)
            self.card.start()  # the device server listens before QEMU connects
        for attempt in range(3):
            self.ssh_port = free_port()
            if template is not None:
                self._prepare_restore(template)
            self.started_at = time.monotonic()
            self.qemu = ChildProcess(self.qemu_args(qemu), self.dir.qemu_stderr).start()
            try:
                self.qmp = QmpConnection(self.qmp_socket)
                self.qmp.connect(timeout=15, alive=self.alive)
                break
            except ConnectionError as exc:
                err = read_text(self.dir.qemu_stderr)
                self._stop_qemu()
                if "host forwarding" in err and attempt < 2:
                    continue  # the free port was taken in between: try another
                raise Mlx5LabError(f"QEMU did not start: {err.strip() or exc}") from exc
            finally:
                self._drop_ram_copy()  # QEMU has it mapped (or failed): the name is not needed any more
        self.phases["qemu_start_s"] = time.monotonic() - t0
        if template is not None:
            self._restore(template, t0)

    def _prepare_restore(self, template: Template) -> None:
        """The iteration's RAM (a copy of the template's) and its console (the template's boot, continued)."""
        self._ram_copy = ram_copy_path(id(self))
        copy_ram(template, self._ram_copy)
        shutil.copyfile(template.console, self.console_log)
        self.console_offset = self.console_log.stat().st_size

    def _drop_ram_copy(self) -> None:
        if self._ram_copy is not None:
            self._ram_copy.unlink(missing_ok=True)
            self._ram_copy = None

    def _restore(self, template: Template, t0: float) -> None:
        """Load the template's device state, run the guest, hot-plug the card's functions."""
        assert self.qmp is not None and self.card is not None
        set_ignore_shared(self)
        self.qmp.execute("migrate-incoming", {"uri": f"file:{template.state}"})
        wait_migration(self, f"restoring the snapshot {template.folder}")
        self.phases["restore_s"] = time.monotonic() - t0
        self.qmp.execute("cont")
        # Function 0 last: QEMU's root port signals the slot's hot-plug when function 0 arrives
        # (hw/pci/pcie.c: pcie_cap_slot_plug_cb), so the guest scans a slot that holds every function.
        for dev in reversed(self.card.function_devices()):
            self.qmp.execute("device_add", dev)
        self.phases["hotplug_s"] = time.monotonic() - t0
        self._card_pending = True

    def _stop_qemu(self) -> None:
        if self.shell is not None:
            self.shell.close()
            self.shell = None
        if self.qmp is not None:
            if self.alive():
                try:
                    self.qmp.execute("quit", timeout=5)
                except Exception as exc:
                    log.debug("QMP quit: %r", exc)
            self.qmp.close()
            self.qmp = None
        if self.qemu is not None:
            self.qemu.stop(terminate=False)  # asked to quit over QMP; killed if it does not
            self.qemu = None
        remove_socket(self.qmp_socket)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with _LIVE_LOCK:
            _LIVE.discard(self)
        try:
            self._stop_qemu()
        finally:
            self._drop_ram_copy()
            for fn in reversed(self._cleanups):
                try:
                    fn()
                except Exception as exc:
                    log.warning("cleanup failed: %r", exc)
            if self._tmp:
                shutil.rmtree(self._tmp, ignore_errors=True)

    # -- observing the guest ----------------------------------------------------------------------
    def console_text(self) -> str:
        return read_text(self.console_log)

    def alive(self) -> bool:
        return self.qemu is not None and self.qemu.alive()

    def _scan_console(self) -> str:
        """Read the console and note when each boot marker was first seen (host time since start)."""
        text = self.console_text()
        now = time.monotonic() - self.started_at
        for marker in BOOT_MARKERS:
            seen = self.marker_times.setdefault(marker, [])
            for _ in range(count_markers(text, marker) - len(seen)):
                seen.append(now)
        return text

    def wait_console(self, marker: str, count: int = 1, timeout: float = 60.0) -> float:
        """Wait until ``marker`` has appeared ``count`` times; return seconds from QEMU start to then."""
        deadline = time.monotonic() + timeout
        while True:
            if marker in BOOT_MARKERS:
                self._scan_console()
                if len(self.marker_times[marker]) >= count:
                    return self.marker_times[marker][count - 1]
            elif count_markers(self.console_text(), marker) >= count:
                return time.monotonic() - self.started_at
            if not self.alive():
                raise Mlx5LabError(f"QEMU exited before the guest printed {marker}; see {self.console_log}")
            if time.monotonic() > deadline:
                tail = "\n".join(self.console_text().splitlines()[-CONSOLE_TAIL_LINES:])
                raise TimeoutError(f"guest did not print {marker} within {timeout:.0f}s; the console's last "
                                   f"lines ({self.console_log}):\n{tail}")
            time.sleep(0.01)

    def wait_ssh(self, timeout: float = 60.0) -> float:
        """Wait for the next boot's SSH server and connect; return seconds since QEMU start."""
        deadline = time.monotonic() + timeout
        self._ssh_markers_seen += 1
        self.wait_console(SSH_MARKER, self._ssh_markers_seen, timeout)
        if self.shell is not None:
            self.shell.close()
        self.shell = GuestShell(self.ssh_port, self.config.image.ssh_key)
        self.shell.connect(deadline, self.alive)
        # The first command after the marker has been seen to fail; prove the session works.
        while True:
            try:
                self.shell.run("true", timeout=10)
                break
            except (ConnectionError, TimeoutError, OSError, EOFError, paramiko.SSHException) as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"SSH never answered: {exc!r}") from exc
                self.shell.connect(deadline, self.alive)
        if self._card_pending:
            self._wait_card(deadline)
        return time.monotonic() - self.started_at

    def _wait_card(self, deadline: float) -> None:
        """A snapshot boot: wait for the hot-plugged functions' probe and bring their ports up, as the
        init does after modprobe at boot (it prints the same ports marker)."""
        assert self.card is not None and self.shell is not None
        self._card_pending = False
        left = max(5, int(deadline - time.monotonic()))
        n = len(self.card.spec.functions)
        res = self.shell.run(f"bash -c {shlex.quote(CARD_WAIT_SCRIPT)} card-wait {n} {left}", timeout=left + 10)
        if res.status != 0 or res.stderr.strip():
            log.warning("snapshot boot: %s", res.stderr.strip() or f"card wait exited {res.status}")
        self.phases["card_up_s"] = time.monotonic() - self._start_t0

    def reconnect_ssh(self, timeout: float = 20.0) -> None:
        """A new SSH connection to the running guest (no new boot marker is waited for)."""
        if self.shell is None:
            raise Mlx5LabError("guest SSH is not connected (call wait_ssh first)")
        self.shell.connect(time.monotonic() + timeout, self.alive)

    def wait_init(self, timeout: float = 60.0) -> float:
        """Seconds from QEMU start to the first boot's init marker (the plain kernel boot time)."""
        return self.wait_console(INIT_MARKER, 1, timeout)

    def run(self, command: str, timeout: float = 60.0) -> CommandResult:
        if self.shell is None:
            raise Mlx5LabError("guest SSH is not connected (call wait_ssh first)")
        return self.shell.run(command, timeout)

    def start_command(self, command: str) -> None:
        if self.shell is None:
            raise Mlx5LabError("guest SSH is not connected (call wait_ssh first)")
        self.shell.start(command)

    def wait_event(self, names: Iterable[str], timeout: float, since: int = 0) -> QmpEvent | str | None:
        """The first QMP event named in ``names`` after event index ``since``; a reason string if QEMU or
        the device server died first; None on timeout. The one wait for a guest's verdict."""
        assert self.qmp is not None
        wanted = set(names)
        deadline = time.monotonic() + timeout
        while True:
            ev = self.qmp.events.wait_for(wanted, timeout=max(0.0, min(0.2, deadline - time.monotonic())),
                                          start=since)
            if ev is not None:
                return ev
            if not self.alive():
                return "QEMU exited"
            if self.card is not None and not self.card.alive():
                return "the device server exited"
            if time.monotonic() >= deadline:
                return None

    def wait_panic(self, timeout: float, since: int = 0) -> PanicReport | None:
        """The guest's next panic (QMP GUEST_PANICKED), with the oops cut from the console; None if none."""
        ev = self.wait_event({"GUEST_PANICKED"}, timeout, since)
        if not isinstance(ev, QmpEvent):
            return None
        report = self.crash_after_event()
        return PanicReport(ev.received, report.title if report else "", report.oops if report else "",
                           self.console_log)

    def crash_after_event(self, wait_s: float = 1.0) -> CrashReport | None:
        """The crash report on the console after a panic event: the console file trails the event by a
        few writes, so wait (up to ``wait_s``) for the report to be complete up to its panic line."""
        report = None
        deadline = time.monotonic() + wait_s
        while True:
            report = crash_report(self.console_text())
            if (report is not None and report.is_panic) or time.monotonic() >= deadline:
                return report
            time.sleep(0.05)

    def event_index(self) -> int:
        assert self.qmp is not None
        return len(self.qmp.events.events)


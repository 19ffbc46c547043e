"""A QEMU guest: start, wait for SSH, run commands, catch a panic, and always clean up.

Nothing outlives a Machine: QEMU runs in its own session (a terminal's Ctrl-C reaches only the
orchestrator, which then shuts QEMU down in order) and with a parent-death signal (if the orchestrator
is killed outright, the kernel kills QEMU); the run folder is a temporary one unless the caller keeps it.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from mlx5image.build import GuestImage

from .. import Mlx5LabError
from .accel import choose_accel
from .card import CardConfig, CardServer
from .console import INIT_MARKER, PORTS_MARKER, SSH_MARKER, count_markers, extract_oops, oops_title
from .process import dies_with_parent
from .qemu import QBOOT, find_qemu, firmware_args
from .qmp import QmpConnection
from .ssh import CommandResult, GuestShell

log = logging.getLogger("mlx5lab.machine")
BOOT_MARKERS = (INIT_MARKER, PORTS_MARKER, SSH_MARKER)


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


@dataclass
class PanicReport:
    event_time: float  # monotonic time of GUEST_PANICKED
    title: str
    oops: str
    console_log: Path


class Machine:
    """One guest. Use as a context manager; ``close()`` is idempotent."""

    def __init__(self, config: MachineConfig) -> None:
        self.config = config
        self._tmp = None if config.workdir else tempfile.mkdtemp(prefix="mlx5lab-")
        self.workdir = Path(config.workdir or self._tmp or ".")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.console_log = self.workdir / "console.log"
        self.qmp_socket = self.workdir / "qmp.sock"
        self.proc: subprocess.Popen[bytes] | None = None
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

    # -- life cycle -------------------------------------------------------------------------------
    def __enter__(self) -> Machine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_cleanup(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` at close, after QEMU is gone (device servers and the like)."""
        self._cleanups.append(fn)

    def qemu_args(self, qemu: Path) -> list[str]:
        img = self.config.image
        cmdline = " ".join(filter(None, [img.cmdline, self.config.extra_cmdline]))
        mem = f"{self.config.memory_mb}M"
        accel = self.accel
        return [
            str(qemu), *firmware_args(),
            "-accel", accel, "-cpu", "max", "-smp", str(self.config.cpus), "-m", mem,
            "-object", f"memory-backend-memfd,id=mem,size={mem},share=on",
            "-machine", "q35,memory-backend=mem", "-bios", str(QBOOT),
            "-display", "none", "-nodefaults", "-no-user-config",
            "-kernel", str(img.kernel), "-initrd", str(img.initrd), "-append", cmdline,
            "-serial", f"file:{self.console_log}",
            "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22",
            "-device", "virtio-net-pci,netdev=n0,romfile=",
            "-device", "pvpanic", "-device", "vmcoreinfo", "-action", "panic=pause",
            "-qmp", f"unix:{self.qmp_socket},server=on,wait=off",
            *(self.card.qemu_args() if self.card else []),
            *self.config.extra_args,
        ]

    def start(self) -> None:
        """Start the card's device server (if any) and QEMU; on any failure, clean up and re-raise."""
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        qemu = find_qemu()
        self.accel = self.config.accel or choose_accel(qemu, self.config.image)
        if self.config.card is not None:
            self.card = CardServer(self.config.card, self.workdir / "card")
            self.add_cleanup(self.card.stop)
            self.card.start()  # the device server listens before QEMU connects
        for attempt in range(3):
            self.ssh_port = free_port()
            args = self.qemu_args(qemu)
            log.debug("starting %s", " ".join(args))
            self.started_at = time.monotonic()
            stderr = open(self.workdir / "qemu.stderr", "wb")  # noqa: SIM115 - lives as long as QEMU
            self.proc = subprocess.Popen(dies_with_parent(args), stdin=subprocess.DEVNULL, stdout=stderr,
                                         stderr=stderr, start_new_session=True)
            stderr.close()
            try:
                self.qmp = QmpConnection(self.qmp_socket)
                self.qmp.connect(timeout=15, alive=lambda: self.proc is not None and self.proc.poll() is None)
                return
            except ConnectionError as exc:
                err = (self.workdir / "qemu.stderr").read_text(errors="replace")
                self._stop_qemu()
                if "host forwarding" in err and attempt < 2:
                    continue  # the free port was taken in between: try another
                raise Mlx5LabError(f"QEMU did not start: {err.strip() or exc}") from exc

    def _stop_qemu(self) -> None:
        if self.shell is not None:
            self.shell.close()
            self.shell = None
        if self.qmp is not None:
            if self.proc is not None and self.proc.poll() is None:
                try:
                    self.qmp.execute("quit", timeout=5)
                except Exception as exc:
                    log.debug("QMP quit: %r", exc)
            self.qmp.close()
            self.qmp = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None
        self.qmp_socket.unlink(missing_ok=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._stop_qemu()
        finally:
            for fn in reversed(self._cleanups):
                try:
                    fn()
                except Exception as exc:
                    log.warning("cleanup failed: %r", exc)
            if self._tmp:
                shutil.rmtree(self._tmp, ignore_errors=True)

    # -- observing the guest ----------------------------------------------------------------------
    def console_text(self) -> str:
        try:
            return self.console_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

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
                raise TimeoutError(f"guest did not print {marker} within {timeout:.0f}s")
            time.sleep(0.01)

    def wait_ssh(self, timeout: float = 60.0) -> float:
        """Wait for the next boot's SSH server and connect; return seconds since QEMU start."""
        deadline = time.monotonic() + timeout
        self._ssh_markers_seen += 1
        self.wait_console(SSH_MARKER, self._ssh_markers_seen, timeout)
        if self.shell is not None:
            self.shell.close()
        self.shell = GuestShell(self.ssh_port, self.config.image.ssh_key)
        self.shell.connect(deadline)
        # The first command after the marker has been seen to fail; prove the session works.
        while True:
            try:
                self.shell.run("true", timeout=10)
                break
            except (ConnectionError, TimeoutError, OSError, EOFError, paramiko.SSHException) as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"SSH never answered: {exc!r}") from exc
                self.shell.connect(deadline)
        return time.monotonic() - self.started_at

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

    def wait_panic(self, timeout: float, since: int = 0) -> PanicReport | None:
        """The guest's next panic (QMP GUEST_PANICKED), with the oops cut from the console; None if none."""
        assert self.qmp is not None
        deadline = time.monotonic() + timeout
        while (ev := self.qmp.events.wait_for({"GUEST_PANICKED"}, 0.2, start=since)) is None:
            if not self.alive() or time.monotonic() > deadline:
                return None
        oops = ""
        for _ in range(20):  # the console file may trail the event by a few writes
            oops = extract_oops(self.console_text()) or ""
            if "Kernel panic" in oops:
                break
            time.sleep(0.05)
        return PanicReport(ev.received, oops_title(oops), oops, self.console_log)

    def event_index(self) -> int:
        assert self.qmp is not None
        return len(self.qmp.events.events)


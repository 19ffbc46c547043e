"""``mlx5lab shell``: boot the guest with the emulated card and attach an interactive terminal to it.

The terminal is an SSH login shell on a guest pty over the machine's own paramiko connection
(``GuestShell.open_terminal``); the host terminal is in raw mode while attached, so every key, Ctrl-C and
Ctrl-Z included, goes to the guest (``mlx5lab.vm.terminal``). The session ends when the guest shell exits,
when the guest panics or QEMU or the device server dies (``mlx5lab.vm.watch``), or on SIGTERM/SIGHUP.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko

from .. import Mlx5LabError
from ..rundir import atomic_write
from ..vm.terminal import RawMode, RelayEnd, relay, terminal_size
from ..vm.watch import GuestTrouble, GuestWatch
from . import common
from .cardopts import add_card, card_settings

if TYPE_CHECKING:
    from ..vm.machine import Machine

#: Exit status after a guest panic (as ``race``'s "a panic was found").
EXIT_PANIC = 1
#: Exit status when the session broke for a reason other than the guest's kernel (QEMU died, SSH lost).
EXIT_BROKEN = 2


def mlx5lab_invocation(argv0: str | None = None, environ: dict[str, str] | None = None) -> list[str]:
    """How this process was started, so a printed command runs the same mlx5lab from another terminal:
    ``PYTHONPATH=... python -m mlx5lab`` for ``python -m``, else the program's name if PATH finds it, else
    its absolute path."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    environ = dict(os.environ) if environ is None else environ
    if Path(argv0).name == "__main__.py":
        env = [f"PYTHONPATH={environ['PYTHONPATH']}"] if environ.get("PYTHONPATH") else []
        return [*env, sys.executable, "-m", "mlx5lab"]
    found = shutil.which(Path(argv0).name, path=environ.get("PATH"))
    if found and Path(found).resolve() == Path(argv0).resolve():
        return [Path(argv0).name]
    return [str(Path(argv0).resolve())]


def control_hint(run: Path, invocation: list[str]) -> str:
    """The control-channel command for ``run`` (``mlx5lab control RUN status``), ready to paste."""
    return shlex.join([*invocation, "control", str(run), "status"])


def require_terminal(fd: int) -> None:
    """The shell needs a terminal on stdin (raw mode, window size); say so, with the alternative."""
    if not os.isatty(fd):
        raise Mlx5LabError("mlx5lab shell needs a terminal on stdin (it is a pipe or a file); "
                           "to run commands without one use `mlx5lab boot --run CMD`")


@dataclass(frozen=True)
class SessionOutcome:
    status: int  # mlx5lab's exit status
    keep_folder: bool  # the run folder holds evidence (a crash, a dead QEMU): keep it


def why_gone(watch: GuestWatch, wait_s: float = 3.0) -> GuestTrouble | None:
    """The SSH channel ended without an exit status: the guest went away under the shell (a reboot, a
    panic, QEMU gone). Its QMP event can trail the connection's end; wait for it up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        trouble = watch()
        if trouble is not None or time.monotonic() >= deadline:
            return trouble
        time.sleep(0.1)


def attach(m: Machine, vmcore: bool = True) -> SessionOutcome:
    """Attach this process's terminal to a login shell on a guest pty until the session ends; report how
    it ended."""
    assert m.shell is not None
    columns, rows = terminal_size(sys.stdin.fileno())
    chan = m.shell.open_terminal(os.environ.get("TERM") or "vt100", columns, rows)
    watch = GuestWatch(m)
    try:
        with RawMode(sys.stdin.fileno()):
            end: RelayEnd[GuestTrouble] = relay(chan, sys.stdin.fileno(), sys.stdout.fileno(), watch=watch)
    except (OSError, EOFError, paramiko.SSHException) as exc:  # the SSH connection broke under the relay
        end = RelayEnd("stopped", stopped_by=why_gone(watch) or GuestTrouble(f"the SSH connection failed ({exc!r})",
                                                                              None))
    finally:
        chan.close()
    print(file=sys.stderr)  # the guest's last line may not have ended
    for report in watch.warnings.values():
        common.progress(f"the guest's console reported: {report.title}")
        sys.stderr.write(report.oops.rstrip("\n") + "\n")
    kept = bool(watch.warnings)
    if end.reason == "exited" and (end.status is None or end.status < 0):
        trouble = why_gone(watch)
        if trouble is None:
            common.progress("the guest's SSH channel closed without an exit status")
            return SessionOutcome(EXIT_BROKEN, True)
        end = RelayEnd("stopped", stopped_by=trouble)
    if end.reason == "exited":
        assert end.status is not None
        common.progress(f"guest shell exited with status {end.status}")
        return SessionOutcome(end.status, kept)
    if end.reason == "input-closed":
        common.progress("the terminal closed")
        return SessionOutcome(130, kept)
    trouble = end.stopped_by
    assert trouble is not None
    return report_trouble(m, trouble, vmcore, kept)


def report_trouble(m: Machine, trouble: GuestTrouble, vmcore: bool, keep: bool) -> SessionOutcome:
    """A panic: its title and oops (oops.txt), and the vmcore (vmcore.kdump) unless ``vmcore`` is False;
    the guest's own reboot or power-off: a clean end (status 0); QEMU or the device server dead: what the
    console last said. ``keep``: the folder holds evidence already (a warning)."""
    from ..campaign.evidence import dump_vmcore

    report = trouble.report
    if trouble.what in ("reboot", "poweroff"):
        common.progress(f"the guest {'rebooted' if trouble.what == 'reboot' else 'powered off'}: "
                        "that ends the session")
        return SessionOutcome(0, keep)
    if trouble.what != "panic":
        common.progress(f"{trouble.what} while attached; see {m.dir.console} and {m.dir.qemu_stderr}")
        if report is not None:
            sys.stderr.write(report.oops.rstrip("\n") + "\n")
        return SessionOutcome(EXIT_BROKEN, True)
    common.progress(f"the guest panicked: {report.title if report else 'no crash report on the console'}")
    if report is not None:
        sys.stderr.write(report.oops.rstrip("\n") + "\n")
        atomic_write(m.dir.oops, report.oops)
        common.progress(f"oops: {m.dir.oops}")
    if vmcore and m.alive():
        common.progress("saving guest memory (kdump-zlib) ...")
        try:
            took = dump_vmcore(m, m.dir.vmcore)
            common.progress(f"vmcore: {m.dir.vmcore} ({took:.1f} s; `mlx5lab triage {m.workdir}` reads it)")
        except Exception as exc:  # the oops and the console log are kept either way
            common.progress(f"no vmcore: the dump failed: {exc!r}")
    else:
        common.progress("no vmcore (--no-vmcore)" if not vmcore else "no vmcore: QEMU is gone")
    common.progress(f"console log: {m.dir.console}")
    return SessionOutcome(EXIT_PANIC, True)


def cmd_shell(args: argparse.Namespace) -> int:
    from mlx5dev.card import CardConfig
    from mlx5image.variants import ensure_variant

    from ..vm.machine import Machine, MachineConfig

    require_terminal(sys.stdin.fileno())
    img = ensure_variant(common.image(args), args.variant, progress=common.progress)
    card = CardConfig.from_speeds(args.speeds, **card_settings(args))
    temporary = args.keep is None
    folder = Path(tempfile.mkdtemp(prefix="mlx5lab-shell-")) if temporary else args.keep
    keep = not temporary
    try:
        with Machine(MachineConfig(image=img, workdir=folder, memory_mb=args.memory, card=card)) as m:
            common.progress(f"booting {img.kernel_release} ({img.variant}, "
                            f"{'PVH' if img.pvh else 'bzImage'}, {m.accel})")
            t = m.wait_ssh(timeout=args.timeout)
            common.progress(f"SSH ready after {t:.2f} s")
            common.progress(f"run folder: {folder}" + (" (removed at exit; --keep DIR keeps it)"
                                                        if temporary else ""))
            common.progress(f"card control from a second terminal: {control_hint(folder, mlx5lab_invocation())}"
                            " (or set_link function=0 up=false, set_speed function=0 mbps=40000, add_fault ...;"
                            " `mlx5lab control --help`)")
            common.progress("attaching: `exit` or Ctrl-D in the guest ends the session")
            outcome = attach(m, vmcore=not args.no_vmcore)
            keep = keep or outcome.keep_folder
            if outcome.keep_folder and temporary:
                common.progress(f"run folder kept: {folder}")
            return outcome.status
    except KeyboardInterrupt:
        raise  # Ctrl-C before attaching, SIGTERM, SIGHUP: cleaned up like every command
    except BaseException:
        keep = True  # a failure: its message may point at the console log or QEMU's stderr
        if temporary:
            common.progress(f"run folder kept: {folder}")
        raise
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def add_parser(sub: Any) -> None:
    from mlx5image.variants import VARIANTS

    sp = sub.add_parser(
        "shell", help="boot a guest with the card and attach an interactive terminal to it",
        description="Boots the guest with the emulated card and attaches an interactive login shell on a guest "
                    "pty (job control; Ctrl-C goes to the guest). Prints the run folder and the `mlx5lab control` "
                    "command for a second terminal. Ends when the guest shell exits (`exit`, Ctrl-D), when the guest "
                    "panics (the oops is printed and the vmcore kept) or on SIGTERM/SIGHUP. Exit status: the guest "
                    f"shell's; {EXIT_PANIC} after a guest panic; {EXIT_BROKEN} for an error of set-up or use (stdin "
                    "not a terminal included) or QEMU, the device server or SSH failing; 130 on SIGTERM/SIGHUP.")
    common.add_kernel(sp)
    sp.add_argument("--variant", choices=VARIANTS, default="stock",
                    help="the guest's mlx5_core: stock (Debian's), vulnerable (the positive control)")
    sp.add_argument("--timeout", type=float, default=120.0, help="seconds for the boot")
    sp.add_argument("--memory", type=int, default=1024, help="guest RAM in MiB")
    sp.add_argument("--keep", type=common.path, default=None, metavar="DIR",
                    help="the run folder (console log, QEMU stderr, device traces, control socket) in DIR, kept "
                         "after exit; default: a temporary folder, removed unless the guest panicked")
    sp.add_argument("--no-vmcore", action="store_true", help="after a panic, do not dump guest memory")
    common.add_speeds(sp)
    add_card(sp)
    sp.set_defaults(func=cmd_shell)

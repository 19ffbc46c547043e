"""Lay out the guest's root filesystem (busybox, dropbear, config, modules) in a staging directory.

The directory is then archived by :mod:`mlx5image.cpio`. Layout: every busybox applet is a link in /bin,
and /sbin, /usr/bin and /usr/sbin point at /bin, so any PATH finds every command (dropbear's session
PATH has no sbin).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .elf import is_static_executable
from .errors import ImageError
from .hosttools import require_tool, run
from .kmod import depmod

BUSYBOX_CANDIDATES = (Path("/bin/busybox"), Path("/usr/bin/busybox"))
HOST_KEY_GUEST_PATH = "etc/dropbear/dropbear_ed25519_host_key"
# Copied next to the modules so depmod knows the built-in ones and modprobe treats them as present.
MODULE_INDEX_FILES = ("modules.builtin", "modules.builtin.modinfo")

_LDD_LINE = re.compile(r"^\s*(?:\S+\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)\s*$")


@dataclass(frozen=True)
class RootfsSpec:
    """Everything specific to one image that goes into the guest filesystem."""

    release: str
    init_script: bytes
    module_root: Path  # lib/modules/<release> of the unpacked kernel package
    modules: list[str]  # paths of the .ko files to ship, relative to module_root
    boot_modules: list[str]  # loaded by /init in this order (loadable ones only)
    host_key: Path
    authorized_key: str


def static_busybox() -> Path:
    """The host's statically linked busybox (from busybox-static); ImageError if there is none."""
    for path in BUSYBOX_CANDIDATES:
        if path.is_file() and is_static_executable(path.read_bytes()):
            return path
    raise ImageError("no statically linked busybox found: install it with "
                     "'apt-get install -y busybox-static'.")


def busybox_applets(busybox: Path) -> list[str]:
    names = run([busybox, "--list"], what="busybox --list").stdout.split()
    return sorted({n for n in names if n and "/" not in n and n != "busybox"})


def parse_ldd(output: str) -> list[Path]:
    """Absolute library paths from ``ldd`` output (the vDSO, which has no path, is skipped)."""
    libs = []
    for line in output.splitlines():
        if "not found" in line:
            raise ImageError(f"a library of a guest tool is missing on the host ({line.strip()}); "
                             "reinstall dropbear-bin, ethtool and iproute2 with 'apt-get install --reinstall'.")
        m = _LDD_LINE.match(line)
        if m:
            libs.append(Path(m.group(1)))
    return libs


def shared_libraries(binary: Path) -> list[Path]:
    return parse_ldd(run(["ldd", binary], what=f"ldd {binary}").stdout)


class _Tree:
    """Small helpers that create entries under the staging root with explicit permissions."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def dir(self, rel: str, mode: int = 0o755) -> Path:
        path = self.root / rel
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)
        return path

    def file(self, rel: str, data: bytes | str, mode: int = 0o644) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        path.chmod(mode)

    def copy(self, src: Path, rel: str, mode: int = 0o644) -> None:
        """Copy the content of ``src`` (symlinks followed) to ``rel``."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, path)
        path.chmod(mode)

    def link(self, rel: str, target: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)


ETC_FILES: dict[str, str] = {
    # bash, not busybox ash, is root's shell (so every SSH command's): this busybox runs its own applet
    # for a command name before looking at PATH (FEATURE_SH_STANDALONE), which would hide the real `ip`.
    "etc/passwd": "root:x:0:0:root:/root:/bin/bash\n",
    "etc/group": "root:x:0:\ntty:x:5:\n",
    "etc/shells": "/bin/sh\n/bin/ash\n/bin/bash\n",
    "etc/hostname": "mlx5lab\n",
    "etc/hosts": "127.0.0.1 localhost mlx5lab\n",
    "etc/resolv.conf": "nameserver 10.0.2.3\n",  # QEMU user networking's DNS
    "etc/profile": "export PATH=/bin\nexport PS1='mlx5lab:\\w# '\n",
    "etc/modprobe.d/mlx5lab.conf": "# mlx5 RDMA is not under test or shipped\nblacklist mlx5_ib\n",
    # busybox init is only the reaper of PID 1 here: nothing is (re)spawned.
    "etc/inittab": "::ctrlaltdel:/bin/reboot -f\n::shutdown:/bin/sync\n",
}


# Dynamically linked host programs shipped with the libraries ``ldd`` finds for them: the SSH server; the
# login shell;
# ethtool (ioctl and netlink: link modes, statistics, module EEPROM, channels, rings); iproute2's ip
# (network namespaces, bonding, VLANs: busybox's ip has none of them) and devlink (reload, health, info,
# ports). Each replaces a busybox applet of the same name, if there is one.
DYNAMIC_TOOLS = ("dropbear", "bash", "ethtool", "ip", "devlink")

# Bash scripts shipped in /bin, from guest-images/reader/ of the checkout (the project is installed editable):
# mlx5lab-read runs one kind of read that reaches mlx5_core (sysfs, procfs, ethtool ioctl and netlink,
# devlink, bonding and VLAN speed) from several threads until a time or a stop file; mlx5lab-stack puts a
# bond or VLANs on the mlx5 ports; mlx5lab-net joins the two ports over the cable (a network namespace)
# and pings and sends TCP across it. builder_fingerprint covers their bytes.
GUEST_SCRIPTS = ("mlx5lab-read", "mlx5lab-stack", "mlx5lab-exec", "mlx5lab-net")


def guest_scripts() -> dict[str, bytes]:
    """Name -> content of each guest script; ImageError if one is missing."""
    folder = Path(__file__).resolve().parent.parent / "reader"
    scripts: dict[str, bytes] = {}
    for name in GUEST_SCRIPTS:
        path = folder / name
        if not path.is_file():
            raise ImageError(f"the guest script {path} is missing; use an mlx5lab checkout (pip install -e).")
        scripts[name] = path.read_bytes()
    return scripts


def populate(staging: Path, spec: RootfsSpec) -> None:
    """Fill ``staging`` (an empty directory) with the guest filesystem, including depmod output."""
    tree = _Tree(staging)
    for rel in ("bin", "dev", "etc", "lib", "lib64", "mnt", "proc", "run", "sys", "usr", "var/log"):
        tree.dir(rel)
    tree.dir("tmp", 0o1777)
    tree.dir("root", 0o700)
    tree.dir("root/.ssh", 0o700)
    tree.link("sbin", "bin")
    tree.link("usr/bin", "../bin")
    tree.link("usr/sbin", "../bin")

    busybox = static_busybox()
    tree.copy(busybox, "bin/busybox", 0o755)
    for applet in busybox_applets(busybox):
        tree.link(f"bin/{applet}", "busybox")

    libs: set[Path] = set()
    for name in DYNAMIC_TOOLS:
        binary = require_tool(name)
        (staging / "bin" / name).unlink(missing_ok=True)  # a busybox applet link: copying would follow it
        tree.copy(binary, f"bin/{name}", 0o755)
        libs.update(shared_libraries(binary))
    for lib in sorted(libs):
        tree.copy(lib, str(lib).lstrip("/"), 0o755)
    for name, script in guest_scripts().items():
        tree.file(f"bin/{name}", script, 0o755)

    for rel, text in ETC_FILES.items():
        tree.file(rel, text)
    tree.file("etc/mlx5lab/boot-modules", "".join(f"{m}\n" for m in spec.boot_modules))
    tree.copy(spec.host_key, HOST_KEY_GUEST_PATH, 0o600)
    tree.file("root/.ssh/authorized_keys", spec.authorized_key.strip() + "\n", 0o600)
    tree.file("init", spec.init_script, 0o755)

    moddir = f"lib/modules/{spec.release}"
    for rel in spec.modules:
        tree.copy(spec.module_root / rel, f"{moddir}/{rel}")
    for name in MODULE_INDEX_FILES:
        if (spec.module_root / name).is_file():
            tree.copy(spec.module_root / name, f"{moddir}/{name}")
    order = spec.module_root / "modules.order"
    if order.is_file():  # keep the kernel's order, limited to the shipped modules
        shipped = set(spec.modules)
        kept = [line for line in order.read_text().splitlines() if line.strip() in shipped]
        tree.file(f"{moddir}/modules.order", "".join(f"{line}\n" for line in kept))
    depmod(staging, spec.release)


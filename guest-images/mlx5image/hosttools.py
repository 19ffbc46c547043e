"""Host programs the builder runs, and the Debian package that provides each one.

The builder never installs packages itself: a missing tool becomes an :class:`ImageError` naming the
package, so the user (or the Makefile) can install it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .errors import ImageError

# tool name -> Debian package that ships it
PACKAGE_OF: dict[str, str] = {
    "apt-get": "apt",
    "apt-cache": "apt",
    "dpkg-deb": "dpkg",
    "dpkg-query": "dpkg",
    "modinfo": "kmod",
    "depmod": "kmod",
    "ldd": "libc-bin",
    "dropbear": "dropbear-bin",
    "dropbearkey": "dropbear-bin",
    "dropbearconvert": "dropbear-bin",
    "ethtool": "ethtool",
    "ip": "iproute2",
    "bash": "bash",
    "devlink": "iproute2",
    "ssh-keygen": "openssh-client",
    "busybox": "busybox-static",
    "cpio": "cpio",
}

# kmod and dropbear live in sbin, which is not on every user's PATH.
_EXTRA_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


def find_tool(name: str) -> Path | None:
    """Locate ``name`` on PATH or in the sbin directories; None if absent."""
    found = shutil.which(name)
    if found:
        return Path(found)
    for d in _EXTRA_DIRS:
        candidate = Path(d) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_tool(name: str) -> Path:
    """Like :func:`find_tool` but raise :class:`ImageError` naming the package to install."""
    path = find_tool(name)
    if path is None:
        pkg = PACKAGE_OF.get(name, name)
        raise ImageError(f"'{name}' was not found: install it with 'apt-get install -y {pkg}' and retry.")
    return path


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    what: str,
    cwd: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a host tool with captured text output.

    ``what`` describes the step for the error message. The tool is looked up with :func:`require_tool`, so a
    missing program gives the install hint rather than FileNotFoundError.
    """
    exe = require_tool(str(argv[0]))
    cmd = [str(exe), *(str(a) for a in argv[1:])]
    env = dict(os.environ, LC_ALL="C")
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        last = detail[-1] if detail else f"exit status {proc.returncode}"
        raise ImageError(f"{what} failed ({' '.join(cmd[:3])} ...: {last}); fix that and retry.")
    return proc


def package_version(package: str) -> str | None:
    """Installed version of a Debian package, or None if it is not installed (or dpkg is absent)."""
    if find_tool("dpkg-query") is None:
        return None
    proc = run(["dpkg-query", "-W", "-f=${Version}", package], what="dpkg-query", check=False)
    version = proc.stdout.strip()
    return version if proc.returncode == 0 and version else None

"""The Debian packages an out-of-tree mlx5_core build needs: the kernel's headers and its source.

Both must be the exact package version of the guest kernel (linux-image-<release>): a module built from
other sources may load but would not be the driver the guest runs, and other headers give other CRCs.
"""

from __future__ import annotations

import os
import re
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..debpkg import download, parse_stanza, sha256_file
from ..errors import ImageError
from ..hosttools import require_tool, run

# Inside the linux-source tarball, below its top directory.
MELLANOX_DIR = "drivers/net/ethernet/mellanox/"
WANTED_DIRS = ("mlx5/core/", "mlxfw/")  # core includes ../../mlxfw/mlxfw.h
REQUIRED_FILES = ("mlx5/core/Makefile", "mlx5/core/cmd.c", "mlx5/core/main.c", "mlx5/core/en_main.c",
                  "mlxfw/mlxfw.h")
_SOURCE_TARBALL = re.compile(r"^(\./)?usr/src/linux-source-[^/]+\.tar\.(xz|gz|bz2)$")


@dataclass(frozen=True)
class SourceDeb:
    package: str
    version: str
    path: Path
    sha256: str


def source_package(release: str) -> str:
    """'6.1.0-56-amd64' -> 'linux-source-6.1' (Debian names the source package after major.minor)."""
    m = re.match(r"^(\d+)\.(\d+)\.", release)
    if not m:
        raise ImageError(f"'{release}' is not a Debian kernel release like 6.1.0-56-amd64.")
    return f"linux-source-{m.group(1)}.{m.group(2)}"


def installed_version(package: str) -> str | None:
    """Version of ``package`` if dpkg has it fully installed ("ii"), else None."""
    proc = run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}|${Version}", package], what="dpkg-query",
               check=False)
    status, _, version = proc.stdout.partition("|")
    return version.strip() if proc.returncode == 0 and status.startswith("ii") else None


def _apt_versions(package: str) -> list[str]:
    """Versions apt knows of ``package`` (from apt-cache policy's version table)."""
    proc = run(["apt-cache", "policy", package], what="apt-cache policy", check=False)
    versions = []
    in_table = False
    for line in proc.stdout.splitlines():
        if line.strip() == "Version table:":
            in_table = True
        elif in_table and re.match(r"^ (\*\*\*|   ) \S", line):  # "     1.2-3 500" or " *** 1.2-3 100"
            versions.append(line.replace("***", "").split()[0])
    return versions


def ensure_headers(release: str, version: str, progress: Callable[[str], None]) -> Path:
    """``/usr/src/linux-headers-<release>`` at exactly ``version``, installed with apt-get if absent."""
    package = f"linux-headers-{release}"
    have = installed_version(package)
    if have is None:
        if os.geteuid() != 0:
            raise ImageError(f"{package} is not installed and installing it needs root: run "
                             f"'apt-get install {package}={version}' as root and retry.")
        progress(f"installing {package} {version} (apt-get install)")
        env = dict(os.environ, LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
        proc = subprocess.run([str(require_tool("apt-get")), "install", "-y", "-q", "--no-install-recommends",
                               f"{package}={version}"], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            raise ImageError(f"apt-get install {package}={version} failed ({last[0]}); install it by hand "
                             "and retry.")
        have = installed_version(package)
    if have != version:
        raise ImageError(f"{package} is installed at version {have} but the guest kernel is {version}; "
                         f"run 'apt-get install {package}={version}' and retry.")
    headers = Path("/usr/src") / package
    if not (headers / "Makefile").is_file():
        raise ImageError(f"{headers}/Makefile is missing although {package} is installed; reinstall it.")
    return headers


def fetch_source(release: str, version: str, debs_dir: Path, progress: Callable[[str], None],
                 apt_options: tuple[str, ...] = ()) -> SourceDeb:
    """The linux-source .deb of exactly ``version``, downloaded into ``debs_dir`` once and checked.

    ``apt_options`` selects the apt configuration that found the kernel (the suites' for a kernel the
    host's apt does not know, :mod:`mlx5image.suites`).
    """
    package = source_package(release)
    proc = run(["apt-cache", *apt_options, "show", "--no-all-versions", f"{package}={version}"],
               what="apt-cache show", check=False)
    fields = parse_stanza(proc.stdout) if proc.returncode == 0 else {}
    if fields.get("Version") != version:
        known = ", ".join(_apt_versions(package)) or "none"
        raise ImageError(f"apt has no {package} {version} (the guest kernel's version; apt knows: {known}); "
                         "add the Debian archive that carries it (e.g. bookworm-security), run apt-get update "
                         "and retry.")
    deb = download(package, version, fields.get("Architecture", "all"), fields.get("SHA256"), debs_dir, progress,
                   apt_options)
    return SourceDeb(package, version, deb, sha256_file(deb))


def _wanted(name: str) -> str | None:
    """'linux-source-6.1/drivers/net/ethernet/mellanox/mlx5/core/cmd.c' -> 'mlx5/core/cmd.c'; else None."""
    parts = PurePosixPath(name.removeprefix("./")).parts
    rel = "/".join(parts[1:]) + "/"
    if not rel.startswith(MELLANOX_DIR):
        return None
    sub = rel[len(MELLANOX_DIR):]
    return sub.rstrip("/") if any(sub.startswith(w) for w in WANTED_DIRS) else ""


def extract_mlx5_tree(deb: Path, dest: Path, progress: Callable[[str], None]) -> Path:
    """Extract only mlx5/core and mlxfw from the source .deb into ``dest/mellanox/``; return that folder.

    Both archives are streamed (the 1 GB source tree is never written out). Tar stores a directory's
    subtree contiguously, so reading stops at the first member after the mellanox directory.
    """
    out = dest / "mellanox"
    out.mkdir(parents=True, exist_ok=True)
    progress(f"extracting mlx5/core and mlxfw from {deb.name}")
    dpkg = subprocess.Popen([str(require_tool("dpkg-deb")), "--fsys-tarfile", str(deb)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert dpkg.stdout is not None
    found_tarball = False
    seen = 0
    try:
        with tarfile.open(fileobj=dpkg.stdout, mode="r|") as outer:
            for member in outer:
                if not _SOURCE_TARBALL.match(member.name):
                    continue
                found_tarball = True
                inner_file = outer.extractfile(member)
                assert inner_file is not None
                with tarfile.open(fileobj=inner_file, mode="r|*") as inner:
                    for m in inner:
                        rel = _wanted(m.name)
                        if rel is None:
                            if seen:
                                break
                            continue
                        seen += 1
                        if rel:
                            inner.extract(m.replace(name=rel, deep=False), out, filter="data")
                break
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ImageError(f"cannot read {deb} ({exc}); delete it and retry.") from exc
    finally:
        dpkg.stdout.close()
        dpkg.kill()
        dpkg.wait()
    if not found_tarball:
        raise ImageError(f"{deb.name} holds no usr/src/linux-source-*.tar.*; is it a linux-source package?")
    missing = [f for f in REQUIRED_FILES if not (out / f).is_file()]
    if missing:
        raise ImageError(f"{deb.name} lacks {', '.join(missing)} under {MELLANOX_DIR}; use the kernel's "
                         "linux-source package.")
    return out

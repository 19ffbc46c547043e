"""Find, download and unpack the Debian linux-image package a guest image is built from."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import ImageError
from .hosttools import run

META_PACKAGE = "linux-image-amd64"
_RELEASE_RE = re.compile(r"^\d+\.\d+[\w.+~-]*$")
APT_STATE_PATHS = ("/var/lib/apt/lists", "/etc/apt", "/var/lib/dpkg/status")


@dataclass(frozen=True)
class KernelPackage:
    """A linux-image package: either an apt candidate (``deb`` None until fetched) or a local .deb."""

    package: str
    version: str
    release: str
    expected_sha256: str | None = None  # from the apt index
    deb: Path | None = None  # set for a local .deb


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def release_of_package(package: str) -> str:
    """'linux-image-6.1.0-56-amd64[-unsigned]' -> '6.1.0-56-amd64'; ImageError for other packages."""
    rel = package.removeprefix("linux-image-").removesuffix("-unsigned")
    if not package.startswith("linux-image-") or rel.endswith("-dbg") or not _RELEASE_RE.match(rel):
        raise ImageError(f"'{package}' is not a linux-image-<release> kernel package; pass a kernel release "
                         "like 6.1.0-56-amd64 or a path to a linux-image .deb.")
    return rel


def parse_stanza(text: str) -> dict[str, str]:
    """First RFC 822 stanza of apt/dpkg output as a dict (continuation lines dropped)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        if line[0].isspace() or ":" not in line:
            continue
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def apt_state_stamp(dirs: tuple[str, ...] = APT_STATE_PATHS) -> str:
    """A digest of the files that decide apt-cache's answers (package lists, sources, pinning).

    Used to memoise apt-cache queries: on hosts where apt keeps no pkgcache.bin (Debian container images)
    every apt-cache call re-parses all lists, ~0.5 s each.
    """
    h = hashlib.sha256()
    for top in dirs:
        base = Path(top)
        paths = sorted(base.rglob("*")) if base.is_dir() else [base]
        for path in paths:
            try:
                st = path.stat()
            except OSError:
                continue
            h.update(f"{path}\0{st.st_mtime_ns}\0{st.st_size}\n".encode())
    return h.hexdigest()


class _Apt:
    """apt-cache queries, memoised per apt state, with one ``apt-get update`` if apt knows nothing."""

    def __init__(self, progress: Callable[[str], None], memo_file: Path | None) -> None:
        self._progress = progress
        self._updated = False
        self._memo_file = memo_file
        self._stamp = apt_state_stamp() if memo_file else ""
        self._memo: dict[str, str] = {}
        if memo_file:
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(memo_file.read_text())
                if data.get("stamp") == self._stamp:
                    self._memo = dict(data.get("answers", {}))

    def _query(self, argv: list[str]) -> str:
        """stdout of a successful apt-cache call ('' on failure); successes are memoised."""
        key = " ".join(argv)
        if key in self._memo:
            return self._memo[key]
        proc = run(argv, what=argv[0], check=False)
        if proc.returncode != 0:
            return ""
        self._memo[key] = proc.stdout
        if self._memo_file:
            tmp = self._memo_file.with_name(f".{self._memo_file.name}.{os.getpid()}")
            tmp.write_text(json.dumps({"stamp": self._stamp, "answers": self._memo}))
            os.replace(tmp, self._memo_file)
        return proc.stdout

    def _update_once(self, wanted: str) -> bool:
        if self._updated:
            return False
        self._updated = True
        self._progress(f"apt knows no {wanted}; running apt-get update once")
        proc = run(["apt-get", "update"], what="apt-get update", check=False)
        if proc.returncode != 0:
            raise ImageError("apt-get update failed; run 'apt-get update' as root (or pass a .deb path) "
                             "and retry.")
        self._memo.clear()
        self._stamp = apt_state_stamp() if self._memo_file else ""
        return True

    def default_kernel_package(self) -> str:
        """The linux-image-<release> package that linux-image-amd64 currently depends on."""
        while True:
            for line in self._query(["apt-cache", "depends", META_PACKAGE]).splitlines():
                key, _, value = line.strip().partition(":")
                if key.strip().lstrip("|") == "Depends" and value.strip().startswith("linux-image-"):
                    return value.strip()
            if not self._update_once(META_PACKAGE):
                raise ImageError(f"apt does not know {META_PACKAGE}; add a Debian bookworm 'main' source to "
                                 "/etc/apt/sources.list, run apt-get update, or pass --kernel.")

    def show(self, package: str) -> dict[str, str]:
        while True:
            fields = parse_stanza(self._query(["apt-cache", "show", "--no-all-versions", package]))
            if fields.get("Version"):
                return fields
            if not self._update_once(package):
                raise ImageError(f"apt knows no package {package}; check the kernel release with "
                                 "'apt-cache search linux-image' or pass a path to a linux-image .deb.")


def _looks_like_path(spec: str) -> bool:
    return spec.endswith(".deb") or "/" in spec or os.path.exists(spec)


def resolve_kernel(
    kernel: str | None, progress: Callable[[str], None], memo_file: Path | None = None
) -> KernelPackage:
    """Turn the user's kernel choice into a package; no download happens here.

    ``memo_file`` (optional) memoises apt-cache answers for as long as apt's state is unchanged.
    """
    if kernel is not None and _looks_like_path(kernel):
        deb = Path(kernel).expanduser().resolve()
        if not deb.is_file():
            raise ImageError(f"no such file: {deb}; pass an existing linux-image .deb or a kernel release.")
        proc = run(["dpkg-deb", "-f", deb, "Package", "Version"], what=f"reading {deb}", check=False)
        if proc.returncode != 0:
            raise ImageError(f"{deb} is not a readable Debian package; pass a linux-image .deb or a kernel "
                             "release.")
        fields = parse_stanza(proc.stdout)
        package = fields.get("Package", "")
        return KernelPackage(package, fields.get("Version", ""), release_of_package(package), deb=deb)
    apt = _Apt(progress, memo_file)
    if kernel is None:
        package = apt.default_kernel_package()
    else:
        package = kernel if kernel.startswith("linux-image-") else f"linux-image-{kernel}"
    release = release_of_package(package)
    fields = apt.show(package)
    return KernelPackage(package, fields["Version"], release, expected_sha256=fields.get("SHA256"))


def fetch(pkg: KernelPackage, debs_dir: Path, progress: Callable[[str], None]) -> Path:
    """Path of the kernel package's .deb, downloading it into ``debs_dir`` (kept across builds) if needed."""
    if pkg.deb is not None:
        return pkg.deb
    return download(pkg.package, pkg.version, "amd64", pkg.expected_sha256, debs_dir, progress)


def download(package: str, version: str, arch: str, expected_sha256: str | None, debs_dir: Path,
             progress: Callable[[str], None]) -> Path:
    """``debs_dir/<package>_<version>_<arch>.deb``, fetched with ``apt-get download`` unless a copy with the
    expected SHA256 is already there.

    The download goes to a scratch directory and is checked against apt's SHA256 before it is moved into
    place, so an interrupted or corrupt download is never reused.
    """
    debs_dir.mkdir(parents=True, exist_ok=True)
    cached = debs_dir / f"{package}_{version.replace(':', '%3a')}_{arch}.deb"
    if cached.is_file() and (expected_sha256 is None or sha256_file(cached) == expected_sha256):
        return cached
    progress(f"downloading {package} {version} (apt-get download)")
    with tempfile.TemporaryDirectory(dir=debs_dir, prefix=".dl-") as tmp:
        run(["apt-get", "download", f"{package}={version}"], what=f"apt-get download {package}", cwd=Path(tmp))
        got = list(Path(tmp).glob("*.deb"))
        if len(got) != 1:
            raise ImageError(f"apt-get download {package}={version} produced no .deb; run 'apt-get update' "
                             "and retry.")
        if expected_sha256 and sha256_file(got[0]) != expected_sha256:
            raise ImageError(f"{got[0].name} does not match apt's SHA256; run 'apt-get update' and retry.")
        os.replace(got[0], cached)
    return cached


def extract(deb: Path, dest: Path, release: str) -> Path:
    """Unpack ``deb`` into ``dest`` and return it; checks the kernel and module tree are there.

    A package with merged-/usr layout (modules in usr/lib/modules) gets a lib -> usr/lib link so kmod's
    ``-b`` option finds the tree.
    """
    dest.mkdir(parents=True, exist_ok=True)
    run(["dpkg-deb", "-x", deb, dest], what=f"unpacking {deb.name}")
    if not (dest / "lib").exists() and (dest / "usr" / "lib" / "modules").is_dir():
        (dest / "lib").symlink_to("usr/lib")
    if not (dest / "boot" / f"vmlinuz-{release}").is_file():
        raise ImageError(f"{deb.name} has no boot/vmlinuz-{release}; pass a linux-image package, not a "
                         "headers, -dbg or meta package.")
    if not (dest / "lib" / "modules" / release).is_dir():
        raise ImageError(f"{deb.name} has no lib/modules/{release}; pass a full linux-image package.")
    return dest


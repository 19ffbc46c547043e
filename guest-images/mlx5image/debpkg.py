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

from . import suites
from .errors import ImageError
from .hosttools import run

META_PACKAGE = "linux-image-amd64"
_RELEASE_RE = re.compile(r"^\d+\.\d+[\w.+~-]*$")
APT_STATE_PATHS = ("/var/lib/apt/lists", "/etc/apt", "/var/lib/dpkg/status")


@dataclass(frozen=True)
class DebPart:
    """One more package of a kernel that Debian splits (linux-binary-*, linux-modules-*, linux-base-*)."""

    package: str
    version: str
    expected_sha256: str | None = None
    deb: Path | None = None  # set when given as a path


@dataclass(frozen=True)
class KernelPackage:
    """A linux-image package: either an apt candidate (``deb`` None until fetched) or a local .deb.

    ``parts`` are the packages the linux-image package depends on that carry the kernel's own files (sid
    splits vmlinuz and the modules out of linux-image-<release>); ``apt_options`` is empty for the host's
    apt, else the private configuration of :mod:`mlx5image.suites` that found the package.
    """

    package: str
    version: str
    release: str
    expected_sha256: str | None = None  # from the apt index
    deb: Path | None = None  # set for a local .deb
    parts: tuple[DebPart, ...] = ()
    apt_options: tuple[str, ...] = ()
    suite: str = ""  # where apt found it ("" for the host's apt or a path)


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
    """apt-cache queries, memoised per apt state, with one ``apt-get update`` if apt knows nothing.

    ``options`` (apt ``-o`` items) select another apt configuration than the host's (the suites'), with
    ``state`` the paths whose change invalidates the memo.
    """

    def __init__(self, progress: Callable[[str], None], memo_file: Path | None,
                 options: tuple[str, ...] = (), state: tuple[str, ...] = APT_STATE_PATHS) -> None:
        self._progress = progress
        self._updated = False
        self._memo_file = memo_file
        self._options = options
        self._state = state
        self._stamp = apt_state_stamp(state) if memo_file else ""
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
        proc = run([argv[0], *self._options, *argv[1:]], what=argv[0], check=False)
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
        self._progress(f"apt knows no {wanted}; running apt-get update once"
                       + (" (Debian's suites, private apt configuration)" if self._options else ""))
        proc = run(["apt-get", *self._options, "update"], what="apt-get update", check=False)
        if proc.returncode != 0:
            raise ImageError("apt-get update failed; run 'apt-get update' as root (or pass a .deb path) "
                             "and retry.")
        self._memo.clear()
        self._stamp = apt_state_stamp(self._state) if self._memo_file else ""
        return True

    def lookup(self, package: str, *, update: bool) -> dict[str, str]:
        """The candidate stanza of ``package`` ({} if apt has none; one update first if ``update``)."""
        while True:
            fields = parse_stanza(self._query(["apt-cache", "show", "--no-all-versions", package]))
            if fields.get("Version"):
                return fields
            if not update or not self._update_once(package):
                return {}

    def exact(self, package: str, version: str) -> dict[str, str]:
        """The stanza of ``package`` at exactly ``version`` ({} if apt has no such version)."""
        fields = parse_stanza(self._query(["apt-cache", "show", "--no-all-versions", f"{package}={version}"]))
        return fields if fields.get("Version") == version else {}

    def suite_of(self, package: str) -> str:
        """The suite of the candidate, from apt-cache policy ("sid", "trixie-security"...), or ""."""
        for line in self._query(["apt-cache", "policy", package]).splitlines():
            m = re.match(r"^\s+\d+ \S+ (\S+)/main ", line)
            if m:
                return m.group(1)
        return ""

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


def _looks_like_path(spec: str) -> bool:
    return spec.endswith(".deb") or "/" in spec or os.path.exists(spec)


def depends_names(value: str) -> list[str]:
    """Package names of a Depends field ("a (>= 1) | b, c (= 2)" -> ["a", "b", "c"])."""
    names = []
    for group in value.split(","):
        for alt in group.split("|"):
            name = alt.strip().split(" ", 1)[0].split(":", 1)[0]
            if name:
                names.append(name)
    return names


def kernel_parts(release: str, depends: str) -> list[str]:
    """The dependencies of linux-image-<release> that belong to this very kernel build.

    Since Debian's 7.x packaging, linux-image-<release> is a small package depending on
    linux-binary-<release> (vmlinuz), linux-modules-<release> (the modules) and linux-base-<release>
    (config, System.map, modules.builtin); earlier kernels carry everything themselves. Anything named
    ``linux-*-<release>`` is taken; dracut, kmod, initramfs-tools and the like are not the kernel's.
    """
    return [n for n in depends_names(depends)
            if n.startswith("linux-") and n.endswith(f"-{release}") and not n.startswith("linux-image-")
            and not n.startswith("linux-headers-")]


def _read_deb(deb: Path) -> dict[str, str]:
    if not deb.is_file():
        raise ImageError(f"no such file: {deb}; pass existing Debian kernel packages or a kernel release.")
    proc = run(["dpkg-deb", "-f", deb, "Package", "Version", "Depends"], what=f"reading {deb}", check=False)
    if proc.returncode != 0:
        raise ImageError(f"{deb} is not a readable Debian package; pass a linux-image .deb or a kernel "
                         "release.")
    return parse_stanza(proc.stdout)


def _from_paths(spec: str) -> KernelPackage:
    """``a.deb[,b.deb...]``: a linux-image .deb and the packages it needs (linux-binary, linux-modules...)."""
    debs = [Path(p).expanduser().resolve() for p in spec.split(",") if p.strip()]
    stanzas = {deb: _read_deb(deb) for deb in debs}
    images = [d for d, f in stanzas.items() if f.get("Package", "").startswith("linux-image-")
              and not f.get("Package", "").endswith("-dbg")]
    if len(images) != 1:
        raise ImageError(f"{spec}: give exactly one linux-image-<release> .deb (and, for a split kernel, its "
                         f"linux-binary, linux-modules and linux-base packages), comma-separated.")
    fields = stanzas[images[0]]
    package = fields["Package"]
    release = release_of_package(package)
    wanted = kernel_parts(release, fields.get("Depends", ""))
    parts = [DebPart(f["Package"], f.get("Version", ""), deb=d) for d, f in stanzas.items() if d != images[0]]
    missing = sorted(set(wanted) - {p.package for p in parts})
    if missing:
        raise ImageError(f"{package} is split: it needs {', '.join(missing)} as well; pass their .deb files "
                         "after it, comma-separated (apt-get download " + " ".join(missing) + ").")
    return KernelPackage(package, fields.get("Version", ""), release, deb=images[0], parts=tuple(parts))


def resolve_kernel(
    kernel: str | None, progress: Callable[[str], None], memo_file: Path | None = None
) -> KernelPackage:
    """Turn the user's kernel choice into a package; no download happens here.

    ``kernel``: None (bookworm's default), a release, ``linux-image-<release>``, or paths to .deb files
    (comma-separated). A release the host's apt does not know is looked up in every Debian suite from
    bullseye to sid through the private apt configuration of :mod:`mlx5image.suites`.
    ``memo_file`` (optional) memoises apt-cache answers for as long as apt's state is unchanged.
    """
    if kernel is not None and _looks_like_path(kernel):
        return _from_paths(kernel)
    apt = _Apt(progress, memo_file)
    if kernel is None:
        package = apt.default_kernel_package()
    else:
        package = kernel if kernel.startswith("linux-image-") else f"linux-image-{kernel}"
    release = release_of_package(package)
    fields, options, suite = apt.lookup(package, update=False), (), ""
    if not fields:
        folder = suites.apt_dir(memo_file.parent if memo_file else Path.home() / ".cache" / "mlx5lab")
        options = suites.prepare(folder)
        other = _Apt(progress, folder / "apt-memo.json" if memo_file else None, options,
                     (str(folder / "lists"), str(folder / "sources.list")))
        if not suites.has_lists(folder):
            other._update_once(package)
        fields = other.lookup(package, update=True)
        if not fields:
            names = ", ".join(s for _url, s in suites.SUITES)
            raise ImageError(f"no Debian suite ({names}) has {package}; check the release with "
                             f"'apt-cache search linux-image' or pass paths to its .deb files.")
        suite = other.suite_of(package)
        apt = other
        progress(f"{package} {fields['Version']} found in Debian {suite or 'suites'} (private apt configuration)")
    parts = []
    for name in kernel_parts(release, fields.get("Depends", "")):
        part = apt.exact(name, fields["Version"]) or apt.lookup(name, update=False)
        if not part:
            raise ImageError(f"{package} needs {name}, which apt does not have; run apt-get update or pass "
                             "paths to the .deb files.")
        parts.append(DebPart(name, part["Version"], part.get("SHA256")))
    return KernelPackage(package, fields["Version"], release, expected_sha256=fields.get("SHA256"),
                         parts=tuple(parts), apt_options=options, suite=suite)


def fetch(pkg: KernelPackage, debs_dir: Path, progress: Callable[[str], None]) -> Path:
    """Path of the kernel package's .deb, downloading it into ``debs_dir`` (kept across builds) if needed."""
    if pkg.deb is not None:
        return pkg.deb
    return download(pkg.package, pkg.version, "amd64", pkg.expected_sha256, debs_dir, progress,
                    pkg.apt_options)


def fetch_parts(pkg: KernelPackage, debs_dir: Path, progress: Callable[[str], None]) -> list[Path]:
    """The .deb files of ``pkg.parts``, downloaded as :func:`fetch` does."""
    return [p.deb if p.deb is not None else
            download(p.package, p.version, "amd64", p.expected_sha256, debs_dir, progress, pkg.apt_options)
            for p in pkg.parts]


def download(package: str, version: str, arch: str, expected_sha256: str | None, debs_dir: Path,
             progress: Callable[[str], None], apt_options: tuple[str, ...] = ()) -> Path:
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
        run(["apt-get", *apt_options, "download", f"{package}={version}"], what=f"apt-get download {package}",
            cwd=Path(tmp))
        got = list(Path(tmp).glob("*.deb"))
        if len(got) != 1:
            raise ImageError(f"apt-get download {package}={version} produced no .deb; run 'apt-get update' "
                             "and retry.")
        if expected_sha256 and sha256_file(got[0]) != expected_sha256:
            raise ImageError(f"{got[0].name} does not match apt's SHA256; run 'apt-get update' and retry.")
        os.replace(got[0], cached)
    return cached


@dataclass(frozen=True)
class KernelFiles:
    """Where an unpacked kernel keeps what the image needs (the layouts differ between Debian releases)."""

    root: Path  # lib/modules/<release> is below it (kmod's -b)
    vmlinuz: Path
    config: Path


# Candidates, in order: bullseye/bookworm/trixie put vmlinuz and config in /boot; sid's split packages
# (7.x) in /usr/lib/modules/<release>/ (linux-binary-*: vmlinuz; linux-base-*: config).
VMLINUZ_PLACES = ("boot/vmlinuz-{r}", "usr/lib/modules/{r}/vmlinuz", "lib/modules/{r}/vmlinuz")
CONFIG_PLACES = ("boot/config-{r}", "usr/lib/modules/{r}/config", "lib/modules/{r}/config")


def locate(dest: Path, release: str, names: list[str]) -> KernelFiles:
    """Find vmlinuz, config and the module tree in ``dest``; ImageError listing everything missing."""
    if not (dest / "lib").exists() and (dest / "usr" / "lib" / "modules").is_dir():
        (dest / "lib").symlink_to("usr/lib")
    found = {what: next((dest / p.format(r=release) for p in places if (dest / p.format(r=release)).is_file()),
                        None)
             for what, places in (("vmlinuz", VMLINUZ_PLACES), ("config", CONFIG_PLACES))}
    moddir = dest / "lib" / "modules" / release
    missing = [f"{what} (looked for {', '.join(p.format(r=release) for p in places)})"
               for what, places in (("vmlinuz", VMLINUZ_PLACES), ("config", CONFIG_PLACES)) if found[what] is None]
    if not (moddir / "kernel").is_dir():
        missing.append(f"the modules (lib/modules/{release}/kernel)")
    if missing:
        raise ImageError(f"kernel {release}: {', '.join(names)} lack {'; '.join(missing)}. Pass the whole "
                         "kernel: a linux-image package (not headers, -dbg or a meta package) and, when Debian "
                         f"splits it, linux-binary-{release}, linux-modules-{release} and "
                         f"linux-base-{release}.")
    assert found["vmlinuz"] is not None and found["config"] is not None
    return KernelFiles(dest, found["vmlinuz"], found["config"])


def extract(debs: list[Path], dest: Path, release: str) -> KernelFiles:
    """Unpack every package of the kernel into ``dest`` and find its files.

    A merged-/usr layout (modules in usr/lib/modules) gets a lib -> usr/lib link so kmod's ``-b`` option
    finds the tree.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        run(["dpkg-deb", "-x", deb, dest], what=f"unpacking {deb.name}")
    return locate(dest, release, [d.name for d in debs])


"""A private apt configuration that sees every Debian suite a guest kernel may come from.

The host's apt knows the host's suites only (bookworm on the reference machine). A kernel release of
bullseye, trixie or sid is looked up in a second apt configuration that lives in the cache, the same way
``qemu-device/build-qemu.sh`` fetches QEMU's source from sid: its own ``sources.list``, its own package
lists, an empty dpkg status, nothing under ``/etc/apt``, and it only ever *downloads* packages (the image
builder unpacks them with ``dpkg-deb -x``; nothing is installed on the host). apt's options are the
documented configuration items of apt.conf(5): ``Dir::Etc::SourceList``, ``Dir::Etc::SourceParts``,
``Dir::State::Lists``, ``Dir::State::status``, ``Dir::Cache::pkgcache``/``srcpkgcache`` (empty: no
binary caches written) and ``APT::Architectures``.
"""

from __future__ import annotations

from pathlib import Path

# Debian's suites from bullseye (5.10) to sid, and the security archive of the released ones, where the
# point-release kernels of bullseye, bookworm and trixie are published first.
ARCHIVE = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SUITES: tuple[tuple[str, str], ...] = (
    (ARCHIVE, "bullseye"), (SECURITY, "bullseye-security"),
    (ARCHIVE, "bookworm"), (SECURITY, "bookworm-security"),
    (ARCHIVE, "trixie"), (SECURITY, "trixie-security"),
    (ARCHIVE, "sid"),
)


def sources_list(suites: tuple[tuple[str, str], ...] = SUITES) -> str:
    """One ``deb`` line per suite, amd64 only, checked against Debian's archive keyring."""
    return "".join(f"deb [arch=amd64 signed-by={KEYRING}] {url} {suite} main\n" for url, suite in suites)


def apt_dir(cache: Path) -> Path:
    return cache / "apt-suites"


def apt_options(folder: Path) -> tuple[str, ...]:
    """The ``-o`` options that point apt-get and apt-cache at the private configuration in ``folder``."""
    items = {
        "Dir::Etc::SourceList": folder / "sources.list",
        "Dir::Etc::SourceParts": folder / "sources.list.d",
        "Dir::State::Lists": folder / "lists",
        "Dir::State::status": folder / "status",
        "Dir::Cache::pkgcache": "",
        "Dir::Cache::srcpkgcache": "",
        "APT::Architectures": "amd64",
        "APT::Sandbox::User": "root",  # the lists live in the caller's cache, which _apt may not enter
    }
    out: list[str] = []
    for key, value in items.items():
        out += ["-o", f"{key}={value}"]
    return tuple(out)


def prepare(folder: Path) -> tuple[str, ...]:
    """Write the private configuration into ``folder`` (idempotent) and return its apt options."""
    (folder / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (folder / "sources.list.d").mkdir(exist_ok=True)
    text = sources_list()
    src = folder / "sources.list"
    if not src.is_file() or src.read_text() != text:
        src.write_text(text)
    status = folder / "status"
    if not status.exists():
        status.write_text("")
    return apt_options(folder)


def has_lists(folder: Path) -> bool:
    """Has an ``apt-get update`` of the private configuration ever succeeded?"""
    lists = folder / "lists"
    return lists.is_dir() and any(p.name.endswith("_Packages") or "_Packages." in p.name for p in lists.iterdir())

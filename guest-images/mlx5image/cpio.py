"""A deterministic writer (and reader, for checks) of the "newc" cpio format the kernel unpacks.

Written in Python rather than with the cpio tool so that every entry is owned by root, has a fixed
mtime, and device nodes (/dev/console) can be added without privileges.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAGIC = b"070701"
TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    """One archive member. ``path`` is relative ("bin/sh"); ``data`` is file content or a symlink target."""

    path: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)

    @property
    def kind(self) -> str:
        if stat.S_ISDIR(self.mode):
            return "dir"
        if stat.S_ISLNK(self.mode):
            return "symlink"
        if stat.S_ISCHR(self.mode):
            return "char"
        if stat.S_ISBLK(self.mode):
            return "block"
        return "file"


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


class NewcWriter:
    """Stream entries into ``out``; call :meth:`close` to write the trailer."""

    def __init__(self, out: BinaryIO, *, mtime: int = 0) -> None:
        self._out = out
        self._mtime = mtime
        self._ino = 0

    def add(self, entry: Entry) -> None:
        self._write(entry.path, entry.mode, entry.data, entry.rdev)

    def _write(self, name: str, mode: int, data: bytes, rdev: tuple[int, int]) -> None:
        self._ino += 1
        raw_name = name.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(mode) else 1
        # ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
        fields = (self._ino, mode, 0, 0, nlink, self._mtime, len(data), 0, 0, *rdev, len(raw_name), 0)
        header = MAGIC + b"".join(b"%08x" % f for f in fields)
        self._out.write(header + raw_name + _pad(len(header) + len(raw_name)))
        self._out.write(data + _pad(len(data)))

    def close(self) -> None:
        self._ino = 0
        self._write(TRAILER, 0, b"", (0, 0))


def entries_from_tree(root: Path) -> Iterator[Entry]:
    """Entries for everything under ``root`` (not root itself), parents first, sorted for reproducibility.

    Regular files, directories and symlinks keep their permission bits; ownership is not taken from
    disk (all entries belong to root in the archive).
    """

    def walk(directory: Path, prefix: str) -> Iterator[Entry]:
        for name in sorted(os.listdir(directory)):
            path = directory / name
            rel = f"{prefix}{name}"
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                yield Entry(rel, stat.S_IFLNK | 0o777, os.readlink(path).encode())
            elif stat.S_ISDIR(st.st_mode):
                yield Entry(rel, stat.S_IFDIR | stat.S_IMODE(st.st_mode))
                yield from walk(path, rel + "/")
            elif stat.S_ISREG(st.st_mode):
                yield Entry(rel, stat.S_IFREG | stat.S_IMODE(st.st_mode), path.read_bytes())
            else:
                raise ValueError(f"unsupported file type in initramfs tree: {path}")

    return walk(root, "")


def write_archive(out: BinaryIO, entries: Iterable[Entry], *, mtime: int = 0) -> None:
    writer = NewcWriter(out, mtime=mtime)
    for entry in entries:
        writer.add(entry)
    writer.close()


def read_archive(data: bytes) -> list[Entry]:
    """Parse a newc archive (up to the trailer); ValueError on malformed input."""
    entries: list[Entry] = []
    pos = 0
    while True:
        if data[pos : pos + 6] != MAGIC:
            raise ValueError(f"bad newc magic at offset {pos}")
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, filesize, rmaj, rmin, namesize = fields[1], fields[6], fields[9], fields[10], fields[11]
        name_start = pos + 110
        name = data[name_start : name_start + namesize - 1].decode()
        data_start = name_start + namesize + (-(110 + namesize) % 4)
        body = data[data_start : data_start + filesize]
        if len(body) != filesize:
            raise ValueError(f"truncated member {name!r}")
        pos = data_start + filesize + (-filesize % 4)
        if name == TRAILER:
            return entries
        entries.append(Entry(name, mode, body, (rmaj, rmin)))

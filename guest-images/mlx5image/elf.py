"""Just enough ELF64 parsing to check a kernel for its PVH entry note and a binary for static linking."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

PT_INTERP = 3
PT_NOTE = 4
XEN_ELFNOTE_PHYS32_ENTRY = 18  # the note QEMU's PVH loader looks for


@dataclass(frozen=True)
class ProgramHeader:
    type: int
    offset: int
    filesz: int


@dataclass(frozen=True)
class Note:
    owner: bytes
    type: int
    desc: bytes


def is_elf64_le(data: bytes | memoryview) -> bool:
    return len(data) >= 64 and bytes(data[:4]) == b"\x7fELF" and data[4] == 2 and data[5] == 1


def program_headers(data: bytes | memoryview) -> list[ProgramHeader]:
    """Program headers of a little-endian ELF64 image; ValueError if it is not one."""
    if not is_elf64_le(data):
        raise ValueError("not a little-endian ELF64 file")
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    if phentsize < 56 or phoff + phnum * phentsize > len(data):
        raise ValueError("truncated ELF program header table")
    out = []
    for i in range(phnum):
        base = phoff + i * phentsize
        p_type = struct.unpack_from("<I", data, base)[0]
        p_offset = struct.unpack_from("<Q", data, base + 8)[0]
        p_filesz = struct.unpack_from("<Q", data, base + 32)[0]
        out.append(ProgramHeader(p_type, p_offset, p_filesz))
    return out


def _align4(n: int) -> int:
    return (n + 3) & ~3


def notes(data: bytes | memoryview) -> Iterator[Note]:
    """All notes in PT_NOTE segments (where QEMU's loader looks), skipping malformed tails."""
    for ph in program_headers(data):
        if ph.type != PT_NOTE:
            continue
        pos, end = ph.offset, min(ph.offset + ph.filesz, len(data))
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
            name_start = pos + 12
            desc_start = name_start + _align4(namesz)
            next_pos = desc_start + _align4(descsz)
            if next_pos > end:
                break
            owner = bytes(data[name_start : name_start + namesz]).rstrip(b"\0")
            yield Note(owner, ntype, bytes(data[desc_start : desc_start + descsz]))
            pos = next_pos


def has_pvh_note(data: bytes | memoryview) -> bool:
    """True if the ELF carries the Xen PVH 32-bit entry point note (owner "Xen", type 18)."""
    try:
        return any(n.owner == b"Xen" and n.type == XEN_ELFNOTE_PHYS32_ENTRY for n in notes(data))
    except ValueError:
        return False


def is_static_executable(data: bytes | memoryview) -> bool:
    """True for an ELF64 executable without a program interpreter (i.e. statically linked)."""
    return all(ph.type != PT_INTERP for ph in program_headers(data))

"""Stack traces from drgn as plain data: function, module, source line, and readable frame locals."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import drgn

KERNEL_SPACE = 0xFFFF800000000000
_SRC_PREFIX = re.compile(r"^.*?/(?=(?:arch|block|crypto|drivers|fs|include|init|ipc|kernel|lib|mm|net|security|"
                         r"sound|virt)/)")
_MODULE_SRC = re.compile(r"^.*/src/(mellanox/)")  # a variant's module built from an extracted tree


def short_source(path: str) -> str:
    """Kernel-tree relative path: ``/build/.../linux-6.1.192/mm/dmapool.c`` -> ``mm/dmapool.c``."""
    if _MODULE_SRC.match(path):
        return _MODULE_SRC.sub(r"drivers/net/ethernet/\1", path)
    return _SRC_PREFIX.sub("", path) if path.startswith("/") else path


def frame_module(prog: drgn.Program, pc: int) -> str | None:
    """The module a pc is in (None for the kernel image or user space)."""
    try:
        name = prog.module(pc).name
    except (LookupError, ValueError):
        return None
    return None if name in ("kernel", "vmlinux") else name


def frame_info(prog: drgn.Program, index: int, frame: drgn.StackFrame) -> dict[str, Any] | None:
    """One frame as data; None for user-space frames (the stack below the syscall entry)."""
    pc = frame.pc
    if pc < KERNEL_SPACE:
        return None
    try:
        file, line, _col = frame.source()
        source: str | None = f"{short_source(file)}:{line}"
    except LookupError:
        source = None
    name = frame.name or hex(pc)
    return {"index": index, "function": name, "module": frame_module(prog, pc), "source": source,
            "inline": frame.is_inline}


def stack_data(prog: drgn.Program, trace: drgn.StackTrace) -> list[dict[str, Any]]:
    out = []
    for i, frame in enumerate(trace):
        info = frame_info(prog, i, frame)
        if info is not None:
            out.append(info)
    return out


def read_locals(frame: drgn.StackFrame) -> Iterator[tuple[str, drgn.Object]]:
    """The frame's locals and parameters that drgn can read (optimized-out ones are skipped)."""
    try:
        names = frame.locals()
    except (LookupError, ValueError):
        return
    for name in names:
        try:
            obj = frame[name]
            obj.read_()
        except (LookupError, drgn.ObjectAbsentError, drgn.FaultError, ValueError):
            continue
        yield name, obj


def pointer_to(obj: drgn.Object, type_name: str) -> int | None:
    """The address ``obj`` holds if it is a non-NULL pointer to ``type_name`` (e.g. 'struct net_device')."""
    t = obj.type_
    while t.kind == drgn.TypeKind.TYPEDEF:
        t = t.type
    if t.kind != drgn.TypeKind.POINTER:
        return None
    target = t.type
    while target.kind == drgn.TypeKind.TYPEDEF:
        target = target.type
    if target.type_name() != type_name:
        return None
    value = obj.value_()
    return value or None

"""Opening a guest vmcore with drgn: platform, debug info, and a check that the two belong together."""

from __future__ import annotations

import logging
from pathlib import Path

import drgn

from .. import Mlx5LabError

X86_64 = drgn.Platform(drgn.Architecture.X86_64,
                       drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN)


class _QuietFlattened(logging.Filter):
    """Drop drgn warnings that say nothing to a triage reader.

    QEMU's kdump-zlib files are in makedumpfile's flattened format, which drgn opens fine but warns about
    every time; and gcc's DW_OP_implicit_pointer in some locals makes drgn ask for a bug report (the local
    is just not read).
    """

    _NOISE = ("flattened format", "unknown DWARF expression opcode")

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(n in msg for n in self._NOISE)


_FILTER = _QuietFlattened()
if not any(isinstance(f, _QuietFlattened) for f in logging.getLogger("drgn").filters):
    logging.getLogger("drgn").addFilter(_FILTER)


def open_vmcore(vmcore: Path, debug_files: list[Path]) -> tuple[drgn.Program, list[str]]:
    """A new Program on ``vmcore`` with ``debug_files`` loaded, and warnings about debug info drgn lacks.

    kdump files carry no architecture, so the platform is given (what drgn's CLI option ``--architecture x86_64`` does).
    Each call makes its own Program: nothing is shared between concurrent triages.
    """
    prog = drgn.Program(X86_64)
    try:
        prog.set_core_dump(str(vmcore))
    except (OSError, ValueError, drgn.FaultError) as exc:
        raise Mlx5LabError(f"drgn cannot open {vmcore}: {exc}") from exc
    warnings: list[str] = []
    try:
        prog.load_debug_info([str(p) for p in debug_files])
    except drgn.MissingDebugInfoError as exc:
        warnings.append(f"drgn: {exc}")
    try:
        release = prog["init_uts_ns"].name.release.string_().decode()
    except (KeyError, LookupError, drgn.FaultError) as exc:
        raise Mlx5LabError(f"the debug info does not fit {vmcore} ({exc}): is the vmlinux of the same kernel "
                           "build?") from exc
    prog.cache["mlx5lab_release"] = release
    return prog, warnings

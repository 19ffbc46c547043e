"""Build ``mlx5-reader``, the static multi-threaded sysfs reader that plays the seed's monitoring agent.

The C source lives in ``guest-images/reader/``. The binary is static so it runs in the busybox initramfs
with no libraries; it is compiled once per source (and flags) digest into ``cache_dir()/reader/``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from .cache import cache_dir
from .errors import ImageError
from .hosttools import require_tool, run

READER_NAME = "mlx5-reader"
CFLAGS: tuple[str, ...] = ("-static", "-O2", "-pthread", "-Wall", "-Wextra")


def reader_source() -> Path:
    """The C source (next to the package in the checkout; the project is installed editable)."""
    src = Path(__file__).resolve().parent.parent / "reader" / f"{READER_NAME}.c"
    if not src.is_file():
        raise ImageError(f"the reader source {src} is missing; use an mlx5lab checkout (pip install -e).")
    return src


def reader_key(source: bytes) -> str:
    """Cache key: the source's sha256 together with the compiler flags."""
    h = hashlib.sha256(source)
    h.update(b"\0" + " ".join(CFLAGS).encode())
    return h.hexdigest()[:16]


def _check_static_libc(gcc: Path) -> None:
    """gcc -static needs libc.a (libc6-dev); gcc alone only prints the bare name when it is absent."""
    proc = run([gcc, "-print-file-name=libc.a"], what="gcc -print-file-name", check=False)
    found = proc.stdout.strip()
    if proc.returncode != 0 or not os.path.isabs(found) or not os.path.isfile(found):
        raise ImageError("the static C library (libc.a) was not found: install it with "
                         "'apt-get install -y libc6-dev' and retry.")


def _compile(src: Path, binary: Path) -> None:
    gcc = require_tool("gcc")
    _check_static_libc(gcc)
    binary.parent.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_name(f".{binary.name}.{os.getpid()}")
    try:
        proc = run([gcc, *CFLAGS, "-o", tmp, src], what="compiling mlx5-reader", check=False)
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            tail = " / ".join(lines[-3:]) if lines else f"exit status {proc.returncode}"
            if "cannot find -lc" in proc.stderr or "cannot find -lpthread" in proc.stderr:
                raise ImageError("the static C library was not found: install it with "
                                 "'apt-get install -y libc6-dev' and retry.")
            raise ImageError(f"compiling {src.name} failed ({tail}); fix the source and retry.")
        os.replace(tmp, binary)  # atomic: a concurrent builder sees no or a complete binary
    finally:
        tmp.unlink(missing_ok=True)


def build_reader(out_dir: Path | None = None) -> Path:
    """Return the path of a compiled ``mlx5-reader``, compiling it first if this source is not cached.

    With ``out_dir`` the binary is also copied to ``out_dir/mlx5-reader`` (e.g. an initramfs staging tree)
    and that path is returned; without it, the cached binary's path. Raises :class:`ImageError` when gcc or
    the static C library (libc6-dev) is missing or the source does not compile.
    """
    src = reader_source()
    binary = cache_dir() / "reader" / reader_key(src.read_bytes()) / READER_NAME
    if not binary.is_file():
        _compile(src, binary)
    if out_dir is None:
        return binary
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / READER_NAME
    shutil.copy2(binary, dest)
    return dest

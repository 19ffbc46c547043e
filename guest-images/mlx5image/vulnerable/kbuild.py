"""Build an out-of-tree kernel module with kbuild against installed headers, with progress and a log."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import ImageError
from ..hosttools import find_tool, require_tool, run

# What decides the build besides sources and headers (part of the recipe digest; -j is not).
MAKE_VARS: tuple[str, ...] = ("CONFIG_MLX5_CORE=m",)
STRIP_ARGS: tuple[str, ...] = ("--strip-debug",)
PROGRESS_EVERY = 15.0  # seconds between "compiled N objects" lines
_CC_LINE = re.compile(r"^\s+CC \[M\]\s")


def make_argv(headers: Path, module_dir: Path, jobs: int) -> list[str]:
    return [str(require_tool("make")), "-C", str(headers), f"M={module_dir}", *MAKE_VARS, f"-j{jobs}",
            "modules"]


def kbuild(
    headers: Path,
    module_dir: Path,
    module: str,
    log: Path,
    progress: Callable[[str], None],
    *,
    jobs: int | None = None,
) -> Path:
    """Run ``make M=module_dir modules``; return ``module_dir/<module>.ko``.

    Every output line goes to ``log``; on failure :class:`ImageError` names the log and quotes its tail.
    """
    argv = make_argv(headers, module_dir, jobs or os.cpu_count() or 2)
    env = dict(os.environ, LC_ALL="C")
    tail: deque[str] = deque(maxlen=8)
    compiled = 0
    start = last_report = time.monotonic()
    progress(f"building {module}.ko ({' '.join(argv[1:])}); log: {log}")
    with open(log, "w") as out:
        out.write("$ " + " ".join(argv) + "\n")
        out.flush()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                errors="replace")
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                out.write(line)
                tail.append(line.rstrip())
                if _CC_LINE.match(line):
                    compiled += 1
                now = time.monotonic()
                if now - last_report >= PROGRESS_EVERY:
                    progress(f"  {compiled} objects compiled ({now - start:.0f} s)")
                    last_report = now
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    ko = module_dir / f"{module}.ko"
    if rc != 0 or not ko.is_file():
        last = " | ".join(line for line in tail if line) or f"exit status {rc}"
        errors = compiler_errors(log.read_text(errors="replace"))
        shown = ("; compiler errors:\n" + "\n".join(errors)) if errors else ""
        raise ImageError(f"building {module}.ko failed (make exit status {rc}); see {log}; last lines: {last}"
                         + shown)
    progress(f"built {module}.ko: {compiled} objects in {time.monotonic() - start:.0f} s")
    return ko


_DIAG = re.compile(r"^\S+:\d+:(\d+:)? (fatal )?error: ")


def compiler_errors(log_text: str, limit: int = 6) -> list[str]:
    """The compiler's first error diagnostics of a build log, each with the source lines gcc quotes after it
    (up to the next diagnostic or make line)."""
    out: list[str] = []
    lines = log_text.splitlines()
    count = 0
    for i, line in enumerate(lines):
        if not _DIAG.match(line):
            continue
        count += 1
        if count > limit:
            break
        out.append(line)
        for follow in lines[i + 1:i + 4]:
            if follow.startswith((" ", "\t")) and ": " not in follow[:40].split("|")[0]:
                out.append(follow)
            else:
                break
    return out


def modinfo(ko: Path, field: str) -> str:
    return run(["modinfo", "-F", field, ko], what=f"modinfo {ko.name}").stdout.strip()


def strip_copy(src: Path, dst: Path, args: Sequence[str] = STRIP_ARGS) -> Path:
    """Write a copy of ``src`` without debug info to ``dst``."""
    strip = find_tool("strip")
    if strip is None:
        raise ImageError("'strip' was not found: install it with 'apt-get install -y binutils' and retry.")
    run([strip, *args, "-o", dst, src], what=f"strip {src.name}")
    return dst

"""manifest.json: what an image was built from and what it contains, written last and atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .cpio import Entry

MANIFEST_NAME = "manifest.json"
SCHEMA = 1


def initramfs_listing(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    """One record per archive member: path, type, octal mode, size, and the target of symlinks."""
    out = []
    for e in entries:
        rec: dict[str, Any] = {"path": "/" + e.path, "type": e.kind, "mode": f"{e.mode & 0o7777:04o}",
                               "size": len(e.data) if e.kind == "file" else 0}
        if e.kind == "symlink":
            rec["target"] = e.data.decode()
        elif e.kind in ("char", "block"):
            rec["rdev"] = f"{e.rdev[0]}:{e.rdev[1]}"
        out.append(rec)
    return out


def write_manifest(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(json.dumps({"schema": SCHEMA, **data}, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def load_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest, or None when it is missing, unreadable or of another schema (i.e. rebuild)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == SCHEMA else None

"""Where mlx5lab keeps downloaded and built artefacts (never inside the checkout)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


def cache_dir() -> Path:
    """Return the mlx5lab cache directory, creating it if needed.

    ``$MLX5LAB_CACHE`` wins; otherwise ``$XDG_CACHE_HOME/mlx5lab``, falling back to ``~/.cache/mlx5lab``.
    """
    override = os.environ.get("MLX5LAB_CACHE")
    if override:
        path = Path(override).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
        path = base / "mlx5lab"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed): two processes filling the same cache entry
    (two campaigns, a campaign and `make setup`) take turns instead of tearing each other's files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield

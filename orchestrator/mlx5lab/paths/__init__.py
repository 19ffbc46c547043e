"""Every unload and reload path of the real mlx5_core, as operations with arguments.

``run_path(m, "unbind-bind", fn=1)`` runs one on a booted :class:`~mlx5lab.vm.machine.Machine` and says
whether the driver came back healthy (:class:`PathResult`); ``path_names()`` and ``get_path(name)`` list and
describe them. The contract is in :mod:`.registry`, the health check in :mod:`.health`.
"""

from __future__ import annotations

import importlib
import importlib.util

from .registry import DriverPath, PathArgError, PathError, get_path, parse_spec, path_names, register_path
from .runner import PathResult, run_path

# Modules that register paths, in the order `mlx5lab paths` lists them; device.py (device-triggered paths)
# is imported when it exists.
PATH_MODULES = ("guest", "ethtool", "stack", "power", "device")


def load_paths() -> None:
    for name in PATH_MODULES:
        if importlib.util.find_spec(f"{__name__}.{name}") is not None:
            importlib.import_module(f".{name}", __name__)


__all__ = ["DriverPath", "PathArgError", "PathError", "PathResult", "get_path", "load_paths", "parse_spec",
           "path_names", "register_path", "run_path"]

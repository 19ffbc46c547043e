"""Reading the guest's serial console log: the boot markers the guest's init prints.

Crash reports in the console (cutting, kinds, titles) are :mod:`mlx5lab.crash`.
"""

from __future__ import annotations

INIT_MARKER = "MLX5LAB-INIT"
SSH_MARKER = "SSH-READY"
PORTS_MARKER = "MLX5LAB-PORTS"  # the mlx5 interfaces are up


def count_markers(text: str, marker: str) -> int:
    """How many lines carry ``marker``: at the start of a line, or after a space (a printk prefix)."""
    return sum(1 for line in text.splitlines() if line.startswith(marker) or f" {marker}" in line)

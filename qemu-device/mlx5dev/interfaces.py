"""Contracts between the layers of the emulated function.

The transport (``mlx5dev.vfio_user``) implements :class:`GuestMemory` and :class:`InterruptSink`;
the PCI function (``mlx5dev.pci``) and the mlx5 model (``mlx5dev.mlx5``) only see these protocols,
so the model runs unchanged against a fake guest memory in unit tests.
"""

from __future__ import annotations

from typing import Protocol


class DMAError(Exception):
    """A guest-supplied DMA address range is not backed by mapped guest memory."""


class GuestMemory(Protocol):
    """Guest physical memory as the device sees it (bus-master DMA)."""

    def read(self, addr: int, length: int) -> bytes:
        """Read ``length`` bytes at guest physical ``addr``; raise :class:`DMAError` if unmapped."""
        ...

    def write(self, addr: int, data: bytes) -> None:
        """Write ``data`` at guest physical ``addr``; raise :class:`DMAError` if unmapped."""
        ...


class InterruptSink(Protocol):
    """Delivers MSI-X vectors to the guest."""

    def fire(self, vector: int) -> None:
        """Raise MSI-X ``vector``; a vector with no eventfd is counted and dropped, never an error."""
        ...


class BarDevice(Protocol):
    """What the PCI function needs of the device behind BAR0."""

    def mmio_read(self, offset: int, size: int) -> bytes:
        """Return ``size`` raw (big-endian device order) bytes at BAR0 ``offset``. Must be fast."""
        ...

    def mmio_write(self, offset: int, data: bytes) -> None:
        """Handle a (posted) write at BAR0 ``offset``. Must return at once; slow work is queued."""
        ...

    def reset(self, function_only: bool = False) -> None:
        """Drop all state, as after power-on. ``function_only``: a PCIe function-level reset, which
        leaves state shared with the card's other functions alone."""
        ...

"""What the transport needs of the device it serves (satisfied by :class:`mlx5dev.pci.PciFunction`)."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Protocol


class RegionAccessError(Exception):
    """A region read/write the device refuses; ``errno`` goes into the error reply."""

    def __init__(self, errno_value: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno_value


def bad_access(message: str) -> RegionAccessError:
    return RegionAccessError(errno.EINVAL, message)


@dataclass(frozen=True)
class RegionDesc:
    """Reply data of DEVICE_GET_REGION_INFO (no region is mmappable, so no offset or fd)."""

    size: int
    flags: int


@dataclass(frozen=True)
class IrqDesc:
    """Reply data of DEVICE_GET_IRQ_INFO."""

    count: int
    flags: int


class VfioPciDevice(Protocol):
    """A PCI function as vfio-pci presents it: indexed regions and interrupt types."""

    @property
    def num_regions(self) -> int: ...

    @property
    def num_irqs(self) -> int: ...

    def region_info(self, index: int) -> RegionDesc | None:
        """Region ``index`` (None if there is no such index)."""
        ...

    def irq_info(self, index: int) -> IrqDesc | None:
        """Interrupt type ``index`` (None: unsupported, answered EINVAL)."""
        ...

    def region_read(self, index: int, offset: int, count: int) -> bytes:
        """Exactly ``count`` bytes, or raise :class:`RegionAccessError`. Must be fast."""
        ...

    def region_write(self, index: int, offset: int, data: bytes) -> None:
        """Apply a write or raise :class:`RegionAccessError`. Must return at once."""
        ...

    def reset(self) -> None:
        """Device reset (DEVICE_RESET)."""
        ...

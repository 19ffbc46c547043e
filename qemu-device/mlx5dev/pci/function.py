"""The PCI function: config space plus BAR0, as vfio-pci regions and interrupt types.

Routes region accesses: config space (region 7) to the config model, BAR0 (region 0) to the
:class:`~mlx5dev.interfaces.BarDevice`, except the MSI-X table and PBA ranges, which the function
owns (QEMU emulates the table itself and only forwards PBA reads; the table store here is a
defensive fallback). This is bus glue only: device behaviour lives behind ``BarDevice``.
"""

from __future__ import annotations

import errno
import logging
import threading

from ..interfaces import BarDevice
from ..vfio_user.device import IrqDesc, RegionAccessError, RegionDesc, bad_access
from ..vfio_user.protocol import (
    IRQ_INFO_EVENTFD,
    NUM_PCI_IRQS,
    NUM_PCI_REGIONS,
    REGION_FLAG_READ,
    REGION_FLAG_WRITE,
    IrqIndex,
    RegionIndex,
)
from .capabilities import DEVCTL_BCR_FLR, PCI_EXP_DEVCTL, build_config_space
from .config import MSIX_TABLE_ENTRY_SIZE, PciFunctionConfig
from .config_space import CONFIG_SPACE_SIZE

log = logging.getLogger("mlx5dev.pci")

_VECTOR_CTRL_MASKED = 1


class PciFunction:
    """A PCI Express endpoint with one memory BAR and MSI-X, served over vfio-user.

    Thread model: region accesses and :meth:`reset` come from the transport's socket-loop thread;
    :meth:`set_pending` may be called from any thread.
    """

    def __init__(self, config: PciFunctionConfig, bar: BarDevice) -> None:
        self.config = config
        self.bar = bar
        layout = build_config_space(config)
        self.config_space = layout.space
        self.pcie_offset = layout.pcie_offset
        self.msix_offset = layout.msix_offset
        self.pm_offset = layout.pm_offset
        self._table_range = (config.msix_table_offset, config.msix_table_offset + config.msix_table_size)
        self._pba_range = (config.msix_pba_offset, config.msix_pba_offset + config.msix_pba_size)
        self._lock = threading.Lock()
        self._pba = bytearray(config.msix_pba_size)
        self._table = self._initial_table()
        self.resets = 0

    def _initial_table(self) -> bytearray:
        table = bytearray(self.config.msix_table_size)
        for v in range(self.config.msix_vectors):
            table[v * MSIX_TABLE_ENTRY_SIZE + 12] = _VECTOR_CTRL_MASKED
        return table

    # -- vfio-pci view -------------------------------------------------------------------------

    @property
    def num_regions(self) -> int:
        return NUM_PCI_REGIONS

    @property
    def num_irqs(self) -> int:
        return NUM_PCI_IRQS

    def region_info(self, index: int) -> RegionDesc | None:
        if index == RegionIndex.BAR0:
            return RegionDesc(self.config.bar0_size, REGION_FLAG_READ | REGION_FLAG_WRITE)
        if index == RegionIndex.CONFIG:
            return RegionDesc(CONFIG_SPACE_SIZE, REGION_FLAG_READ | REGION_FLAG_WRITE)
        if 0 <= index < NUM_PCI_REGIONS:
            return RegionDesc(0, 0)  # BAR1 (upper half of BAR0), BAR2-5, ROM, VGA: absent
        return None

    def irq_info(self, index: int) -> IrqDesc | None:
        if index == IrqIndex.MSIX:
            return IrqDesc(self.config.msix_vectors, IRQ_INFO_EVENTFD)
        if index in (IrqIndex.INTX, IrqIndex.MSI):
            return IrqDesc(0, IRQ_INFO_EVENTFD)  # no interrupt pin, no MSI capability
        # ERR and REQ: not implemented. QEMU takes EINVAL quietly (count 0 for ERR logs a warning).
        return None

    def region_read(self, index: int, offset: int, count: int) -> bytes:
        if index == RegionIndex.CONFIG:
            if not self.config_space.in_range(offset, count):
                raise bad_access(f"config read [{offset:#x}, +{count}) out of range")
            return self.config_space.read(offset, count)
        if index == RegionIndex.BAR0:
            self._check_bar(offset, count)
            msix = self._msix_area(offset, count)
            if msix is not None:
                return self._msix_read(msix, offset, count)
            try:
                data = self.bar.mmio_read(offset, count)
            except Exception as exc:
                log.exception("BAR0 read [%#x, +%d) failed in the device", offset, count)
                raise RegionAccessError(errno.EIO, f"device error: {exc}") from exc
            if len(data) != count:
                raise RegionAccessError(
                    errno.EIO, f"device returned {len(data)} bytes for a {count}-byte read"
                )
            return bytes(data)
        raise bad_access(f"read of region {index}, which has no accessible contents")

    def region_write(self, index: int, offset: int, data: bytes) -> None:
        count = len(data)
        if index == RegionIndex.CONFIG:
            if not self.config_space.in_range(offset, count):
                raise bad_access(f"config write [{offset:#x}, +{count}) out of range")
            self._config_write(offset, data)
            return
        if index == RegionIndex.BAR0:
            self._check_bar(offset, count)
            msix = self._msix_area(offset, count)
            if msix is not None:
                self._msix_write(msix, offset, data)
                return
            try:
                self.bar.mmio_write(offset, data)
            except Exception as exc:
                log.exception("BAR0 write [%#x, +%d) failed in the device", offset, count)
                raise RegionAccessError(errno.EIO, f"device error: {exc}") from exc
            return
        raise bad_access(f"write to region {index}, which has no accessible contents")

    def reset(self, function_only: bool = False) -> None:
        """Function reset: config space to power-on values, MSI-X state cleared, device reset.

        ``function_only`` for a function-level reset (DEVCTL): the device keeps what the card's functions
        share; otherwise (VFIO_USER_DEVICE_RESET, QEMU's system or bus reset) the whole card is reset."""
        with self._lock:
            self.config_space.reset()
            self._pba[:] = bytes(len(self._pba))
            self._table = self._initial_table()
            self.resets += 1
        log.info("%s (#%d)", "function-level reset" if function_only else "function reset", self.resets)
        self.bar.reset(function_only)

    # -- MSI-X pending bits ----------------------------------------------------------------------

    def set_pending(self, vector: int, pending: bool) -> None:
        """Set or clear a PBA bit (what a PBA read returns). Nothing sets these by default."""
        if not 0 <= vector < self.config.msix_vectors:
            raise ValueError(f"vector {vector} out of range")
        with self._lock:
            byte, bit = divmod(vector, 8)
            if pending:
                self._pba[byte] |= 1 << bit
            else:
                self._pba[byte] &= ~(1 << bit) & 0xFF

    # -- internals -----------------------------------------------------------------------------

    def _check_bar(self, offset: int, count: int) -> None:
        if offset < 0 or count <= 0 or offset + count > self.config.bar0_size:
            raise bad_access(f"BAR0 access [{offset:#x}, +{count}) outside {self.config.bar0_size:#x}")

    def _msix_area(self, offset: int, count: int) -> str | None:
        end = offset + count
        for name, (lo, hi) in (("table", self._table_range), ("pba", self._pba_range)):
            if offset < hi and lo < end:
                if offset < lo or end > hi:
                    raise bad_access(f"BAR0 access [{offset:#x}, +{count}) straddles the MSI-X {name}")
                return name
        return None

    def _msix_read(self, area: str, offset: int, count: int) -> bytes:
        with self._lock:
            if area == "pba":
                start = offset - self._pba_range[0]
                return bytes(self._pba[start : start + count])
            start = offset - self._table_range[0]
            log.debug("MSI-X table read at %#x (QEMU normally emulates the table)", offset)
            return bytes(self._table[start : start + count])

    def _msix_write(self, area: str, offset: int, data: bytes) -> None:
        if area == "pba":
            log.debug("write to read-only MSI-X PBA at %#x ignored", offset)
            return
        log.debug("MSI-X table write at %#x (QEMU normally emulates the table)", offset)
        with self._lock:
            start = offset - self._table_range[0]
            self._table[start : start + len(data)] = data

    def _config_write(self, offset: int, data: bytes) -> None:
        devctl = self.pcie_offset + PCI_EXP_DEVCTL
        flr = False
        if self.config.flr and offset <= devctl + 1 < offset + len(data):
            flr = bool(data[devctl + 1 - offset] & (DEVCTL_BCR_FLR >> 8))
        with self._lock:
            self.config_space.write(offset, data)
        if flr:
            log.info("function-level reset requested through DEVCTL")
            self.reset(function_only=True)

"""vfio-user server: serves an emulated PCI function to QEMU's ``vfio-user-pci`` client.

Modules, outermost first: ``server`` (listening socket, socket loop), ``session`` (one client:
command dispatch, server-to-client DMA requests), ``framing`` (whole messages with fds),
``dma`` / ``dma_rw`` (DMA windows, GuestMemory), ``irq`` (MSI-X eventfds, InterruptSink),
``device`` (what the served function must provide), ``protocol`` (wire constants and layouts).
"""

from .device import IrqDesc, RegionAccessError, RegionDesc, VfioPciDevice
from .dma_rw import DmaRwLayout
from .server import FunctionFactory, VfioUserServer

__all__ = [
    "DmaRwLayout",
    "FunctionFactory",
    "IrqDesc",
    "RegionAccessError",
    "RegionDesc",
    "VfioPciDevice",
    "VfioUserServer",
]

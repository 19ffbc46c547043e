"""The emulated PCI function: identity, config space and BAR0 routing (bus glue, no device logic).

Wiring::

    PciFunction(PciFunctionConfig(), bar_device)   # bar_device implements interfaces.BarDevice
"""

from .config import PciFunctionConfig
from .config_space import ConfigSpace
from .function import PciFunction
from .stub import RegisterFileBar

__all__ = ["ConfigSpace", "PciFunction", "PciFunctionConfig", "RegisterFileBar"]

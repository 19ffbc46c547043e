"""The function's config-space image: type 0 header and capability list (PM, PCI Express v2, MSI-X).

Register offsets and bits are those of the PCI Local Bus 3.0 and PCI Express Base specifications
(linux/pci_regs.h names in comments). No extended capabilities: the dword at 0x100 is 0, which
means "none" to both QEMU and Linux.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import PciFunctionConfig
from .config_space import ConfigSpace

# Capability IDs.
CAP_ID_PM = 0x01
CAP_ID_EXP = 0x10
CAP_ID_MSIX = 0x11

# Header registers.
PCI_VENDOR_ID = 0x00
PCI_DEVICE_ID = 0x02
PCI_COMMAND = 0x04
PCI_STATUS = 0x06
PCI_REVISION_ID = 0x08
PCI_CLASS_PROG = 0x09
PCI_CACHE_LINE_SIZE = 0x0C
PCI_HEADER_TYPE = 0x0E
PCI_BASE_ADDRESS_0 = 0x10
PCI_SUBSYSTEM_VENDOR_ID = 0x2C
PCI_SUBSYSTEM_ID = 0x2E
PCI_ROM_ADDRESS = 0x30
PCI_CAPABILITY_LIST = 0x34
PCI_INTERRUPT_LINE = 0x3C
PCI_INTERRUPT_PIN = 0x3D

# COMMAND: IO, MEMORY, MASTER, PARITY, SERR, INTX_DISABLE are writable.
COMMAND_WMASK = 0x0001 | 0x0002 | 0x0004 | 0x0040 | 0x0100 | 0x0400
STATUS_CAP_LIST = 0x0010
# STATUS error bits are RW1C: master data parity, sig/rcv target abort, rcv master abort, SERR, parity.
STATUS_W1C = 0x0100 | 0x0800 | 0x1000 | 0x2000 | 0x4000 | 0x8000
HEADER_TYPE_MULTIFUNCTION = 0x80
BAR_MEM_TYPE_64 = 0x04
BAR_MEM_PREFETCH = 0x08

# PCI Express capability (offsets from the capability start).
PCI_EXP_FLAGS = 0x02
PCI_EXP_DEVCAP = 0x04
PCI_EXP_DEVCTL = 0x08
PCI_EXP_DEVSTA = 0x0A
PCI_EXP_LNKCAP = 0x0C
PCI_EXP_LNKCTL = 0x10
PCI_EXP_LNKSTA = 0x12
PCI_EXP_DEVCAP2 = 0x24
PCI_EXP_DEVCTL2 = 0x28
PCI_EXP_LNKCAP2 = 0x2C
PCI_EXP_LNKCTL2 = 0x30
PCI_EXP_CAP_V2_SIZE = 0x3C
PCI_EXP_TYPE_ENDPOINT = 0x0
DEVCAP_EXT_TAG = 1 << 5
DEVCAP_RBER = 1 << 15
DEVCAP_FLR = 1 << 28
DEVCTL_BCR_FLR = 1 << 15
# DEVCTL: error reporting enables, relaxed ordering, MPS, ext tag, phantom, aux PM, no snoop, MRRS.
DEVCTL_WMASK = 0x7FFF
DEVCTL_DEFAULT = 0x2810  # MRRS 512, no snoop, relaxed ordering, MPS 128
DEVSTA_W1C = 0x000F
# LNKCTL: ASPM, RCB, common clock, extended synch, clock PM, HW autonomous width, BW interrupts.
LNKCTL_WMASK = 0x0FCB
LNKSTA_SLOT_CLOCK = 1 << 12
DEVCAP2_COMPLETION_TIMEOUT = 0x1F  # ranges A-D, and disable, supported
DEVCTL2_WMASK = 0x001F
LNKCTL2_WMASK = 0x003F

# MSI-X capability.
PCI_MSIX_FLAGS = 0x02
PCI_MSIX_TABLE = 0x04
PCI_MSIX_PBA = 0x08
MSIX_CAP_SIZE = 12
MSIX_FLAGS_ENABLE = 1 << 15
MSIX_FLAGS_MASKALL = 1 << 14

# Power management capability.
PCI_PM_PMC = 0x02
PCI_PM_CTRL = 0x04
PM_CAP_SIZE = 8
PM_PMC_VERSION_3 = 0x0003
PM_CTRL_NO_SOFT_RESET = 0x0008
PM_CTRL_STATE_MASK = 0x0003

_FIRST_CAP = 0x40


@dataclass(frozen=True)
class ConfigLayout:
    space: ConfigSpace
    pm_offset: int | None
    pcie_offset: int
    msix_offset: int


class _Chain:
    """Appends capabilities at increasing dword-aligned offsets and links them."""

    def __init__(self, space: ConfigSpace) -> None:
        self.space = space
        self.next_free = _FIRST_CAP
        self.last_next_ptr = PCI_CAPABILITY_LIST

    def add(self, cap_id: int, size: int) -> int:
        pos = self.next_free
        self.space.set(pos, 1, cap_id)
        self.space.set(pos + 1, 1, 0)
        self.space.set(self.last_next_ptr, 1, pos)
        self.last_next_ptr = pos + 1
        self.next_free = (pos + size + 3) & ~3
        return pos


def build_config_space(cfg: PciFunctionConfig) -> ConfigLayout:
    cs = ConfigSpace()
    cs.set(PCI_VENDOR_ID, 2, cfg.vendor_id)
    cs.set(PCI_DEVICE_ID, 2, cfg.device_id)
    cs.set(PCI_COMMAND, 2, 0, wmask=COMMAND_WMASK)
    cs.set(PCI_STATUS, 2, STATUS_CAP_LIST, w1c=STATUS_W1C)
    cs.set(PCI_REVISION_ID, 1, cfg.revision)
    cs.set(PCI_CLASS_PROG, 3, cfg.class_code)
    cs.set(PCI_CACHE_LINE_SIZE, 1, 0, wmask=0xFF)
    cs.set(PCI_HEADER_TYPE, 1, HEADER_TYPE_MULTIFUNCTION if cfg.multifunction else 0)
    # BARs are read-only here: QEMU emulates the BAR registers and only reads the type bits from us.
    bar_flags = (BAR_MEM_TYPE_64 if cfg.bar0_64bit else 0) | (
        BAR_MEM_PREFETCH if cfg.bar0_prefetchable else 0
    )
    cs.set(PCI_BASE_ADDRESS_0, 4, bar_flags)
    cs.set(PCI_SUBSYSTEM_VENDOR_ID, 2, cfg.subsystem_vendor_id)
    cs.set(PCI_SUBSYSTEM_ID, 2, cfg.subsystem_id)
    cs.set(PCI_ROM_ADDRESS, 4, 0)  # no expansion ROM: sizing reads back 0
    cs.set(PCI_INTERRUPT_LINE, 1, 0, wmask=0xFF)
    # Interrupt pin 0: no INTx. mlx5 uses MSI-X only, and INTx would need resample eventfds.
    cs.set(PCI_INTERRUPT_PIN, 1, 0)

    chain = _Chain(cs)
    pm = None
    if cfg.power_management:
        pm = chain.add(CAP_ID_PM, PM_CAP_SIZE)
        cs.set(pm + PCI_PM_PMC, 2, PM_PMC_VERSION_3)
        cs.set(pm + PCI_PM_CTRL, 2, PM_CTRL_NO_SOFT_RESET, wmask=PM_CTRL_STATE_MASK)

    exp = chain.add(CAP_ID_EXP, PCI_EXP_CAP_V2_SIZE)
    mps_code = cfg.max_payload_size.bit_length() - 8  # 128 -> 0 ... 4096 -> 5
    cs.set(exp + PCI_EXP_FLAGS, 2, 2 | (PCI_EXP_TYPE_ENDPOINT << 4))  # capability version 2
    cs.set(exp + PCI_EXP_DEVCAP, 4, mps_code | DEVCAP_EXT_TAG | DEVCAP_RBER | (DEVCAP_FLR if cfg.flr else 0))
    cs.set(exp + PCI_EXP_DEVCTL, 2, DEVCTL_DEFAULT, wmask=DEVCTL_WMASK)
    cs.set(exp + PCI_EXP_DEVSTA, 2, 0, w1c=DEVSTA_W1C)
    cs.set(exp + PCI_EXP_LNKCAP, 4, cfg.link_speed | (cfg.link_width << 4))
    cs.set(exp + PCI_EXP_LNKCTL, 2, 0, wmask=LNKCTL_WMASK)
    cs.set(exp + PCI_EXP_LNKSTA, 2, cfg.link_speed | (cfg.link_width << 4) | LNKSTA_SLOT_CLOCK)
    cs.set(exp + PCI_EXP_DEVCAP2, 4, DEVCAP2_COMPLETION_TIMEOUT)
    cs.set(exp + PCI_EXP_DEVCTL2, 2, 0, wmask=DEVCTL2_WMASK)
    speeds = ((1 << cfg.link_speed) - 1) << 1  # supported link speeds vector, bit 1 = 2.5 GT/s
    cs.set(exp + PCI_EXP_LNKCAP2, 4, speeds)
    cs.set(exp + PCI_EXP_LNKCTL2, 2, cfg.link_speed, wmask=LNKCTL2_WMASK)

    msix = chain.add(CAP_ID_MSIX, MSIX_CAP_SIZE)
    cs.set(msix + PCI_MSIX_FLAGS, 2, cfg.msix_vectors - 1, wmask=MSIX_FLAGS_ENABLE | MSIX_FLAGS_MASKALL)
    cs.set(msix + PCI_MSIX_TABLE, 4, cfg.msix_table_offset | 0)  # BIR 0
    cs.set(msix + PCI_MSIX_PBA, 4, cfg.msix_pba_offset | 0)

    cs.freeze_defaults()
    return ConfigLayout(cs, pm, exp, msix)

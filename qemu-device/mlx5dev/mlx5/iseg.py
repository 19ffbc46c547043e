"""The initialization segment at BAR0 offset 0 (``struct mlx5_init_seg``, 0x2010 bytes).

Registers are big-endian 32-bit. Only three are writable by the driver: ``cmdq_addr_h``,
``cmdq_addr_l_sz`` (queue address, and ``nic_interface`` for fast teardown / SW reset) and the
command doorbell, which is forwarded to a callback. ``health_counter`` advances on every read so
the driver's health poller never counts a miss; fault injection can freeze it or raise a syndrome.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from .ifc.hw import INIT_SEG

ISEG_SIZE = INIT_SEG.size
CMDIF_REV = 5
LOG_CMDQ_SIZE = 5  # 32 entries
LOG_CMDQ_STRIDE = 6  # of 64 bytes

OFF_CMDQ_ADDR_H = INIT_SEG.field("cmdq_addr_h").byte
OFF_CMDQ_ADDR_L_SZ = 0x14
OFF_CMD_DBELL = INIT_SEG.field("cmd_dbell").byte
OFF_HEALTH_COUNTER = INIT_SEG.field("health_counter").byte


class NicInterface:
    """``cmdq_addr_l_sz`` bits 10:8 (``core/mlx5_core.h``)."""

    FULL_DRIVER = 0
    DISABLED = 1
    NO_DRAM_NIC = 2
    SW_RESET = 7


@dataclass
class HealthState:
    synd: int = 0
    ext_synd: int = 0
    rfr: bool = False
    severity: int | None = None
    fw_ver_dead: bool = False  # fw_ver reads 0xffffffff: the driver's "PCI dead" sensor
    counter_frozen: bool = False


class InitSegment:
    """Register file of the init segment. ``mmio_read``/``mmio_write`` are cheap and never block."""

    def __init__(
        self,
        fw_rev: tuple[int, int, int],
        on_doorbell: Callable[[int], None],
        cmd_exec_to: int = 0,
        cmd_q_init_to: int = 0,
    ) -> None:
        self._major, self._minor, self._sub = fw_rev
        self._timeouts = {0xFF8: cmd_exec_to, 0xFFC: cmd_q_init_to}
        self._on_doorbell = on_doorbell
        self._lock = threading.Lock()
        self.health = HealthState()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.cmdq_addr_h = 0
            self.cmdq_addr_l = 0
            self.nic_interface = NicInterface.FULL_DRIVER
            self.health_counter = 0
            self.health = HealthState()

    @property
    def cmdq_addr(self) -> int:
        """Guest DMA address of the command queue page (0 until the driver programs it)."""
        return (self.cmdq_addr_h << 32) | (self.cmdq_addr_l & 0xFFFFF000)

    def _dword(self, off: int) -> int:
        """The 32-bit register at 4-byte-aligned ``off``, as the driver reads it."""
        if off == 0x000:
            return (self._minor << 16) | self._major
        if off == 0x004:
            return (CMDIF_REV << 16) | self._sub
        if off == OFF_CMDQ_ADDR_H:
            return self.cmdq_addr_h
        if off == OFF_CMDQ_ADDR_L_SZ:
            return (
                (self.cmdq_addr_l & 0xFFFFF000)
                | (self.nic_interface << 8)
                | (LOG_CMDQ_SIZE << 4)
                | LOG_CMDQ_STRIDE
            )
        if off == OFF_HEALTH_COUNTER:
            if not self.health.counter_frozen:
                self.health_counter = (self.health_counter + 1) & 0xFFFFFFFF
            return self.health_counter
        if 0x200 <= off < 0x240:
            return self._health_dword(off - 0x200)
        if off in self._timeouts:  # 0 (default): the driver keeps its own timeouts and skips DTOR
            return self._timeouts[off]
        return 0  # initializing (0x1fc) = 0: ready at once; clocks unused

    def _health_dword(self, off: int) -> int:
        h = self.health
        if off == 0x30:
            return 0xFFFFFFFF if h.fw_ver_dead else ((self._minor << 16) | self._major)
        if off == 0x38:
            sev = 0 if h.severity is None else (0x8 | (h.severity & 7))
            return ((0x80 if h.rfr else 0) | sev) << 24
        if off == 0x3C:
            return (h.synd & 0xFF) << 16 | (h.ext_synd & 0xFFFF)
        return 0

    def read(self, offset: int, size: int) -> bytes:
        first, last = offset & ~3, (offset + size + 3) & ~3
        with self._lock:
            raw = b"".join(self._dword(o).to_bytes(4, "big") for o in range(first, last, 4))
        return raw[offset - first : offset - first + size]

    def write(self, offset: int, data: bytes) -> str | None:
        """Apply a write; returns a reason string when the write was ignored (for the trace)."""
        if offset % 4 or len(data) % 4:
            return f"unaligned iseg write at {offset:#x} size {len(data)}"
        for i in range(0, len(data), 4):
            self._write_dword(offset + i, int.from_bytes(data[i : i + 4], "big"))
        return None

    def _write_dword(self, off: int, value: int) -> None:
        if off == OFF_CMD_DBELL:
            self._on_doorbell(value)
            return
        with self._lock:
            if off == OFF_CMDQ_ADDR_H:
                self.cmdq_addr_h = value
            elif off == OFF_CMDQ_ADDR_L_SZ:
                self.cmdq_addr_l = value & 0xFFFFF000
                self.nic_interface = (value >> 8) & 7
            # every other register is read-only: writes are dropped

    def set_health(self, **changes: object) -> None:
        with self._lock:
            for k, v in changes.items():
                if not hasattr(self.health, k):
                    raise AttributeError(f"no health field {k}")
                setattr(self.health, k, v)

"""The initialization segment at BAR0 offset 0 (``struct mlx5_init_seg``, 0x2010 bytes).

Registers are big-endian 32-bit. Only three are writable by the driver: ``cmdq_addr_h``,
``cmdq_addr_l_sz`` (queue address, and ``nic_interface`` for fast teardown / SW reset) and the
command doorbell, which is forwarded to a callback. The health buffer, the health counter and the
``initializing`` word belong to the card's firmware (:mod:`.firmware`), shared by every function:
``health_counter`` advances on every read so the driver's health poller never counts a miss; fault
injection can freeze it, raise a syndrome, or make the function read all-ones (a dead firmware).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .firmware import Firmware, HealthState
from .ifc.hw import INIT_SEG

ISEG_SIZE = INIT_SEG.size
CMDIF_REV = 5
LOG_CMDQ_SIZE = 5  # 32 entries
LOG_CMDQ_STRIDE = 6  # of 64 bytes

OFF_CMDQ_ADDR_H = INIT_SEG.field("cmdq_addr_h").byte
OFF_CMDQ_ADDR_L_SZ = 0x14
OFF_CMD_DBELL = INIT_SEG.field("cmd_dbell").byte
OFF_HEALTH_COUNTER = INIT_SEG.field("health_counter").byte
OFF_INITIALIZING = 0x1FC
INITIALIZING = 1 << 31  # main.c: wait_fw_init waits for it to clear
FW_RESET_SUPPORTED = 1 << 30  # device.h: MLX5_FW_RESET_SUPPORTED_OFFSET, read by health.c: reset_fw_if_needed
ALL_ONES = 0xFFFFFFFF


class NicInterface:
    """``cmdq_addr_l_sz`` bits 10:8 (``core/mlx5_core.h``)."""

    FULL_DRIVER = 0
    DISABLED = 1
    NO_DRAM_NIC = 2
    SW_RESET = 7


class InitSegment:
    """Register file of the init segment. ``mmio_read``/``mmio_write`` are cheap and never block."""

    def __init__(
        self,
        firmware: Firmware,
        on_doorbell: Callable[[int], None],
        cmd_exec_to: int = 0,
        cmd_q_init_to: int = 0,
        on_nic_interface: Callable[[int], None] | None = None,
    ) -> None:
        self.firmware = firmware
        self._timeouts = {0xFF8: cmd_exec_to, 0xFFC: cmd_q_init_to}
        self._on_doorbell = on_doorbell
        self._on_nic_interface = on_nic_interface or (lambda value: None)
        self._lock = threading.Lock()
        # how often the driver read the health counter (health.c: poll_health, once per poll): a scenario
        # that freezes the counter twice must let the driver see it move in between
        self.health_counter_reads = 0
        self.reset()

    @property
    def health(self) -> HealthState:
        return self.firmware.health

    def reset(self, nic_interface: int = NicInterface.FULL_DRIVER) -> None:
        """The function's own registers to their reset values (the firmware's state is not touched)."""
        with self._lock:
            self.cmdq_addr_h = 0
            self.cmdq_addr_l = 0
            self.nic_interface = nic_interface

    def set_nic_interface(self, value: int) -> None:
        with self._lock:
            self.nic_interface = value & 7

    @property
    def cmdq_addr(self) -> int:
        """Guest DMA address of the command queue page (0 until the driver programs it)."""
        return (self.cmdq_addr_h << 32) | (self.cmdq_addr_l & 0xFFFFF000)

    def _dword(self, off: int) -> int:
        """The 32-bit register at 4-byte-aligned ``off``, as the driver reads it."""
        fw = self.firmware
        if fw.health.fw_ver_dead:
            return ALL_ONES  # an unreachable function: every read completes with all-ones
        major, minor, sub = fw.fw_version
        if off == 0x000:
            return (minor << 16) | major
        if off == 0x004:
            return (CMDIF_REV << 16) | sub
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
            self.health_counter_reads += 1
            return fw.read_health_counter()
        if off == OFF_INITIALIZING:
            return (INITIALIZING if fw.resetting else 0) | (FW_RESET_SUPPORTED if fw.fw_reset_supported else 0)
        if 0x200 <= off < 0x240:
            return self._health_dword(off - 0x200)
        if off in self._timeouts:  # 0 (default): the driver keeps its own timeouts and skips DTOR
            return self._timeouts[off]
        return 0  # clocks unused

    def _health_dword(self, off: int) -> int:
        h = self.health
        if off == 0x30:
            major, minor, _sub = self.firmware.fw_version
            return (minor << 16) | major
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
            else:
                return  # every other register is read-only: writes are dropped
        if off == OFF_CMDQ_ADDR_L_SZ:
            self._on_nic_interface(self.nic_interface)

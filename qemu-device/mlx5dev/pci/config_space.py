"""A 4 KiB PCI Express configuration space: bytes plus per-bit write semantics.

Each bit is read-only, read-write (``wmask``) or write-1-to-clear (``w1cmask``). Values are
little-endian, as PCI config space is.
"""

from __future__ import annotations

CONFIG_SPACE_SIZE = 4096
LEGACY_CONFIG_SIZE = 256


class ConfigSpace:
    def __init__(self) -> None:
        self.data = bytearray(CONFIG_SPACE_SIZE)
        self.wmask = bytearray(CONFIG_SPACE_SIZE)
        self.w1cmask = bytearray(CONFIG_SPACE_SIZE)
        self._defaults = bytes(CONFIG_SPACE_SIZE)

    # -- construction helpers ------------------------------------------------------------------

    def set(self, offset: int, width: int, value: int, wmask: int = 0, w1c: int = 0) -> None:
        """Set a ``width``-byte register's value and write semantics."""
        end = offset + width
        self.data[offset:end] = value.to_bytes(width, "little")
        self.wmask[offset:end] = wmask.to_bytes(width, "little")
        self.w1cmask[offset:end] = w1c.to_bytes(width, "little")

    def get(self, offset: int, width: int) -> int:
        return int.from_bytes(self.data[offset : offset + width], "little")

    def freeze_defaults(self) -> None:
        """Remember the current contents as the power-on state restored by :meth:`reset`."""
        self._defaults = bytes(self.data)

    def reset(self) -> None:
        self.data[:] = self._defaults

    # -- guest accesses ------------------------------------------------------------------------

    def in_range(self, offset: int, count: int) -> bool:
        return offset >= 0 and count > 0 and offset + count <= CONFIG_SPACE_SIZE

    def read(self, offset: int, count: int) -> bytes:
        return bytes(self.data[offset : offset + count])

    def write(self, offset: int, data: bytes) -> None:
        """Apply a guest write: read-only bits keep their value, W1C bits clear where 1 is written."""
        for i, value in enumerate(data):
            pos = offset + i
            old = self.data[pos]
            wm = self.wmask[pos]
            new = (old & ~wm) | (value & wm)
            new &= ~(value & self.w1cmask[pos])
            self.data[pos] = new & 0xFF

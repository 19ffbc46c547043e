"""Declarative big-endian bit-field layouts, in the units ``mlx5_ifc.h`` uses.

A :class:`Layout` is declared once as data: ``(name, bit_offset, width)`` rows, where bit 0 is the
most significant bit of byte 0 (so ``mlx5_ifc``'s ``reserved_at_XX`` names are bit offsets too).
A width may also be another :class:`Layout` (a nested struct, flattened as ``outer.inner``), or
``0`` for a flexible array whose start is all that matters (``pas``, ``register_data``).

Reads past the end of a short buffer return 0 and writes past it are an error: guest input is
zero-padded by the caller, output buffers are allocated at full size.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Row = tuple[str, int, "int | Layout"]


@dataclass(frozen=True)
class Field:
    name: str
    bit: int
    width: int

    @property
    def byte(self) -> int:
        """Byte offset of the first byte holding the field."""
        return self.bit // 8


class Layout:
    """A fixed-size big-endian structure made of named bit fields."""

    def __init__(self, name: str, size: int, rows: Iterable[Row]) -> None:
        self.name = name
        self.size = size
        self.fields: dict[str, Field] = {}
        for fname, bit, width in rows:
            if isinstance(width, Layout):
                self.fields[fname] = Field(fname, bit, width.size * 8)
                for sub in width.fields.values():
                    self._add(Field(f"{fname}.{sub.name}", bit + sub.bit, sub.width))
            else:
                self._add(Field(fname, bit, width))

    def _add(self, f: Field) -> None:
        if f.name in self.fields:
            raise ValueError(f"{self.name}: duplicate field {f.name}")
        if f.bit < 0 or f.bit + f.width > self.size * 8 and f.width:
            raise ValueError(f"{self.name}.{f.name} lies outside {self.size} bytes")
        self.fields[f.name] = f

    def __repr__(self) -> str:
        return f"Layout({self.name}, {self.size:#x} bytes, {len(self.fields)} fields)"

    def field(self, name: str) -> Field:
        try:
            return self.fields[name]
        except KeyError:
            raise KeyError(f"{self.name} has no field {name!r}") from None

    def off(self, name: str) -> int:
        """Byte offset of a (byte-aligned) field, e.g. a nested struct or a flexible array."""
        f = self.field(name)
        if f.bit % 8:
            raise ValueError(f"{self.name}.{name} is not byte aligned")
        return f.byte

    def get(self, buf: bytes | bytearray | memoryview, name: str, base: int = 0) -> int:
        f = self.field(name)
        first, last = f.bit // 8, (f.bit + f.width + 7) // 8
        raw = bytes(buf[base + first : base + last])
        if len(raw) < last - first:
            raw = raw + bytes(last - first - len(raw))
        value = int.from_bytes(raw, "big") >> ((last * 8) - (f.bit + f.width))
        return value & ((1 << f.width) - 1)

    def set(self, buf: bytearray, name: str, value: int, base: int = 0) -> None:
        f = self.field(name)
        if value < 0 or value >> f.width:
            raise ValueError(f"{self.name}.{name}: {value:#x} does not fit {f.width} bits")
        first, last = f.bit // 8, (f.bit + f.width + 7) // 8
        if base + last > len(buf):
            raise ValueError(f"{self.name}.{name}: buffer too short ({len(buf)} bytes)")
        shift = (last * 8) - (f.bit + f.width)
        mask = ((1 << f.width) - 1) << shift
        cur = int.from_bytes(buf[base + first : base + last], "big")
        cur = (cur & ~mask) | (value << shift)
        buf[base + first : base + last] = cur.to_bytes(last - first, "big")

    def get_bytes(self, buf: bytes | bytearray, name: str, base: int = 0) -> bytes:
        f = self.field(name)
        if f.bit % 8 or f.width % 8:
            raise ValueError(f"{self.name}.{name} is not a byte string")
        raw = bytes(buf[base + f.byte : base + f.byte + f.width // 8])
        return raw + bytes(f.width // 8 - len(raw))

    def set_bytes(self, buf: bytearray, name: str, data: bytes, base: int = 0) -> None:
        f = self.field(name)
        if f.bit % 8 or f.width % 8 or len(data) > f.width // 8:
            raise ValueError(f"{self.name}.{name}: cannot hold {len(data)} bytes")
        buf[base + f.byte : base + f.byte + len(data)] = data

    def build(self, values: Mapping[str, int] | None = None, size: int | None = None, **kw: int) -> bytearray:
        """A zeroed buffer (``size`` bytes, default the layout size) with ``values`` set."""
        buf = bytearray(self.size if size is None else size)
        for name, value in {**(values or {}), **kw}.items():
            self.set(buf, name, value)
        return buf

    def decode(self, buf: bytes | bytearray, base: int = 0) -> dict[str, int]:
        """All scalar (<= 64-bit, non-reserved) fields as a dict, for traces and tests."""
        return {
            n: self.get(buf, n, base)
            for n, f in self.fields.items()
            if 0 < f.width <= 64 and not n.startswith("reserved")
        }


def bits(dw: int, hi: int, lo: int) -> tuple[int, int]:
    """``(bit_offset, width)`` of a field written "dw X b[hi:lo]" (``dw`` = X).

    That notation names the big-endian 32-bit word at byte offset X and its bits ``hi`` down to ``lo``,
    bit 31 being the most significant bit of byte X: the word that ``MLX5_GET``/``MLX5_SET``
    (``include/linux/mlx5/device.h``) read and write with ``be32_to_cpu``/``cpu_to_be32``. In this
    module's numbering (bit 0 = MSB of byte 0, as ``mlx5_ifc.h`` counts) the field starts at
    ``8 * X + 31 - hi``; e.g. ``log_max_eq``, dw 0x1c b[3:0] of ``cmd_hca_cap``, is bit 0xfc, width 4.
    """
    return dw * 8 + (31 - hi), hi - lo + 1

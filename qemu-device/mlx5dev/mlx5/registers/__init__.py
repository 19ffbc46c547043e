"""ACCESS_REG register handlers, one module per register family.

A register handler gets the register data the driver sent (zero-padded to the register size)
and returns its reply in ``rc.out``, which starts as a copy of the input (real firmware echoes
the register on writes and fills in fields on reads).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..consts import Reg
from ..layout import Layout
from ..state import DeviceState


@dataclass
class RegCtx:
    dev: DeviceState
    layout: Layout
    data: bytes  # register data from the driver, padded to layout.size
    out: bytearray  # register data returned to the driver
    write: bool
    argument: int
    note: str = ""
    after: list[Callable[[], None]] = field(default_factory=list)  # run after the command completes

    def get(self, name: str) -> int:
        return self.layout.get(self.data, name)

    def put(self, name: str, value: int) -> None:
        self.layout.set(self.out, name, value)


@dataclass
class RegSpec:
    reg: Reg
    layout: Layout
    fn: Callable[[RegCtx], None]


REGISTERS: dict[int, RegSpec] = {}


def register(reg: Reg, layout: Layout) -> Callable[[Callable[[RegCtx], None]], Callable[[RegCtx], None]]:
    def deco(fn: Callable[[RegCtx], None]) -> Callable[[RegCtx], None]:
        if reg in REGISTERS:
            raise RuntimeError(f"two handlers for register {reg.name}")
        REGISTERS[reg] = RegSpec(reg, layout, fn)
        return fn

    return deco


from . import cam, counters, host_endianness, mfrl, module, paos, pmtu, ptys, timeouts  # noqa: E402,F401,I001

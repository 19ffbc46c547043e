"""Event queues: the device writes 64-byte EQEs into guest memory and raises the EQ's MSI-X vector.

Ownership (``lib/eq.h``): the driver initialises every ``owner`` byte to 1 and accepts an entry when
``owner & 1 == (ci >> log_eq_size) & 1``, so the device writes ``(pi >> log_eq_size) & 1`` (0 on
the first lap). The EQ buffer is described by ``pas[]`` pages of ``4 KiB << log_page_size``.
The consumer index comes from the UAR doorbells (+0x40 with arm, +0x48 without); an EQ that is
full is never overwritten: the event is dropped and reported instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..interfaces import GuestMemory
from .ifc.hw import EQE

EQE_SIZE = EQE.size
ADAPTER_PAGE = 4096
_OWNER = EQE.field("owner").byte
_DATA = EQE.field("data").byte


def page_addr(pas: list[int], page_size: int, offset: int) -> int:
    """Guest address of byte ``offset`` of a buffer laid out on ``pas`` pages."""
    return pas[offset // page_size] + offset % page_size


def pages_for(nbytes: int, page_size: int) -> int:
    return -(-nbytes // page_size)


@dataclass
class EventQueue:
    eqn: int
    log_size: int
    log_page_size: int
    pas: list[int]
    intr: int
    mask: int  # event_bitmask: bit t set = events of type t go to this EQ
    uar_page: int
    pi: int = 0
    ci: int = 0
    armed: bool = False
    posted: int = 0
    dropped: int = 0
    stats: dict[int, int] = field(default_factory=dict)

    @property
    def nent(self) -> int:
        return 1 << self.log_size

    @property
    def page_size(self) -> int:
        return ADAPTER_PAGE << self.log_page_size

    def handles(self, event_type: int) -> bool:
        return bool((self.mask >> event_type) & 1)

    def set_consumer(self, ci24: int, arm: bool) -> None:
        """Doorbell: the driver's 24-bit consumer counter, unwrapped against our producer index."""
        self.ci = self.pi - ((self.pi - ci24) & 0xFFFFFF)
        self.armed = arm

    def full(self) -> bool:
        return self.pi - self.ci >= self.nent

    def post(self, memory: GuestMemory, event_type: int, sub_type: int, data: bytes) -> bool:
        """Write one EQE (owner byte last); False if the EQ is full. May raise DMAError."""
        if self.full():
            self.dropped += 1
            return False
        eqe = bytearray(EQE_SIZE)
        EQE.set(eqe, "type", event_type)
        EQE.set(eqe, "sub_type", sub_type)
        eqe[_DATA : _DATA + len(data)] = data
        owner = (self.pi >> self.log_size) & 1
        addr = page_addr(self.pas, self.page_size, (self.pi & (self.nent - 1)) * EQE_SIZE)
        memory.write(addr, bytes(eqe[:_OWNER]))
        memory.write(addr + _OWNER, bytes([owner]))
        self.pi += 1
        self.posted += 1
        self.stats[event_type] = self.stats.get(event_type, 0) + 1
        return True

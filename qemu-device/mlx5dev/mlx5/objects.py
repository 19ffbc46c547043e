"""Object tables: every firmware object the driver creates, keyed by the id the device handed out.

Ids are allocated per kind from a fixed start value, counting upward and wrapping inside the
kind's id space (24 bits for most objects, 8 bits for EQs and Q counters), never 0 and never an
id still in use. Freed ids are not reused until the space wraps, so a driver that uses an id after
destroying it gets a clean "bad resource" instead of silently hitting a newer object.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .consts import QueueState, Status
from .cq import CompletionQueue
from .datapath.wq import Mkey, WqRing
from .eq import EventQueue
from .errors import CmdError, Synd

T = TypeVar("T")


class Table(Generic[T]):
    """Id -> object for one kind of object, with bounded id allocation."""

    def __init__(self, kind: str, first: int, bits: int = 24, limit: int | None = None) -> None:
        self.kind = kind
        self.first = first
        self.space = min(1 << bits, first + limit) if limit else 1 << bits  # ids are first .. space-1
        self.limit = self.space - first
        self._next = first
        self._objs: dict[int, T] = {}

    def __len__(self) -> int:
        return len(self._objs)

    def __contains__(self, obj_id: int) -> bool:
        return obj_id in self._objs

    def __iter__(self) -> Iterator[int]:
        return iter(list(self._objs))

    def items(self) -> list[tuple[int, T]]:
        return list(self._objs.items())

    def values(self) -> list[T]:
        return list(self._objs.values())

    def add(self, make: T | None = None, obj_id: int | None = None) -> int:
        """Store ``make`` under a fresh id (or the given one) and return the id."""
        if len(self._objs) >= self.limit:
            raise CmdError(Status.NO_RES, Synd.NO_RESOURCES, f"{self.kind} table full ({self.limit})")
        if obj_id is None:
            obj_id = self._next
            while obj_id in self._objs or obj_id == 0:  # terminates: the table is not full
                obj_id = obj_id + 1 if obj_id + 1 < self.space else self.first
            self._next = obj_id + 1 if obj_id + 1 < self.space else self.first
        self._objs[obj_id] = make  # type: ignore[assignment]
        return obj_id

    def find(self, obj_id: int) -> T | None:
        return self._objs.get(obj_id)

    def get(self, obj_id: int) -> T:
        try:
            return self._objs[obj_id]
        except KeyError:
            raise CmdError(Status.BAD_RES, Synd.BAD_RESOURCE, f"no {self.kind} {obj_id:#x}") from None

    def remove(self, obj_id: int) -> T:
        obj = self.get(obj_id)
        del self._objs[obj_id]
        return obj

    def clear(self) -> None:
        self._objs.clear()


@dataclass
class WorkQueue:
    """An SQ or RQ: its state, the context it was created with, and the data path's view of its ring.

    ``ci`` is the card's consumer counter in WQE-basic-block units (16 bits, as the WQE index in a
    send WQE's control segment and a CQE's ``wqe_counter``); moving to RST rewinds it, as the driver
    rewinds its own counters (``en_main.c: mlx5e_reset_txqsq_cc_pc``).
    """

    cqn: int
    state: int = QueueState.RST
    context: bytes = b""
    ring: WqRing | None = None
    ci: int = 0
    vlan_strip: bool = False
    counter_set_id: int = 0
    packets: int = 0
    bytes: int = 0
    errors: int = 0


@dataclass
class Rqt:
    actual_size: int
    rqns: list[int] = field(default_factory=list)


@dataclass
class FlowTable:
    table_type: int
    level: int
    log_size: int
    groups: set[int] = field(default_factory=set)
    entries: dict[int, int] = field(default_factory=dict)  # flow_index -> group id (0 if none)


@dataclass
class FlowGroup:
    table_id: int
    start: int
    end: int


@dataclass
class Opaque:
    """An object whose content the model does not interpret (TIS, TIR, mkey, PD, ...)."""

    context: bytes = b""


@dataclass
class QCounter:
    """A Q counter: what the card counts for the RQs that name it (``rx_out_of_buffer`` in ``ethtool -S``)."""

    out_of_buffer: int = 0


class Objects:
    """All object tables of one function; emptied by TEARDOWN_HCA and by reset."""

    def __init__(self, max_eqs: int, uar_first: int, uar_limit: int) -> None:
        self.uars: Table[Opaque] = Table("UAR", uar_first, bits=24, limit=uar_limit)
        self.eqs: Table[EventQueue] = Table("EQ", 0x01, bits=8, limit=max_eqs)
        self.cqs: Table[CompletionQueue] = Table("CQ", 0x400)
        self.sqs: Table[WorkQueue] = Table("SQ", 0x1000)
        self.rqs: Table[WorkQueue] = Table("RQ", 0x2000)
        self.tises: Table[Opaque] = Table("TIS", 0x100)
        self.tirs: Table[Opaque] = Table("TIR", 0x200)
        self.rqts: Table[Rqt] = Table("RQT", 0x300)
        self.flow_tables: Table[FlowTable] = Table("flow table", 0x10)
        self.flow_groups: Table[FlowGroup] = Table("flow group", 0x20)
        self.flow_counters: Table[Opaque] = Table("flow counter", 0x8000)
        self.modify_headers: Table[Opaque] = Table("modify header", 0x1)
        self.reformats: Table[Opaque] = Table("packet reformat", 0x1)
        # from 0x10: index 1 with key 0 would be 0x100, the reserved invalid key (qp.h: MLX5_INVALID_LKEY)
        self.mkeys: Table[Mkey] = Table("mkey", 0x10)
        self.pds: Table[Opaque] = Table("PD", 0x1)
        self.tds: Table[Opaque] = Table("transport domain", 0x1)
        self.q_counters: Table[QCounter] = Table("Q counter", 0x1, bits=8)
        self.vxlan_ports: Table[Opaque] = Table("VXLAN port", 0x1, bits=16)
        self.l2_entries: Table[Opaque] = Table("L2 entry", 0x1)

    def tables(self) -> dict[str, Table]:  # type: ignore[type-arg]
        return {name: t for name, t in vars(self).items() if isinstance(t, Table)}

    def counts(self) -> dict[str, int]:
        return {name: len(t) for name, t in self.tables().items()}

    def clear(self) -> None:
        for t in self.tables().values():
            t.clear()

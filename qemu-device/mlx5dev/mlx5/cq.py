"""Completion queues: CQEs written into guest memory, and the arming that decides when an event is due.

A CQE is valid for the driver when its owner bit (``op_own`` bit 0) equals ``(ci >> log_cq_size) & 1``
(``wq.h`` ``mlx5_cqwq_get_cqe``); the driver initialises ``op_own`` to 0xf1, so the first lap is
written with owner 0. With ``cqe_sz`` 1 (128-byte stride) the 64-byte CQE is the second half of the
stride; with 0 (64) or 2 (128, padded) it is the first (``cq.h`` CQE_STRIDE_*).
The consumer counter is read back from the CQ doorbell record so a full CQ is never overwritten.

Arming (``include/linux/mlx5/cq.h: mlx5_cq_arm``, a 64-bit write at UAR + 0x20 of ``sn << 28 | cmd |
ci`` and the CQN): an armed CQ raises one completion event for the next CQE it gets, or at once if it
already holds CQEs past the armed consumer index, and is then disarmed until the driver arms it again
(mlx5e arms every CQ when it creates it, ``en_main.c: mlx5e_create_cq``, and after each NAPI poll,
``en_txrx.c: mlx5e_napi_poll``). The card does not delay events for CQ moderation (``cq_period``,
``cq_max_count``): an event as soon as one is due is within what moderation allows the driver to see.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..interfaces import GuestMemory
from .eq import ADAPTER_PAGE, page_addr
from .ifc.hw import CQE64

CQE_REQ = 0x0  # MLX5_CQE_REQ: requester (send) completion
CQE_RESP_SEND = 0x2  # MLX5_CQE_RESP_SEND: a received packet
CQE_REQ_ERR = 0xD  # MLX5_CQE_REQ_ERR
CQE_RESP_ERR = 0xE  # MLX5_CQE_RESP_ERR
_OP_OWN = CQE64.field("op_own").byte


def cqe_stride(cqe_sz: int) -> int:
    return 64 if cqe_sz == 0 else 128


@dataclass
class CompletionQueue:
    cqn: int
    log_size: int
    cqe_sz: int
    log_page_size: int
    pas: list[int]
    eqn: int
    dbr_addr: int
    pi: int = 0
    posted: int = 0
    dropped: int = 0
    armed: bool = False
    arm_ci: int = 0  # the 24-bit consumer index the last arm doorbell carried

    @property
    def nent(self) -> int:
        return 1 << self.log_size

    def consumer(self, memory: GuestMemory) -> int:
        """The driver's consumer counter from the doorbell record, unwrapped (24 bits)."""
        ci24 = int.from_bytes(memory.read(self.dbr_addr, 4), "big") & 0xFFFFFF
        return self.pi - ((self.pi - ci24) & 0xFFFFFF)

    def arm(self, ci24: int) -> bool:
        """An arm doorbell (request notification for the next CQE; the solicited-only form and the arm
        sequence number are not told apart). True if an event is due at once: CQEs past ``ci24`` are
        already there (the caller raises it, which disarms the CQ)."""
        self.armed, self.arm_ci = True, ci24 & 0xFFFFFF
        return (self.pi & 0xFFFFFF) != self.arm_ci

    def take_event(self) -> bool:
        """Whether the CQE just written raises an event (the CQ was armed); disarms it."""
        due, self.armed = self.armed, False
        return due

    def post(self, memory: GuestMemory, wqe_counter: int, qpn: int, opcode: int = CQE_REQ) -> bool:
        """Write one requester CQE for ``wqe_counter`` (``op_own`` last); False if the CQ is full."""
        cqe = bytearray(CQE64.size)
        CQE64.set(cqe, "sop_drop_qpn", qpn & 0xFFFFFF)
        CQE64.set(cqe, "wqe_counter", wqe_counter & 0xFFFF)
        return self.write(memory, cqe, opcode)

    def write(self, memory: GuestMemory, cqe: bytearray, opcode: int) -> bool:
        """Write a 64-byte CQE with ``opcode`` and the owner bit of this lap; False if the CQ is full.

        May raise DMAError.
        """
        if self.pi - self.consumer(memory) >= self.nent:
            self.dropped += 1
            return False
        owner = (self.pi >> self.log_size) & 1
        stride = cqe_stride(self.cqe_sz)
        offset = (self.pi & (self.nent - 1)) * stride + (64 if self.cqe_sz == 1 else 0)
        addr = page_addr(self.pas, ADAPTER_PAGE << self.log_page_size, offset)
        memory.write(addr, bytes(cqe[:_OP_OWN]))
        memory.write(addr + _OP_OWN, bytes([(opcode << 4) | owner]))
        self.pi += 1
        self.posted += 1
        return True

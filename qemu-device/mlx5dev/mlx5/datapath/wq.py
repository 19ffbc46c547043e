"""Work queue rings and memory keys: where the WQEs of a queue are and what a data segment's key maps.

A send or receive queue's ring is described by the ``wq`` part of its context (``mlx5_ifc.h``:
``struct mlx5_ifc_wq_bits``): entries of ``1 << log_wq_stride`` bytes, ``1 << log_wq_sz`` of them,
on pages of ``4 KiB << log_wq_pg_sz`` whose addresses follow the context as ``pas[]``, and a doorbell
record at ``dbr_addr``. mlx5e allocates rings as fragmented buffers (``wq.c: mlx5_wq_cyc_create`` over
``alloc.c: mlx5_frag_buf_alloc_node``), so consecutive entries may live on unrelated pages.

mlx5e's data segments carry one key, the PA-mode memory key of ``en_common.c: mlx5e_create_mkey``
(``length64``: it spans all memory, so a segment's address is the guest's DMA address). The key in a
segment is ``mkey_index << 8 | mkey_7_0`` (``mr.c: mlx5_core_create_mkey``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ...interfaces import GuestMemory
from ..eq import page_addr

ADAPTER_PAGE = 4096
MKC_ACCESS_MODE_PA = 0x0


class WqeError(Exception):
    """A WQE the card cannot execute; ``syndrome`` is the error CQE's (``cq.h``: MLX5_CQE_SYNDROME_*)."""

    def __init__(self, syndrome: int, detail: str) -> None:
        super().__init__(detail)
        self.syndrome = syndrome
        self.detail = detail


SYND_LOCAL_LENGTH = 0x01
SYND_LOCAL_QP_OP = 0x02
SYND_LOCAL_PROT = 0x04
SYND_WR_FLUSH = 0x05


@dataclass
class WqRing:
    """The ring of one SQ or RQ."""

    log_stride: int
    log_size: int
    log_page_size: int
    pas: list[int]
    dbr_addr: int

    @property
    def size(self) -> int:
        return 1 << self.log_size

    @property
    def stride(self) -> int:
        return 1 << self.log_stride

    @property
    def page_size(self) -> int:
        return ADAPTER_PAGE << self.log_page_size

    def nbytes(self) -> int:
        return self.stride << self.log_size

    def read(self, memory: GuestMemory, index: int, length: int) -> bytes:
        """``length`` bytes from the start of entry ``index``, following the ring across pages and its end."""
        out = bytearray()
        pos = (index % self.size) * self.stride
        total = self.nbytes()
        while len(out) < length:
            pos %= total
            chunk = min(length - len(out), self.page_size - pos % self.page_size, total - pos)
            out += memory.read(page_addr(self.pas, self.page_size, pos), chunk)
            pos += chunk
        return bytes(out)

    def doorbell_record(self, memory: GuestMemory, word: int) -> int:
        """Big-endian word ``word`` of the doorbell record (0: receive counter, 1: send counter; ``wq.h``)."""
        return int.from_bytes(memory.read(self.dbr_addr + 4 * word, 4), "big")


@dataclass
class Mkey:
    """A memory key as CREATE_MKEY gave it (``mlx5_ifc.h``: ``struct mlx5_ifc_mkc_bits``)."""

    index: int
    key: int  # mkey_7_0
    pd: int
    access_mode: int
    start: int
    length: int
    length64: bool
    local_read: bool
    local_write: bool

    @property
    def lkey(self) -> int:
        return (self.index << 8) | self.key

    def translate(self, addr: int, length: int, write: bool) -> int:
        """The guest address of ``length`` bytes at ``addr`` under this key; WqeError if not allowed."""
        if self.access_mode != MKC_ACCESS_MODE_PA:
            raise WqeError(SYND_LOCAL_PROT, f"mkey {self.lkey:#x}: access mode {self.access_mode} not modelled")
        if (write and not self.local_write) or (not write and not self.local_read):
            raise WqeError(SYND_LOCAL_PROT, f"mkey {self.lkey:#x} does not allow local {'write' if write else 'read'}")
        if not self.length64 and not (self.start <= addr and addr + length <= self.start + self.length):
            raise WqeError(SYND_LOCAL_PROT, f"{addr:#x}+{length} outside mkey {self.lkey:#x}")
        return addr


class MkeyTable(Protocol):
    def find(self, obj_id: int) -> Mkey | None: ...


def translate(mkeys: MkeyTable, lkey: int, addr: int, length: int, write: bool) -> int:
    """The guest address of ``length`` bytes at ``addr`` under memory key ``lkey``; WqeError if not allowed."""
    mkey = mkeys.find(lkey >> 8)
    if mkey is None or mkey.key != lkey & 0xFF:
        raise WqeError(SYND_LOCAL_PROT, f"memory key {lkey:#x} does not exist")
    return mkey.translate(addr, length, write)

"""Mailbox chains: the guest memory that carries command payloads beyond the 16 inline bytes.

Block *k* of a chain holds payload bytes ``16 + 512*k .. 16 + 512*(k+1) - 1``; the queue entry's
``in_ptr`` / ``out_ptr`` points at block 0 and each block's ``next`` at the following one
(``struct mlx5_cmd_prot_block``, 576 bytes, 1 KiB-aligned by the driver's dma_pool).

Walking is bounded: only as many blocks as the length needs are visited. A longer chain is *not*
an error, because the driver's message cache hands out cached chains longer than the message
(``cmd.c`` ``alloc_msg``). A chain that ends early, loops, skips a block number, is misaligned or
points outside guest RAM raises :class:`ChainError` carrying the delivery status to report.
"""

from __future__ import annotations

from ..interfaces import DMAError, GuestMemory
from .consts import Delivery
from .ifc.hw import PROT_BLOCK

INLINE = 16
BLOCK_DATA = 512
BLOCK_SIZE = PROT_BLOCK.size
BLOCK_ALIGN = 1024
MAX_BLOCKS = 2048  # 1 MiB + 16 bytes per message: far above any 6.1 command, bounds the work
MAX_MSG_LEN = INLINE + BLOCK_DATA * MAX_BLOCKS

_HEADER = 0x230  # next, block_num, token, signatures
_NEXT = PROT_BLOCK.field("next").byte
_BLOCK_NUM = PROT_BLOCK.field("block_num").byte


class ChainError(Exception):
    """A mailbox chain cannot be used; ``delivery`` is the status to put in ``status_own``."""

    def __init__(self, delivery: Delivery, detail: str) -> None:
        super().__init__(detail)
        self.delivery = delivery
        self.detail = detail


def blocks_needed(length: int) -> int:
    """Mailbox blocks for a message of ``length`` bytes (``mlx5_calc_cmd_blocks``)."""
    return max(0, -(-(length - INLINE) // BLOCK_DATA))


def walk(memory: GuestMemory, first: int, count: int, *, output: bool) -> list[tuple[int, bytes]]:
    """Visit ``count`` blocks from ``first``; returns ``(address, 576-byte block)`` pairs
    (for an output chain the payload part of each block is left zero: it is not read).

    Raises :class:`ChainError` for a short, looping, misnumbered, misaligned or unmapped chain.
    """
    length_err = Delivery.OUT_LENGTH_ERR if output else Delivery.IN_LENGTH_ERR
    ptr_err = Delivery.OUT_PTR_ALIGN_ERR if output else Delivery.IN_PTR_ALIGN_ERR
    which = "output" if output else "input"
    blocks: list[tuple[int, bytes]] = []
    seen: set[int] = set()
    addr = first
    for k in range(count):
        if addr == 0:
            raise ChainError(length_err, f"{which} chain ends after {k} of {count} blocks")
        if addr % BLOCK_ALIGN:
            raise ChainError(ptr_err, f"{which} block {k} at {addr:#x} not {BLOCK_ALIGN}-aligned")
        if addr in seen:
            raise ChainError(Delivery.BAD_BLK_NUM_ERR, f"{which} chain loops back to {addr:#x} at block {k}")
        start = _HEADER if output else 0  # an output block's payload is not needed: read its header only
        try:
            raw = memory.read(addr + start, BLOCK_SIZE - start)
        except DMAError as e:
            raise ChainError(ptr_err, f"{which} block {k} at {addr:#x}: DMA error: {e}") from None
        raw = raw.rjust(BLOCK_SIZE, b"\0")
        num = int.from_bytes(raw[_BLOCK_NUM : _BLOCK_NUM + 4], "big")
        if num != k:
            raise ChainError(
                Delivery.BAD_BLK_NUM_ERR, f"{which} block at {addr:#x} has block_num {num}, want {k}"
            )
        seen.add(addr)
        blocks.append((addr, raw))
        addr = int.from_bytes(raw[_NEXT : _NEXT + 8], "big")
    return blocks


def read_input(memory: GuestMemory, inline: bytes, in_ptr: int, inlen: int) -> bytes:
    """The whole ``inlen``-byte command input: 16 inline bytes then the chain's payload."""
    if not 0 <= inlen <= MAX_MSG_LEN:
        raise ChainError(Delivery.IN_LENGTH_ERR, f"inlen {inlen} exceeds {MAX_MSG_LEN}")
    payload = bytearray(inline[: min(inlen, INLINE)])
    for _addr, raw in walk(memory, in_ptr, blocks_needed(inlen), output=False):
        payload += raw[:BLOCK_DATA]
    return bytes(payload[:inlen])


def output_blocks(memory: GuestMemory, out_ptr: int, outlen: int) -> list[int]:
    """Validate the driver's pre-linked output chain; returns the block addresses to fill."""
    if not 0 <= outlen <= MAX_MSG_LEN:
        raise ChainError(Delivery.OUT_LENGTH_ERR, f"outlen {outlen} exceeds {MAX_MSG_LEN}")
    return [addr for addr, _raw in walk(memory, out_ptr, blocks_needed(outlen), output=True)]


def write_output(memory: GuestMemory, blocks: list[int], out: bytes) -> None:
    """Write output bytes 16.. into the data area of the blocks (headers are left alone).

    May raise :class:`DMAError` if the guest unmapped a block since it was validated."""
    for k, addr in enumerate(blocks):
        chunk = out[INLINE + k * BLOCK_DATA : INLINE + (k + 1) * BLOCK_DATA]
        if not chunk:
            break
        memory.write(addr, chunk)

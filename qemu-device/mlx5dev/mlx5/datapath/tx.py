"""Transmit: execute the send WQEs that one SQ doorbell announces, in order.

The doorbell (UAR + 0x800, 64-bit) is the first 8 bytes of the last posted WQE's control segment
(``en/txrx.h: mlx5e_notify_hw``): that WQE's index and the SQ number. The card walks the ring from
its own consumer counter up to that WQE. Each WQE is a control segment (``qp.h: mlx5_wqe_ctrl_seg``:
index and opcode, SQ number and size in 16-byte units, ``fm_ce_se``), then for SEND and LSO an Ethernet
segment (``mlx5_wqe_eth_seg``: checksum flags, MSS, the inline headers or a VLAN to insert) and data
segments (``mlx5_wqe_data_seg``: length, memory key, address) that the card gathers through the key.
mlx5e builds them in ``en_tx.c: mlx5e_sq_xmit_wqe`` and pads ring ends with NOPs (``en/txrx.h:
mlx5e_post_nop``); it asks for a completion on the last WQE of a doorbell only (``fm_ce_se`` CQ_UPDATE),
and one requester CQE completes every WQE up to its ``wqe_counter`` (``en_tx.c: mlx5e_poll_tx_cq``).

A WQE the card cannot execute (bad key, bad length, a size beyond the ring or the WQE limit, an opcode
the card does not implement) gets an error CQE (``cq.h: struct mlx5_err_cqe``, opcode REQ_ERR) and moves
the SQ to ERR; later WQEs are flushed with WR_FLUSH_ERR completions, as hardware does, until the driver
resets the SQ (``en/reporter_tx.c: mlx5e_tx_reporter_err_cqe_recover`` waits for that flush).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...interfaces import DMAError
from ..consts import QueueState
from ..cq import CQE_REQ_ERR, CompletionQueue
from ..ifc.hw import CQE64, WQE_CTRL
from ..objects import WorkQueue
from ..state import DeviceState
from .events import notify
from .packet import fill_checksums, insert_vlan, segment_tcp
from .wq import SYND_LOCAL_LENGTH, SYND_LOCAL_PROT, SYND_LOCAL_QP_OP, SYND_WR_FLUSH, WqeError, translate

OP_NOP, OP_SEND, OP_LSO = 0x00, 0x0A, 0x0E  # device.h MLX5_OPCODE_*
CQ_UPDATE = 0x08  # qp.h MLX5_WQE_CTRL_CQ_UPDATE (fm_ce_se bits 3:2 = 2)
DS_BYTES, WQEBB = 16, 64
MAX_WQEBBS = 16  # max_wqe_sz_sq 0x400 bytes (capabilities.py)
CS_L3, CS_L4 = 0x40, 0x80  # qp.h MLX5_ETH_WQE_L3_CSUM, MLX5_ETH_WQE_L4_CSUM
INSERT_VLAN, INSERT_SVLAN = 0x8000, 0x0001  # qp.h MLX5_ETH_WQE_INSERT_VLAN, MLX5_ETH_WQE_SVLAN
INLINE_SEG = 0x80000000  # qp.h MLX5_INLINE_SEG: a data segment carrying its bytes
MAX_SEND = 16 << 10  # one SEND frame: jumbo MTU with room to spare
MAX_LSO = (64 << 10) + 256  # an LSO payload of 64 KiB (max_lso_cap 16) and its headers


@dataclass
class DoorbellResult:
    """What one doorbell did: frames for the wire, WQEs executed, and the errors met."""

    frames: list[bytes] = field(default_factory=list)
    wqes: int = 0
    errors: list[str] = field(default_factory=list)


def sq_doorbell(dev: DeviceState, doorbell: bytes) -> DoorbellResult:
    """Run the WQEs announced by one SQ doorbell (on the worker); returns the frames to send."""
    result = DoorbellResult()
    sqn = WQE_CTRL.get(doorbell, "qpn")
    last = WQE_CTRL.get(doorbell, "wqe_index")
    with dev.lock:
        sq = dev.objects.sqs.find(sqn)
        if sq is None:
            dev.reject(f"SQ doorbell for unknown sqn {sqn:#x}", doorbell=doorbell.hex())
            return result
        if sq.state not in (QueueState.RDY, QueueState.ERR):
            dev.reject(f"SQ doorbell for sqn {sqn:#x} in state {QueueState(sq.state).name}: ignored")
            return result
        cq = dev.objects.cqs.find(sq.cqn)
        if cq is None or dev.objects.eqs.find(cq.eqn) is None:
            dev.reject(f"SQ {sqn:#x}: CQ {sq.cqn:#x} or its EQ is gone")
            return result
        assert sq.ring is not None
        pending = (last - sq.ci) & 0xFFFF
        if pending >= sq.ring.size:
            dev.reject(f"SQ {sqn:#x} doorbell for WQE {last} but the card is at {sq.ci & 0xFFFF}: "
                       f"beyond the ring of {sq.ring.size}")
            return result
        try:
            _run(dev, sq, sqn, cq, last, result)
        except DMAError as e:
            dev.reject(f"SQ {sqn:#x}: DMA error on the ring or its CQ: {e}")
        notify(dev, cq)
    dev.traffic.tx_errors += len(result.errors)
    return result


def _run(dev: DeviceState, sq: WorkQueue, sqn: int, cq: CompletionQueue, last: int,
         result: DoorbellResult) -> None:
    assert sq.ring is not None
    for _ in range(sq.ring.size):  # bounded: every step moves the consumer counter by >= 1 block
        index, before = sq.ci & 0xFFFF, sq.ci
        ctrl = sq.ring.read(dev.memory, sq.ci, DS_BYTES)
        nbb = min(max(1, -(-WQE_CTRL.get(ctrl, "ds") // 4)), MAX_WQEBBS)
        wanted = index == last or bool(WQE_CTRL.get(ctrl, "fm_ce_se") & CQ_UPDATE)
        if sq.state == QueueState.ERR:  # flushed, not executed
            if wanted:
                _error_cqe(dev, cq, sqn, index, WQE_CTRL.get(ctrl, "opcode"), SYND_WR_FLUSH)
        else:
            try:
                signalled = _execute(dev, sq, sqn, index, ctrl, result)
            except WqeError as e:
                result.errors.append(e.detail)
                dev.reject(f"SQ {sqn:#x} WQE {index}: {e.detail}; the SQ moves to ERR", syndrome=e.syndrome)
                _error_cqe(dev, cq, sqn, index, WQE_CTRL.get(ctrl, "opcode"), e.syndrome)
                sq.state = QueueState.ERR
                sq.errors += 1
            else:
                result.wqes += 1
                if signalled and not cq.post(dev.memory, index, sqn):
                    dev.reject(f"CQ {cq.cqn:#x} full: completion of SQ {sqn:#x} WQE {index} dropped")
        sq.ci += nbb
        if ((last - before) & 0xFFFF) < nbb:  # the doorbell's WQE was this one
            return


def _execute(dev: DeviceState, sq: WorkQueue, sqn: int, index: int, ctrl: bytes, result: DoorbellResult) -> bool:
    """Execute the WQE at ``index`` whose control segment is ``ctrl``; returns whether it asks for a CQE."""
    assert sq.ring is not None
    opcode, ds = WQE_CTRL.get(ctrl, "opcode"), WQE_CTRL.get(ctrl, "ds")
    if WQE_CTRL.get(ctrl, "wqe_index") != index:
        raise WqeError(SYND_LOCAL_QP_OP, f"control segment names WQE {WQE_CTRL.get(ctrl, 'wqe_index')}")
    if WQE_CTRL.get(ctrl, "qpn") != sqn:
        raise WqeError(SYND_LOCAL_QP_OP, f"control segment names SQ {WQE_CTRL.get(ctrl, 'qpn'):#x}")
    nbb = -(-ds // 4)
    if ds == 0 or nbb > MAX_WQEBBS or nbb > sq.ring.size:
        raise WqeError(SYND_LOCAL_LENGTH, f"ds count {ds} (the limit is {MAX_WQEBBS * 4})")
    signalled = bool(WQE_CTRL.get(ctrl, "fm_ce_se") & CQ_UPDATE)
    if opcode == OP_NOP:
        return signalled
    if opcode not in (OP_SEND, OP_LSO):
        raise WqeError(SYND_LOCAL_QP_OP, f"opcode {opcode:#x} is not implemented by this card")
    wqe = sq.ring.read(dev.memory, sq.ci, ds * DS_BYTES)
    frames = build_frames(dev, wqe, opcode)
    result.frames.extend(frames)
    for frame in frames:
        dev.traffic.count_tx(frame)
    sq.packets += len(frames)
    sq.bytes += sum(map(len, frames))
    return signalled


def build_frames(dev: DeviceState, wqe: bytes, opcode: int) -> list[bytes]:
    """The frame(s) a SEND or LSO WQE describes, with the offloads its Ethernet segment asks for."""
    if len(wqe) < 2 * DS_BYTES:
        raise WqeError(SYND_LOCAL_LENGTH, "no Ethernet segment")
    eth = wqe[16:32]
    cs_flags, mss = eth[4], int.from_bytes(eth[6:8], "big")
    word = int.from_bytes(eth[12:14], "big")
    frame = bytearray()
    vlan: tuple[int, int] | None = None
    pos = 32
    if word & INSERT_VLAN:
        vlan = (int.from_bytes(eth[14:16], "big"), 0x88A8 if word & INSERT_SVLAN else 0x8100)
    else:
        inline = word & 0x3FF
        if inline:
            if 30 + inline > len(wqe):
                raise WqeError(SYND_LOCAL_LENGTH, f"inline headers of {inline} bytes beyond the WQE")
            frame += wqe[30 : 30 + inline]
            pos = 32 + -(-(inline - 2) // DS_BYTES) * DS_BYTES
    limit = MAX_LSO if opcode == OP_LSO else MAX_SEND
    while pos + DS_BYTES <= len(wqe):
        byte_count = int.from_bytes(wqe[pos : pos + 4], "big")
        if byte_count & INLINE_SEG:
            n = byte_count & 0x3FF
            if pos + 4 + n > len(wqe):
                raise WqeError(SYND_LOCAL_LENGTH, f"inline data of {n} bytes beyond the WQE")
            frame += wqe[pos + 4 : pos + 4 + n]
            pos += -(-(4 + n) // DS_BYTES) * DS_BYTES
            continue
        lkey = int.from_bytes(wqe[pos + 4 : pos + 8], "big")
        addr = int.from_bytes(wqe[pos + 8 : pos + 16], "big")
        pos += DS_BYTES
        if byte_count == 0:
            raise WqeError(SYND_LOCAL_LENGTH, "data segment of length 0")
        if len(frame) + byte_count > limit:
            raise WqeError(SYND_LOCAL_LENGTH, f"frame longer than {limit} bytes")
        frame += gather(dev, lkey, addr, byte_count)
    if len(frame) < 14:
        raise WqeError(SYND_LOCAL_LENGTH, f"frame of {len(frame)} bytes")
    if vlan is not None:
        frame = bytearray(insert_vlan(bytes(frame), *vlan))
    if opcode == OP_LSO:
        header_len = word & 0x3FF
        return segment_tcp(bytes(frame), header_len, mss)
    if cs_flags & (CS_L3 | CS_L4):
        fill_checksums(frame, bool(cs_flags & CS_L3), bool(cs_flags & CS_L4))
    return [bytes(frame)]


def gather(dev: DeviceState, lkey: int, addr: int, length: int) -> bytes:
    """Read ``length`` bytes at ``addr`` through memory key ``lkey``."""
    try:
        return dev.memory.read(translate(dev.objects.mkeys, lkey, addr, length, write=False), length)
    except DMAError as e:
        raise WqeError(SYND_LOCAL_PROT, f"{addr:#x}+{length} under key {lkey:#x}: {e}") from None


def _error_cqe(dev: DeviceState, cq: CompletionQueue, sqn: int, index: int, opcode: int, syndrome: int) -> None:
    """An error CQE (``cq.h: struct mlx5_err_cqe``): syndrome at 0x37, opcode and QPN at 0x38."""
    cqe = bytearray(CQE64.size)
    cqe[0x37] = syndrome
    cqe[0x38:0x3C] = (((opcode & 0xFF) << 24) | (sqn & 0xFFFFFF)).to_bytes(4, "big")
    cqe[0x3C:0x3E] = (index & 0xFFFF).to_bytes(2, "big")
    if not cq.write(dev.memory, cqe, CQE_REQ_ERR):
        dev.reject(f"CQ {cq.cqn:#x} full: error completion of SQ {sqn:#x} WQE {index} dropped")

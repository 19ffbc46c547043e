"""Receive: a frame from the wire into the receive ring the driver posted, with its CQE and event.

The card implements cyclic receive rings only (``MLX5_WQ_TYPE_CYCLIC``; ``striding_rq`` is not
advertised, so mlx5e takes its legacy RQ: ``en/params.c: mlx5e_build_rq_params``). A receive WQE is
``1 << log_wq_stride`` bytes of data segments (``en/txrx.h: struct mlx5e_rx_wqe_cyc``) that
``en_rx.c: mlx5e_alloc_rx_wqe`` fills with buffer addresses under the mlx5e memory key; a segment with
the invalid key 0x100 (``qp.h: MLX5_INVALID_LKEY``) ends the list. The driver publishes how many WQEs
it posted in the ring's doorbell record (word 0, ``wq.h: mlx5_wq_cyc_update_db_record``); the card
consumes them in order, one per frame, and writes a CQE whose ``wqe_counter`` names the WQE it used
(``en_rx.c: mlx5e_handle_rx_cqe``), ``byte_cnt`` its length, and the checksum, header types and hash
that ``mlx5e_build_rx_skb`` reads. VLAN tags are stripped into the CQE unless the RQ disabled it (``vsd``).

Which RQ: the card does not walk the flow tables; every frame that reaches the port is steered to the
RQ that the RSS indirection table (the largest RQT) gives for the frame's flow hash. When the driver
has no channel open that table points at its drop RQ, which has no posted WQEs: as on hardware the
frame is dropped and counted in that RQ's Q counter (``rx_out_of_buffer`` / ``rx_if_down_packets``).
A frame larger than the WQE's buffers consumes the WQE with a LOCAL_LENGTH error CQE (RESP_ERR), which
mlx5e counts and does not treat as fatal (``en_rx.c: trigger_report``).
"""

from __future__ import annotations

from ...interfaces import DMAError
from ..consts import QueueState
from ..cq import CQE_RESP_ERR, CQE_RESP_SEND, CompletionQueue
from ..ifc.hw import CQE64
from ..objects import WorkQueue
from ..state import DeviceState
from .events import notify
from .packet import RxSummary, rx_summary, strip_vlan
from .wq import SYND_LOCAL_LENGTH, SYND_LOCAL_PROT, WqeError, translate

INVALID_LKEY = 0x100
DS_BYTES = 16


def deliver(dev: DeviceState, frame: bytes) -> bool:
    """Receive one frame (on the worker); True if it reached a receive buffer."""
    with dev.lock:
        if dev.firmware.halted:
            _drop(dev, "firmware halted")
            return False
        if not dev.hca.initialized or not dev.port.oper_up:
            _drop(dev, "port down")
            return False
        info = rx_summary(frame)  # the same for the frame with or without its VLAN tag (parse skips tags)
        rq = select_rq(dev, info.rss_hash)
        if rq is None:
            _drop(dev, "no receive queue")
            return False
        if rq.state != QueueState.RDY:
            _drop(dev, "receive queue not ready")
            return False
        cq = dev.objects.cqs.find(rq.cqn)
        if cq is None:
            _drop(dev, "receive queue has no CQ")
            return False
        try:
            ok = _into_ring(dev, rq, cq, frame, info)
        except DMAError as e:
            dev.reject(f"RQ: DMA error on the ring or its CQ: {e}")
            return False
        notify(dev, cq)
        return ok


def _drop(dev: DeviceState, reason: str, why: str = "") -> None:
    if dev.traffic.drop(reason):
        dev.trace.emit({"kind": "info", "function": dev.name,
                        "detail": f"received frame dropped: {reason}{': ' + why if why else ''} "
                                  "(the first; later ones are only counted)"})


def select_rq(dev: DeviceState, flow_hash: int) -> WorkQueue | None:
    """The RQ the RSS indirection table (the largest RQT) gives for a frame's flow hash."""
    rqts = dev.objects.rqts.values()
    if not rqts:
        return None
    table = max(rqts, key=lambda t: t.actual_size)
    if not table.rqns:
        return None
    rqn = table.rqns[flow_hash % len(table.rqns)]
    return dev.objects.rqs.find(rqn)


def _into_ring(dev: DeviceState, rq: WorkQueue, cq: CompletionQueue, frame: bytes, info: RxSummary) -> bool:
    ring = rq.ring
    assert ring is not None
    posted = ring.doorbell_record(dev.memory, 0) & 0xFFFF
    if posted == rq.ci & 0xFFFF:
        counter = dev.objects.q_counters.find(rq.counter_set_id)
        if counter is not None:
            counter.out_of_buffer += 1
        _drop(dev, "out of buffer")
        return False
    tci = None
    if rq.vlan_strip:
        frame, tci = strip_vlan(frame)
    index = rq.ci & 0xFFFF
    wqe = ring.read(dev.memory, rq.ci, ring.stride)
    rq.ci += 1
    cqe = bytearray(CQE64.size)
    cqe[0x3C:0x3E] = index.to_bytes(2, "big")
    try:
        scatter(dev, wqe, frame)
    except WqeError as e:
        rq.errors += 1
        _drop(dev, "length error" if e.syndrome == SYND_LOCAL_LENGTH else "protection error",
              f"{e.detail}; WQE {index}: {wqe.hex()}")
        cqe[0x37] = e.syndrome
        if not cq.write(dev.memory, cqe, CQE_RESP_ERR):
            dev.reject(f"CQ {cq.cqn:#x} full: receive error completion dropped")
        return False
    cqe[0x0C:0x10] = info.rss_hash.to_bytes(4, "big")
    cqe[0x10] = info.rss_hash_type
    cqe[0x14:0x16] = info.check_sum.to_bytes(2, "big")
    cqe[0x1C] = info.hds_ip_ext
    cqe[0x1D] = info.l4_l3_hdr_type | (1 if tci is not None else 0)  # bit 0: cqe_has_vlan
    cqe[0x1E:0x20] = (tci or 0).to_bytes(2, "big")
    CQE64.set(cqe, "byte_cnt", len(frame))
    if not cq.write(dev.memory, cqe, CQE_RESP_SEND):
        dev.reject(f"CQ {cq.cqn:#x} full: a received frame's completion dropped")
        _drop(dev, "CQ full")
        return False
    rq.packets += 1
    rq.bytes += len(frame)
    dev.traffic.count_rx(frame)
    return True


def scatter(dev: DeviceState, wqe: bytes, frame: bytes) -> None:
    """Write ``frame`` across the WQE's data segments; WqeError if it does not fit or a key is bad."""
    pos = 0
    for off in range(0, len(wqe) - DS_BYTES + 1, DS_BYTES):
        if pos >= len(frame):
            break
        byte_count = int.from_bytes(wqe[off : off + 4], "big") & 0x7FFFFFFF
        lkey = int.from_bytes(wqe[off + 4 : off + 8], "big")
        addr = int.from_bytes(wqe[off + 8 : off + 16], "big")
        if lkey == INVALID_LKEY or byte_count == 0:
            break
        chunk = frame[pos : pos + byte_count]
        target = translate(dev.objects.mkeys, lkey, addr, len(chunk), write=True)
        try:
            dev.memory.write(target, chunk)
        except DMAError as e:
            raise WqeError(SYND_LOCAL_PROT, f"{addr:#x}+{len(chunk)}: {e}") from None
        pos += len(chunk)
    if pos < len(frame):
        raise WqeError(SYND_LOCAL_LENGTH, f"a {len(frame)}-byte frame does not fit the WQE's {pos} bytes")

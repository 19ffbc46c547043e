"""The data path against the test-side driver: send WQEs, key translation, CQE formats, the receive ring
walk, the cable between two functions, error CQEs and the counters ``ethtool -S`` reads."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlx5dev.mlx5.consts import Op, QueueState, Reg
from mlx5dev.mlx5.datapath import packet
from mlx5dev.mlx5.ifc import cmds as c

from .mlx5_testdriver import TestDriver, make_device

MAC0, MAC1 = bytes.fromhex("02aa00000001"), bytes.fromhex("02aa00000002")
L3_OK_L4_OK = packet.CQE_L3_OK | packet.CQE_L4_OK
OP_REQ, OP_RESP_SEND, OP_REQ_ERR, OP_RESP_ERR = 0x0, 0x2, 0xD, 0xE


def udp_frame(payload: bytes, dst: bytes = MAC1, src: bytes = MAC0, sport: int = 4000) -> bytes:
    """An IPv4/UDP frame with both checksums left 0 (for the card to fill)."""
    udp = struct.pack("!HHHH", sport, 5000, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 7, 0, 64, 17, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    return dst + src + b"\x08\x00" + ip + udp


def tcp_frame(payload: bytes, seq: int = 1000, flags: int = 0x18) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, seq, 1, 5 << 4, flags, 65535, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 100, 0x4000, 64, 6, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    return MAC1 + MAC0 + b"\x08\x00" + ip + tcp


@pytest.fixture
def pair() -> Iterator[tuple[TestDriver, TestDriver]]:
    """Two functions joined by a cable (fn0 -> fn1 and back), each probed with one channel up."""
    dev0, _m0, _i0, drv0 = make_device(name="fn0", mac=MAC0.hex(":"))
    dev1, _m1, _i1, drv1 = make_device(name="fn1", function_index=1, mac=MAC1.hex(":"))
    dev0.wire, dev1.wire = dev1.receive, dev0.receive
    for drv in (drv0, drv1):
        drv.probe()
        drv.mlx5e_probe()
        drv.ifup()
    yield drv0, drv1
    dev0.close()
    dev1.close()


def txsq(drv: TestDriver) -> int:
    return drv.sqs[2]


def txcq(drv: TestDriver) -> int:
    return drv.cqs[2][0]


def rxcq(drv: TestDriver) -> int:
    return drv.cqs[4][0]


# -- packet: the offload engines -----------------------------------------------------------------
def test_checksums_filled_verify_and_udp_zero_is_sent_as_ones() -> None:
    frame = bytearray(udp_frame(b"hello world!"))
    packet.fill_checksums(frame, l3=True, l4=True)
    h = packet.parse(bytes(frame))
    assert packet.ipv4_header_ok(bytes(frame), h) and packet.l4_checksum_ok(bytes(frame), h)
    frame[-1] ^= 0xFF
    assert not packet.l4_checksum_ok(bytes(frame), packet.parse(bytes(frame)))
    assert packet.csum(b"\xff\xff") == 0 and packet.ones_sum(b"\x00\x00") == 0
    assert packet.ones_sum(b"\x12\x34\x56") == 0x1234 + 0x5600


def test_tcp_segmentation_cuts_payload_and_fixes_headers() -> None:
    payload = bytes(range(256)) * 20  # 5120 bytes
    frame = tcp_frame(payload, seq=0xFFFFF000, flags=0x19)  # PSH|ACK|FIN
    segs = packet.segment_tcp(frame, 54, 1448)
    assert [len(s) - 54 for s in segs] == [1448, 1448, 1448, 776]
    assert b"".join(s[54:] for s in segs) == payload
    for i, seg in enumerate(segs):
        h = packet.parse(seg)
        assert packet.ipv4_header_ok(seg, h) and packet.l4_checksum_ok(seg, h)
        assert int.from_bytes(seg[16:18], "big") == len(seg) - 14  # IPv4 total length
        assert int.from_bytes(seg[18:20], "big") == 100 + i  # IP id per segment
        assert int.from_bytes(seg[38:42], "big") == (0xFFFFF000 + 1448 * i) & 0xFFFFFFFF
        assert bool(seg[47] & 0x09) == (i == 3)  # FIN and PSH on the last only


def test_rx_summary_and_vlan_strip() -> None:
    frame = bytearray(udp_frame(b"x" * 100))
    packet.fill_checksums(frame, True, True)
    tagged = packet.insert_vlan(bytes(frame), 0x0123)
    stripped, tci = packet.strip_vlan(tagged)
    assert stripped == bytes(frame) and tci == 0x0123
    info = packet.rx_summary(stripped)
    assert info.hds_ip_ext == L3_OK_L4_OK
    assert info.l4_l3_hdr_type == (packet.CQE_L4_UDP << 4) | (packet.CQE_L3_IPV4 << 2)
    assert info.check_sum == packet.ones_sum(stripped[14:])
    assert info.rss_hash_type == packet.RSS_IPV4 | packet.RSS_UDP
    arp = MAC1 + MAC0 + b"\x08\x06" + bytes(28)
    assert packet.rx_summary(arp).hds_ip_ext == 0 and packet.rx_summary(arp).rss_hash_type == 0


# -- transmit and receive across the cable ----------------------------------------------------
def test_send_crosses_the_cable_with_checksums_and_cqes(pair: tuple[TestDriver, TestDriver]) -> None:
    drv0, drv1 = pair
    drv1.post_recv(drv1.rq, 4)
    frame = udp_frame(b"ping across the cable")
    index = drv0.post_send(txsq(drv0), frame, cs_flags=0xC0)
    (tx,) = drv0.wait_cqes(txcq(drv0))
    assert tx[63] >> 4 == OP_REQ and int.from_bytes(tx[0x3C:0x3E], "big") == index
    assert int.from_bytes(tx[0x38:0x3C], "big") & 0xFFFFFF == txsq(drv0)
    (rx,) = drv1.wait_cqes(rxcq(drv1))
    assert rx[63] >> 4 == OP_RESP_SEND
    got = drv1.received(drv1.rq, rx)
    assert len(got) == len(frame) and got[42:] == frame[42:] and got[:24] == frame[:24]
    h = packet.parse(got)
    assert packet.ipv4_header_ok(got, h) and packet.l4_checksum_ok(got, h)
    assert rx[0x1C] == L3_OK_L4_OK
    assert int.from_bytes(rx[0x14:0x16], "big") == packet.ones_sum(got[14:])
    assert rx[0x1D] & 1 == 0  # no VLAN
    drv1.poll_eqs()
    assert rxcq(drv1) in drv1.comp_events


def test_completion_events_follow_arming(pair: tuple[TestDriver, TestDriver]) -> None:
    drv0, drv1 = pair
    drv1.post_recv(drv1.rq, 4)
    cq = drv1.dev.state.objects.cqs.get(rxcq(drv1))
    assert cq.armed  # armed at creation
    drv0.post_send(txsq(drv0), udp_frame(b"a"))
    drv1.wait_cqes(rxcq(drv1))
    assert not cq.armed
    events = drv1.dev.state.events_posted.get("0x0", 0)
    drv0.post_send(txsq(drv0), udp_frame(b"b"))
    drv1.wait_cqes(rxcq(drv1))
    assert drv1.dev.state.events_posted.get("0x0", 0) == events  # not armed: no event
    drv0.post_send(txsq(drv0), udp_frame(b"c"))
    assert drv0.dev.wait_idle() and drv1.dev.wait_idle()
    assert drv1.dev.state.objects.cqs.get(rxcq(drv1)).pi == 3
    drv1.arm_cq(rxcq(drv1))  # armed with a CQE past its consumer index: an event at once
    assert drv1.dev.wait_idle()
    assert drv1.dev.state.events_posted.get("0x0", 0) == events + 1


def test_lso_arrives_as_mss_segments(pair: tuple[TestDriver, TestDriver]) -> None:
    drv0, drv1 = pair
    drv1.post_recv(drv1.rq, 8)
    payload = bytes(i % 251 for i in range(4000))
    drv0.post_send(txsq(drv0), tcp_frame(payload), inline=54, lso_mss=1400)
    cqes = drv1.wait_cqes(rxcq(drv1), 3)
    segs = [drv1.received(drv1.rq, q) for q in cqes]
    assert [len(s) for s in segs] == [54 + 1400, 54 + 1400, 54 + 1200]
    assert b"".join(s[54:] for s in segs) == payload
    assert all(q[0x1C] == L3_OK_L4_OK for q in cqes)


def test_no_posted_buffer_counts_out_of_buffer(pair: tuple[TestDriver, TestDriver]) -> None:
    drv0, drv1 = pair
    drv0.post_send(txsq(drv0), udp_frame(b"nobody listens"))
    drv0.wait_cqes(txcq(drv0))
    assert drv0.dev.wait_idle() and drv1.dev.wait_idle()
    res = drv1.cmd(c.QUERY_Q_COUNTER_IN, {"counter_set_id": drv1.q_counters[0]}, c.QUERY_Q_COUNTER_OUT.size,
                   opcode=Op.QUERY_Q_COUNTER)
    assert c.QUERY_Q_COUNTER_OUT.get(res.out, "out_of_buffer") == 1
    assert drv1.poll_cq(rxcq(drv1)) == []


def test_frame_larger_than_the_buffer_is_a_length_error(pair: tuple[TestDriver, TestDriver]) -> None:
    drv0, drv1 = pair
    drv1.post_recv(drv1.rq, 2, size=256)
    drv0.post_send(txsq(drv0), udp_frame(b"y" * 600))
    drv0.post_send(txsq(drv0), udp_frame(b"z" * 100))
    bad, good = drv1.wait_cqes(rxcq(drv1), 2)
    assert bad[63] >> 4 == OP_RESP_ERR and bad[0x37] == 0x01
    assert good[63] >> 4 == OP_RESP_SEND and drv1.received(drv1.rq, good)[-100:] == b"z" * 100


def test_vlan_is_stripped_into_the_cqe(pair: tuple[TestDriver, TestDriver]) -> None:
    drv0, drv1 = pair
    drv1.post_recv(drv1.rq, 2)
    frame = udp_frame(b"tagged")
    drv0.post_send(txsq(drv0), frame, inline=0, vlan_tci=0x0064)  # the eth segment's VLAN insertion
    (rx,) = drv1.wait_cqes(rxcq(drv1))
    assert rx[0x1D] & 1 and int.from_bytes(rx[0x1E:0x20], "big") == 0x64
    assert drv1.received(drv1.rq, rx) == frame


def test_link_down_loses_frames_and_counters_count_traffic(pair: tuple[TestDriver, TestDriver]) -> None:
    drv0, drv1 = pair
    drv1.post_recv(drv1.rq, 8)
    for i in range(3):
        drv0.post_send(txsq(drv0), udp_frame(bytes(50 + i)))
    drv0.post_send(txsq(drv0), udp_frame(b"b" * 10, dst=b"\xff" * 6))
    drv1.wait_cqes(rxcq(drv1), 4)
    drv1.dev.set_link(False)
    drv0.post_send(txsq(drv0), udp_frame(b"lost"))
    drv0.wait_cqes(txcq(drv0), 5)  # the send completes: the frame is lost on the wire
    assert drv0.dev.wait_idle() and drv1.dev.wait_idle()
    res = drv1.cmd(c.QUERY_VPORT_COUNTER_IN, {}, c.QUERY_VPORT_COUNTER_OUT.size, opcode=Op.QUERY_VPORT_COUNTER)
    off = c.QUERY_VPORT_COUNTER_OUT.off("received_eth_unicast")
    assert int.from_bytes(res.out[off : off + 8], "big") == 3
    octets = sum(len(udp_frame(bytes(50 + i))) for i in range(3))
    assert int.from_bytes(res.out[off + 8 : off + 16], "big") == octets
    off = c.QUERY_VPORT_COUNTER_OUT.off("received_eth_broadcast")
    assert int.from_bytes(res.out[off : off + 8], "big") == 1
    ppcnt = drv0.access_reg(Reg.PPCNT, b"\x00\x01\x00\x00", 0x100).out[0x10:]
    assert int.from_bytes(ppcnt[8:16], "big") == 5  # a_frames_transmitted_ok: the lost one left fn0
    assert drv1.dev.status()["traffic"]["dropped"] == {"port down": 1}  # this fixture's wire is bare


# -- hostile WQEs ----------------------------------------------------------------------------------
def test_bad_key_gives_an_error_cqe_moves_sq_to_err_and_flushes(pair: tuple[TestDriver, TestDriver]) -> None:
    drv0, drv1 = pair
    sqn = txsq(drv0)
    drv0.post_send(sqn, udp_frame(b"bad key"), lkey=0xDEAD00)
    (err,) = drv0.wait_cqes(txcq(drv0))
    assert err[63] >> 4 == OP_REQ_ERR and err[0x37] == 0x04  # LOCAL_PROT_ERR
    res = drv0.cmd(c.QUERY_SQ_IN, {"sqn": sqn}, c.QUERY_SQ_OUT.size, opcode=Op.QUERY_SQ)
    assert c.QUERY_SQ_OUT.get(res.out, "sq_context.state") == QueueState.ERR
    drv0.post_send(sqn, udp_frame(b"flushed"))
    (flush,) = drv0.wait_cqes(txcq(drv0))
    assert flush[63] >> 4 == OP_REQ_ERR and flush[0x37] == 0x05  # WR_FLUSH_ERR
    # the driver's recovery (en/reporter_tx.c): ERR -> RST -> RDY, counters rewound
    drv0.cmd(c.MODIFY_SQ_IN, {"sqn": sqn, "sq_state": QueueState.ERR, "ctx.state": QueueState.RST},
             opcode=Op.MODIFY_SQ)
    drv0.cmd(c.MODIFY_SQ_IN, {"sqn": sqn, "sq_state": QueueState.RST, "ctx.state": QueueState.RDY},
             opcode=Op.MODIFY_SQ)
    drv0.sq_rings[sqn].pc = 0
    drv1.post_recv(drv1.rq, 1)
    drv0.post_send(sqn, udp_frame(b"after recovery"))
    (ok,) = drv0.wait_cqes(txcq(drv0))
    assert ok[63] >> 4 == OP_REQ
    assert drv1.received(drv1.rq, drv1.wait_cqes(rxcq(drv1))[0]).endswith(b"after recovery")


def test_ds_count_beyond_the_posted_segments_is_a_length_error(pair: tuple[TestDriver, TestDriver]) -> None:
    """A control segment claiming 63 data segments (16 blocks, the most a WQE may have) over a WQE that has
    one: the card reads the zeroed slots as segments and refuses the first of length 0."""
    drv0, _drv1 = pair
    drv0.post_send(txsq(drv0), udp_frame(b"x"), ds_override=63)
    (err,) = drv0.wait_cqes(txcq(drv0))
    assert err[63] >> 4 == OP_REQ_ERR and err[0x37] == 0x01


def test_doorbell_beyond_the_posted_ring_is_refused(pair: tuple[TestDriver, TestDriver]) -> None:
    drv0, _drv1 = pair
    drv0.sq_doorbell(txsq(drv0), 200)  # ring of 64: nothing was posted there
    assert drv0.dev.wait_idle()
    assert any("beyond the ring" in r["detail"] for r in drv0.dev.trace.records(kind="reject"))
    assert drv0.poll_cq(txcq(drv0)) == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(wqe=st.binary(min_size=16, max_size=256), index=st.integers(0, 0xFFFF))
def test_random_wqe_bytes_never_break_the_device(pair: tuple[TestDriver, TestDriver], wqe: bytes,
                                                 index: int) -> None:
    drv0, _drv1 = pair
    sq = drv0.sq_rings[txsq(drv0)]
    drv0.mem.write(sq.buf, wqe + bytes(-len(wqe) % 64))
    drv0.sq_doorbell(txsq(drv0), index)
    assert drv0.dev.wait_idle()
    drv0.poll_cq(txcq(drv0))
    assert drv0.ptys()  # the command path still answers

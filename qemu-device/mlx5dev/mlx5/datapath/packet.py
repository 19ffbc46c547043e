"""Ethernet frames as the card's offload engines see them: header walk, checksums, segmentation.

What the card does to a frame on its way out (``eth seg`` ``cs_flags`` and the LSO opcode) and what
it reports about a frame on its way in (the CQE's checksum and header-type fields) is computed here,
on plain ``bytes``, so the transmit and receive paths and their tests share one implementation.

Checksums are RFC 1071 ones' complement sums. A sum over a whole buffer is taken as one big-endian
integer modulo 0xFFFF (2**16 = 1 mod 0xFFFF, so the words' sum and the number agree mod 0xFFFF),
which is what makes a Python checksum of a 1500-byte frame cheap.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

ETH_HLEN = 14
VLAN_HLEN = 4
ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q, ETH_P_8021AD = 0x0800, 0x86DD, 0x8100, 0x88A8
IPPROTO_TCP, IPPROTO_UDP = 6, 17
TCP_FIN, TCP_PSH, TCP_CWR = 0x01, 0x08, 0x80


def ones_sum(data: bytes, seed: int = 0) -> int:
    """The 16-bit ones' complement sum of ``data`` (big-endian words, odd length zero-padded) plus ``seed``."""
    if len(data) % 2:
        data = data + b"\0"
    n = int.from_bytes(data, "big") + seed
    s = n % 0xFFFF
    return 0xFFFF if s == 0 and n else s


def csum(data: bytes, seed: int = 0) -> int:
    """The Internet checksum (complement of the ones' sum)."""
    return ~ones_sum(data, seed) & 0xFFFF


@dataclass(frozen=True)
class Headers:
    """Where a frame's headers are: L3 offset and ethertype after any VLAN tags, L4 offset and protocol."""

    l3: int
    ethertype: int
    vlan_tci: int | None  # the outermost 802.1Q tag's TCI, if any
    l4: int | None = None
    l4_proto: int | None = None
    l3_end: int | None = None  # end of the IP packet (total length), may be short of the frame (padding)

    @property
    def is_ipv4(self) -> bool:
        return self.ethertype == ETH_P_IP

    @property
    def is_ipv6(self) -> bool:
        return self.ethertype == ETH_P_IPV6


def parse(frame: bytes) -> Headers:
    """Walk the Ethernet, VLAN, IPv4/IPv6 headers; what does not parse is left out (never raises)."""
    if len(frame) < ETH_HLEN:
        return Headers(len(frame), 0, None)
    off, etype, tci = 12, int.from_bytes(frame[12:14], "big"), None
    while etype in (ETH_P_8021Q, ETH_P_8021AD) and len(frame) >= off + 2 + VLAN_HLEN:
        if tci is None:
            tci = int.from_bytes(frame[off + 2 : off + 4], "big")
        off += VLAN_HLEN
        etype = int.from_bytes(frame[off : off + 2], "big")
    l3 = off + 2
    if etype == ETH_P_IP and len(frame) >= l3 + 20 and frame[l3] >> 4 == 4:
        ihl = (frame[l3] & 0xF) * 4
        total = int.from_bytes(frame[l3 + 2 : l3 + 4], "big")
        frag = int.from_bytes(frame[l3 + 6 : l3 + 8], "big") & 0x3FFF  # MF or an offset: a fragment
        if ihl < 20 or len(frame) < l3 + ihl:
            return Headers(l3, etype, tci)
        end = min(len(frame), l3 + total) if total >= ihl else len(frame)
        proto = frame[l3 + 9] if not frag else None
        return Headers(l3, etype, tci, l3 + ihl, proto, end)
    if etype == ETH_P_IPV6 and len(frame) >= l3 + 40 and frame[l3] >> 4 == 6:
        payload = int.from_bytes(frame[l3 + 4 : l3 + 6], "big")
        end = min(len(frame), l3 + 40 + payload)
        return Headers(l3, etype, tci, l3 + 40, frame[l3 + 6], end)
    return Headers(l3, etype, tci)


def _pseudo(frame: bytes, h: Headers, l4_len: int) -> int:
    """The ones' sum of the IPv4 or IPv6 pseudo header of an L4 segment of ``l4_len`` bytes."""
    assert h.l4_proto is not None
    addrs = frame[h.l3 + 12 : h.l3 + 20] if h.is_ipv4 else frame[h.l3 + 8 : h.l3 + 40]
    return ones_sum(addrs, h.l4_proto + l4_len)


def _l4_csum_offset(h: Headers) -> int | None:
    if h.l4 is None:
        return None
    if h.l4_proto == IPPROTO_TCP:
        return h.l4 + 16
    if h.l4_proto == IPPROTO_UDP:
        return h.l4 + 6
    return None


def l4_checksum_ok(frame: bytes, h: Headers) -> bool:
    """Whether the TCP or UDP checksum verifies (a UDP checksum of 0 means none was sent: ok)."""
    at = _l4_csum_offset(h)
    if at is None or h.l3_end is None or at + 2 > h.l3_end:
        return False
    if h.l4_proto == IPPROTO_UDP and h.is_ipv4 and frame[at : at + 2] == b"\0\0":
        return True
    seg = frame[h.l4 : h.l3_end]
    return ones_sum(seg, _pseudo(frame, h, len(seg))) == 0xFFFF


def ipv4_header_ok(frame: bytes, h: Headers) -> bool:
    return h.is_ipv4 and h.l4 is not None and ones_sum(frame[h.l3 : h.l4]) == 0xFFFF


def fill_checksums(frame: bytearray, l3: bool, l4: bool) -> None:
    """What ``cs_flags`` L3_CSUM / L4_CSUM ask of the card: compute the IPv4 header and TCP/UDP checksums.

    The driver leaves the pseudo-header sum in the L4 field (``CHECKSUM_PARTIAL``); the card computes
    the whole checksum itself, so the field's old content does not matter.
    """
    h = parse(bytes(frame))
    if l3 and h.is_ipv4 and h.l4 is not None:
        frame[h.l3 + 10 : h.l3 + 12] = b"\0\0"
        frame[h.l3 + 10 : h.l3 + 12] = csum(bytes(frame[h.l3 : h.l4])).to_bytes(2, "big")
    at = _l4_csum_offset(h)
    if l4 and at is not None and h.l3_end is not None and at + 2 <= h.l3_end:
        frame[at : at + 2] = b"\0\0"
        seg = bytes(frame[h.l4 : h.l3_end])
        value = csum(seg, _pseudo(bytes(frame), h, len(seg)))
        if value == 0 and h.l4_proto == IPPROTO_UDP:
            value = 0xFFFF  # RFC 768: a computed 0 is sent as all ones
        frame[at : at + 2] = value.to_bytes(2, "big")


def segment_tcp(frame: bytes, header_len: int, mss: int) -> list[bytes]:
    """Large send offload: cut a TCP frame's payload into ``mss``-byte segments with their own headers.

    Each segment gets the headers of the original with its IPv4 total length and id (incremented per
    segment) or IPv6 payload length, its TCP sequence number, FIN and PSH only on the last segment, CWR
    only on the first, and fresh checksums. A frame that is not TCP, or an ``mss`` of 0, comes back whole.
    """
    h = parse(frame)
    if h.l4_proto != IPPROTO_TCP or h.l4 is None or mss <= 0 or header_len <= h.l4 or header_len > len(frame):
        return [frame]
    payload = frame[header_len:]
    if len(payload) <= mss:
        out = bytearray(frame)
        _fix_lengths(out, h, len(payload), header_len, 0)
        fill_checksums(out, True, True)
        return [bytes(out)]
    seq0 = int.from_bytes(frame[h.l4 + 4 : h.l4 + 8], "big")
    flags0 = frame[h.l4 + 13]
    segments: list[bytes] = []
    count = -(-len(payload) // mss)
    for i in range(count):
        chunk = payload[i * mss : (i + 1) * mss]
        seg = bytearray(frame[:header_len]) + chunk
        _fix_lengths(seg, h, len(chunk), header_len, i)
        seg[h.l4 + 4 : h.l4 + 8] = ((seq0 + i * mss) & 0xFFFFFFFF).to_bytes(4, "big")
        flags = flags0
        if i != count - 1:
            flags &= ~(TCP_FIN | TCP_PSH)
        if i != 0:
            flags &= ~TCP_CWR
        seg[h.l4 + 13] = flags
        fill_checksums(seg, True, True)
        segments.append(bytes(seg))
    return segments


def _fix_lengths(seg: bytearray, h: Headers, payload_len: int, header_len: int, index: int) -> None:
    if h.is_ipv4:
        seg[h.l3 + 2 : h.l3 + 4] = (header_len - h.l3 + payload_len).to_bytes(2, "big")
        ident = (int.from_bytes(seg[h.l3 + 4 : h.l3 + 6], "big") + index) & 0xFFFF
        seg[h.l3 + 4 : h.l3 + 6] = ident.to_bytes(2, "big")
    else:
        seg[h.l3 + 4 : h.l3 + 6] = (header_len - h.l3 - 40 + payload_len).to_bytes(2, "big")


# CQE header-type and hash-type codes (include/linux/mlx5/device.h: CQE_L3_HDR_TYPE_*, CQE_L4_HDR_TYPE_*,
# CQE_RSS_HTYPE_*; the l4_l3_hdr_type byte is l4 << 4 | l3 << 2 | has_vlan)
CQE_L3_NONE, CQE_L3_IPV6, CQE_L3_IPV4 = 0, 1, 2
CQE_L4_NONE, CQE_L4_TCP, CQE_L4_UDP = 0, 1, 2
CQE_L3_OK, CQE_L4_OK = 1 << 1, 1 << 2
RSS_IPV4, RSS_IPV6, RSS_TCP, RSS_UDP = 1 << 2, 2 << 2, 1 << 6, 2 << 6


@dataclass(frozen=True)
class RxSummary:
    """The CQE fields a receiving card fills from the frame itself."""

    check_sum: int  # ones' sum from the L3 header to the frame's end (en_rx.c: mlx5e_handle_csum)
    hds_ip_ext: int  # CQE_L3_OK | CQE_L4_OK when those checksums verify
    l4_l3_hdr_type: int
    rss_hash_type: int
    rss_hash: int


def rx_summary(frame: bytes) -> RxSummary:
    """What the card reports about a received frame (after VLAN stripping)."""
    h = parse(frame)
    check_sum = ones_sum(frame[h.l3 :]) if h.l3 < len(frame) else 0
    l3_type = CQE_L3_IPV4 if h.is_ipv4 and h.l4 else CQE_L3_IPV6 if h.is_ipv6 and h.l4 else CQE_L3_NONE
    l4_type = {IPPROTO_TCP: CQE_L4_TCP, IPPROTO_UDP: CQE_L4_UDP}.get(h.l4_proto or -1, CQE_L4_NONE)
    ok = 0
    if l3_type == CQE_L3_IPV6 or (l3_type == CQE_L3_IPV4 and ipv4_header_ok(frame, h)):
        ok |= CQE_L3_OK
        if l4_type != CQE_L4_NONE and l4_checksum_ok(frame, h):
            ok |= CQE_L4_OK
    hash_type, key = 0, b""
    if l3_type == CQE_L3_IPV4:
        hash_type, key = RSS_IPV4, frame[h.l3 + 12 : h.l3 + 20]
    elif l3_type == CQE_L3_IPV6:
        hash_type, key = RSS_IPV6, frame[h.l3 + 8 : h.l3 + 40]
    if hash_type and l4_type != CQE_L4_NONE and h.l4 is not None:
        hash_type |= RSS_TCP if l4_type == CQE_L4_TCP else RSS_UDP
        key += frame[h.l4 : h.l4 + 4]
    # the real card hashes with Toeplitz and the TIR's key; any hash that keeps a flow on one queue will do
    rss = zlib.crc32(key) if hash_type else 0
    return RxSummary(check_sum, ok, (l4_type << 4) | (l3_type << 2), hash_type, rss)


def strip_vlan(frame: bytes) -> tuple[bytes, int | None]:
    """Remove the outer 802.1Q tag (the RQ's VLAN stripping): the frame without it and the tag's TCI."""
    if len(frame) >= ETH_HLEN + VLAN_HLEN and int.from_bytes(frame[12:14], "big") == ETH_P_8021Q:
        return frame[:12] + frame[16:], int.from_bytes(frame[14:16], "big")
    return frame, None


def insert_vlan(frame: bytes, tci: int, tpid: int = ETH_P_8021Q) -> bytes:
    """The eth segment's VLAN insertion: a tag after the MAC addresses."""
    return frame[:12] + tpid.to_bytes(2, "big") + tci.to_bytes(2, "big") + frame[12:]


def is_multicast(frame: bytes) -> bool:
    return bool(frame[:1]) and bool(frame[0] & 1)


def is_broadcast(frame: bytes) -> bool:
    return frame[:6] == b"\xff" * 6

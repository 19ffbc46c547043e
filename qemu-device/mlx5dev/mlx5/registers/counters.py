"""Port counter and misc port registers: PPCNT (the IEEE 802.3 group counts the data path's frames,
every other group reads 0), PFCC (pause / PFC, last written value), PPLM (FEC, last written value)."""

from __future__ import annotations

from ..consts import Reg
from ..datapath.counters import TrafficCounters
from ..ifc.regs import PFCC, PPCNT, PPLM
from . import RegCtx, register
from .ptys import check_port


@register(Reg.PPCNT, PPCNT)
def ppcnt(rc: RegCtx) -> None:
    check_port(rc)
    keep = {n: rc.get(n) for n in ("local_port", "pnat", "grp", "prio_tc")}
    rc.out[:] = bytes(len(rc.out))
    for n, v in keep.items():
        rc.put(n, v)
    if keep["grp"] == IEEE_802_3_GROUP:
        base = rc.layout.off("counter_set")
        t = rc.dev.traffic
        for index, value in enumerate(_ieee_802_3(t)):
            if value:
                rc.out[base + 8 * index : base + 8 * index + 8] = (value & (1 << 64) - 1).to_bytes(8, "big")


IEEE_802_3_GROUP = 0x0  # mlx5_ifc.h MLX5_IEEE_802_3_COUNTERS_GROUP


def _ieee_802_3(t: TrafficCounters) -> list[int]:
    """The first counters of ``struct mlx5_ifc_eth_802_3_cntrs_grp_data_layout_bits``, 64 bits each, in order."""
    return [
        sum(t.tx_packets.values()),  # a_frames_transmitted_ok
        sum(t.rx_packets.values()),  # a_frames_received_ok
        0,  # a_frame_check_sequence_errors
        0,  # a_alignment_errors
        sum(t.tx_octets.values()),  # a_octets_transmitted_ok
        sum(t.rx_octets.values()),  # a_octets_received_ok
        t.tx_packets["multicast"],  # a_multicast_frames_xmitted_ok
        t.tx_packets["broadcast"],  # a_broadcast_frames_xmitted_ok
        t.rx_packets["multicast"],  # a_multicast_frames_received_ok
        t.rx_packets["broadcast"],  # a_broadcast_frames_received_ok
    ]


def _remembered(rc: RegCtx) -> None:
    """Reads return the last write (initially all zero but ``local_port``)."""
    check_port(rc)
    store = rc.dev.port.registers
    if rc.write:
        store[rc.layout.name] = bytes(rc.data)
    rc.out[:] = store.get(rc.layout.name, bytes(len(rc.out)))
    rc.put("local_port", 1)


register(Reg.PFCC, PFCC)(_remembered)
register(Reg.PPLM, PPLM)(_remembered)

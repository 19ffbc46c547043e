"""The port's traffic counters, kept by the data path and read by QUERY_VPORT_COUNTER and PPCNT.

``ethtool -S`` shows them as ``rx_vport_unicast_packets`` and the like (``en_stats.c``: the vport
counters group, from ``query_vport_counter_out``) and as the IEEE 802.3 group of PPCNT
(``a_frames_transmitted_ok``, ...). A queue's ``rx_out_of_buffer`` is its Q counter (``objects.QCounter``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .packet import is_broadcast, is_multicast

KINDS = ("unicast", "multicast", "broadcast")


def kind_of(frame: bytes) -> str:
    if is_broadcast(frame):
        return "broadcast"
    return "multicast" if is_multicast(frame) else "unicast"


@dataclass
class TrafficCounters:
    """Frames and octets per direction and destination kind, plus what the port dropped and why."""

    rx_packets: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    rx_octets: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    tx_packets: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    tx_octets: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> frames lost, sent or received
    tx_errors: int = 0

    def count_rx(self, frame: bytes) -> None:
        k = kind_of(frame)
        self.rx_packets[k] += 1
        self.rx_octets[k] += len(frame)

    def count_tx(self, frame: bytes) -> None:
        k = kind_of(frame)
        self.tx_packets[k] += 1
        self.tx_octets[k] += len(frame)

    def drop(self, reason: str) -> bool:
        """Count a dropped frame; True the first time for this reason (worth a trace record)."""
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        return self.dropped[reason] == 1

    def snapshot(self) -> dict[str, object]:
        return {
            "rx_packets": dict(self.rx_packets), "rx_octets": dict(self.rx_octets),
            "tx_packets": dict(self.tx_packets), "tx_octets": dict(self.tx_octets),
            "dropped": dict(self.dropped), "tx_errors": self.tx_errors,
        }

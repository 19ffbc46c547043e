"""Channel and ring changes on a running port: ``ethtool -L`` and ``ethtool -G``.

On an interface that is up, both reopen every channel (en_main.c: mlx5e_safe_switch_params): new CQs, SQs
and RQs are created, the RQTs are pointed at them, the old queues destroyed and every TIR refreshed; the
netdev itself stays. The path checks each value reads back and the port keeps its speed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from ..vm.machine import Machine
from . import ports
from .registry import DriverPath, PathError, arg, count_arg, fn_arg, register_path, select_functions

SWITCH_FUNCTIONS = (
    "en_main.c: mlx5e_safe_switch_params -> mlx5e_open_channels (new CQs, SQs, RQs) -> "
    "mlx5e_switch_priv_channels -> mlx5e_deactivate_priv_channels, mlx5e_close_channels (old ones), "
    "en_common.c: mlx5e_refresh_tirs, en_main.c: mlx5e_activate_priv_channels (RQTs to the new RQs)",
)
SWITCH_DEVICE = ("CREATE_CQ/SQ/RQ and MODIFY_SQ/RQ to ready for the new channels, MODIFY_RQT, "
                 "DESTROY_RQ/SQ/CQ of the old ones, MODIFY_TIR for every TIR, NOP completions")


def ethtool_sections(text: str) -> dict[str, dict[str, str]]:
    """``ethtool -l`` / ``-g`` output as {"max": {...}, "current": {...}} with keys like "Combined", "RX"."""
    out: dict[str, dict[str, str]] = {}
    section: dict[str, str] | None = None
    for line in text.splitlines():
        if line.startswith("Pre-set maximums"):
            section = out.setdefault("max", {})
        elif line.startswith("Current hardware settings"):
            section = out.setdefault("current", {})
        elif section is not None and (m := re.match(r"^([A-Za-z][A-Za-z ]*):\s+(\S+)", line)):
            section[m.group(1)] = m.group(2)
    return out


def _number(sections: dict[str, dict[str, str]], section: str, key: str, command: str) -> int:
    try:
        return int(sections[section][key])
    except (KeyError, ValueError):
        raise PathError(f"`{command}` has no {section} {key}: {sections}") from None


def _speed_ok(m: Machine, fn: int, after: str) -> None:
    ports.wait_ports(m, [fn], what=after)


@dataclass(frozen=True)
class ChannelsArgs:
    fn: str = fn_arg(what="the port(s) whose channel count changes")
    count: int = count_arg("passes over 1..max and back")


@register_path
class EthtoolChannels(DriverPath):
    name: ClassVar[str] = "ethtool-channels"
    summary: ClassVar[str] = "ethtool -L IF combined N for every N in 1..max, then back to the original"
    trigger: ClassVar[str] = "ethtool -l IF; ethtool -L IF combined N"
    device: ClassVar[str] = SWITCH_DEVICE
    kernel_functions: ClassVar[tuple[str, ...]] = (
        "net/ethtool/channels.c: ethnl_set_channels -> en_ethtool.c: mlx5e_set_channels -> "
        "mlx5e_ethtool_set_channels",
        *SWITCH_FUNCTIONS,
        "en_main.c: mlx5e_num_channels_changed (preactivate: real queue counts, XPS, RSS indirection)",
    )
    Args: ClassVar[type[ChannelsArgs]] = ChannelsArgs
    variants: ClassVar[tuple[dict[str, str], ...]] = ({"fn": "0"},)

    def perform(self, m: Machine, args: ChannelsArgs) -> None:
        for fn in select_functions(args.fn, "forward", ports.functions(m)):
            ifname = ports.port_of(m, fn).ifname
            cmd = f"ethtool -l {ifname}"
            info = ethtool_sections(ports.sh(m, cmd))
            top, original = _number(info, "max", "Combined", cmd), _number(info, "current", "Combined", cmd)
            if top < 2:
                raise PathError(f"{ifname}: at most {top} combined channel(s): nothing to change")
            for _ in range(args.count):
                for n in [*(n for n in range(1, top + 1) if n != original), original]:
                    ports.sh(m, f"ethtool -L {ifname} combined {n}")
                    now = _number(ethtool_sections(ports.sh(m, cmd)), "current", "Combined", cmd)
                    if now != n:
                        raise PathError(f"{ifname}: ethtool -L combined {n} left {now} channels")
                    _speed_ok(m, fn, f"{ifname} after ethtool -L combined {n}")


# en_ethtool.c: mlx5e_ethtool_set_ringparam refuses tx_pending below 1 << MLX5E_PARAMS_MINIMUM_LOG_SQ_SIZE
# (64; rx's minimum is lower) and rounds sizes up to a power of two (order_base_2)
MIN_RING = 64


def pow2_up(n: int) -> int:
    return 1 << (n - 1).bit_length()


def ring_sizes(spec: str) -> list[str]:
    sizes = [s.strip() for s in spec.split(",") if s.strip()]
    for s in sizes:
        if s != "max" and not (s.isdigit() and int(s) >= MIN_RING):
            raise ValueError(f"ring size {s!r}: an integer >= {MIN_RING} or max")
    if not sizes:
        raise ValueError("no ring sizes")
    return sizes


@dataclass(frozen=True)
class RingsArgs:
    fn: str = fn_arg(what="the port(s) whose ring sizes change")
    sizes: str = arg("64,512,max", "comma-separated sizes set as rx N tx N (>= 64, or max), then back to the "
                     "original sizes; clamped to each ring's maximum from ethtool -g")
    count: int = count_arg("passes over the sizes and back")

    def __post_init__(self) -> None:
        ring_sizes(self.sizes)


@register_path
class EthtoolRings(DriverPath):
    name: ClassVar[str] = "ethtool-rings"
    summary: ClassVar[str] = "ethtool -G IF rx N tx N for sizes within ethtool -g's limits, then back"
    trigger: ClassVar[str] = "ethtool -g IF; ethtool -G IF rx N tx N"
    device: ClassVar[str] = SWITCH_DEVICE
    kernel_functions: ClassVar[tuple[str, ...]] = (
        "net/ethtool/rings.c: ethnl_set_rings -> en_ethtool.c: mlx5e_set_ringparam -> "
        "mlx5e_ethtool_set_ringparam -> en/params.c: mlx5e_validate_params",
        *SWITCH_FUNCTIONS,
    )
    Args: ClassVar[type[RingsArgs]] = RingsArgs
    variants: ClassVar[tuple[dict[str, str], ...]] = ({"fn": "0"},)

    def perform(self, m: Machine, args: RingsArgs) -> None:
        for fn in select_functions(args.fn, "forward", ports.functions(m)):
            ifname = ports.port_of(m, fn).ifname
            cmd = f"ethtool -g {ifname}"
            info = ethtool_sections(ports.sh(m, cmd))
            rx_max, tx_max = _number(info, "max", "RX", cmd), _number(info, "max", "TX", cmd)
            original = (_number(info, "current", "RX", cmd), _number(info, "current", "TX", cmd))
            wanted = [(rx_max, tx_max) if s == "max" else (min(int(s), rx_max), min(int(s), tx_max))
                      for s in ring_sizes(args.sizes)]
            for _ in range(args.count):
                for rx, tx in [*wanted, original]:
                    ports.sh(m, f"ethtool -G {ifname} rx {rx} tx {tx}")
                    now = ethtool_sections(ports.sh(m, cmd))
                    got = (_number(now, "current", "RX", cmd), _number(now, "current", "TX", cmd))
                    if got != (pow2_up(rx), pow2_up(tx)):
                        raise PathError(f"{ifname}: ethtool -G rx {rx} tx {tx} left rx {got[0]} tx {got[1]}")
                    _speed_ok(m, fn, f"{ifname} after ethtool -G rx {rx} tx {tx}")

"""NIC vport commands (vport.c): context (MAC, MTU, promisc, address lists), state, counters."""

from __future__ import annotations

from ..consts import Cap, Op
from ..dispatcher import Ctx, handler
from ..errors import bad_param
from ..ifc import cmds as c
from ..ifc.caps import CMD_HCA_CAP
from ..ifc.contexts import MAC_ADDRESS_LAYOUT
from ..port import VPORT_DOWN, VPORT_UP

VC = "nic_vport_context."
ADMIN_STATE_AUTO = 2
LIST_MAX_CAP = {0: "log_max_current_uc_list", 1: "log_max_current_mc_list", 2: "log_max_vlan_list"}
ENTRY = MAC_ADDRESS_LAYOUT.size


def _own_vport(ctx: Ctx) -> None:
    if ctx.get("other_vport") and ctx.get("vport_number") != 0:
        raise bad_param(f"vport {ctx.get('vport_number')}: no eswitch, only vport 0 exists")


def _guid(mac: bytes) -> int:
    """EUI-64 style GUID derived from the MAC (system image / node / port GUID)."""
    return int.from_bytes(mac[:3] + b"\xff\xfe" + mac[3:], "big")


@handler(Op.QUERY_NIC_VPORT_CONTEXT, c.QUERY_NIC_VPORT_CONTEXT_IN, c.QUERY_NIC_VPORT_CONTEXT_OUT)
def query_nic_vport_context(ctx: Ctx) -> None:
    _own_vport(ctx)
    dev, v = ctx.dev, ctx.dev.vport
    mac = dev.port.mac
    ctx.put(VC + "permanent_address.mac_addr_47_32", int.from_bytes(mac[:2], "big"))
    ctx.put(VC + "permanent_address.mac_addr_31_0", int.from_bytes(mac[2:], "big"))
    ctx.put(VC + "mtu", v.mtu)
    ctx.put(VC + "system_image_guid", _guid(mac))
    ctx.put(VC + "node_guid", _guid(mac))
    ctx.put(VC + "port_guid", _guid(mac))
    ctx.put(VC + "promisc_uc", int(v.promisc_uc))
    ctx.put(VC + "promisc_mc", int(v.promisc_mc))
    ctx.put(VC + "promisc_all", int(v.promisc_all))
    ctx.put(VC + "disable_uc_local_lb", int(v.disable_uc_local_lb))
    ctx.put(VC + "disable_mc_local_lb", int(v.disable_mc_local_lb))
    list_type = ctx.get("allowed_list_type")
    entries = v.lists.get(list_type, [])
    off = c.QUERY_NIC_VPORT_CONTEXT_OUT.off(VC + "current_uc_mac_address")
    fit = entries[: max(0, (ctx.req.outlen - off) // ENTRY)]
    ctx.put(VC + "allowed_list_type", list_type & 7)
    ctx.put(VC + "allowed_list_size", len(fit))
    for i, entry in enumerate(fit):
        ctx.out[off + i * ENTRY : off + (i + 1) * ENTRY] = entry


@handler(Op.MODIFY_NIC_VPORT_CONTEXT, c.MODIFY_NIC_VPORT_CONTEXT_IN, c.CMD_OUT)
def modify_nic_vport_context(ctx: Ctx) -> None:
    _own_vport(ctx)
    dev, v = ctx.dev, ctx.dev.vport
    sel = "field_select."
    changed = []
    if ctx.get(sel + "addresses_list"):
        list_type, size = ctx.get(VC + "allowed_list_type"), ctx.get(VC + "allowed_list_size")
        if list_type not in LIST_MAX_CAP:
            raise bad_param(f"allowed_list_type {list_type}")
        limit = 1 << CMD_HCA_CAP.get(dev.caps_cur[Cap.GENERAL], LIST_MAX_CAP[list_type])
        off = c.MODIFY_NIC_VPORT_CONTEXT_IN.off(VC + "current_uc_mac_address")
        if size > limit or off + size * ENTRY > ctx.req.inlen:
            raise bad_param(f"address list of {size} entries (max {limit}, inlen {ctx.req.inlen:#x})")
        v.lists[list_type] = [ctx.inp[off + i * ENTRY : off + (i + 1) * ENTRY] for i in range(size)]
        changed.append(f"list{list_type}={size}")
    if ctx.get(sel + "mtu"):
        v.mtu = ctx.get(VC + "mtu")
        changed.append(f"mtu={v.mtu}")
    if ctx.get(sel + "promisc"):
        v.promisc_uc, v.promisc_mc, v.promisc_all = (
            bool(ctx.get(VC + "promisc_uc")),
            bool(ctx.get(VC + "promisc_mc")),
            bool(ctx.get(VC + "promisc_all")),
        )
        changed.append("promisc")
    if ctx.get(sel + "disable_uc_local_lb"):
        v.disable_uc_local_lb = bool(ctx.get(VC + "disable_uc_local_lb"))
    if ctx.get(sel + "disable_mc_local_lb"):
        v.disable_mc_local_lb = bool(ctx.get(VC + "disable_mc_local_lb"))
    if ctx.get(sel + "change_event"):
        v.arm_change_event = bool(ctx.get(VC + "arm_change_event"))
    if ctx.get(sel + "permanent_address"):
        hi = ctx.get(VC + "permanent_address.mac_addr_47_32")
        lo = ctx.get(VC + "permanent_address.mac_addr_31_0")
        dev.port.mac = hi.to_bytes(2, "big") + lo.to_bytes(4, "big")
        changed.append("mac")
    ctx.note(" ".join(changed))


@handler(Op.QUERY_VPORT_STATE, c.QUERY_VPORT_STATE_IN, c.QUERY_VPORT_STATE_OUT)
def query_vport_state(ctx: Ctx) -> None:
    _own_vport(ctx)
    up = ctx.dev.port.oper_up
    ctx.put("state", VPORT_UP if up else VPORT_DOWN)
    ctx.put("admin_state", ADMIN_STATE_AUTO)
    ctx.note("up" if up else "down")


@handler(Op.MODIFY_VPORT_STATE, c.MODIFY_VPORT_STATE_IN, c.CMD_OUT)
def modify_vport_state(ctx: Ctx) -> None:
    _own_vport(ctx)  # admin state of our own vport follows the port: accepted, nothing to change


@handler(Op.QUERY_VPORT_COUNTER, c.QUERY_VPORT_COUNTER_IN, c.QUERY_VPORT_COUNTER_OUT)
def query_vport_counter(ctx: Ctx) -> None:
    """The vport's traffic counters (``struct mlx5_ifc_traffic_counter_bits``: packets, then octets, 64 bits
    each), counted by the data path (``datapath/counters.py``)."""
    _own_vport(ctx)
    traffic = ctx.dev.traffic
    assert ctx.spec.out is not None
    for kind in ("unicast", "multicast", "broadcast"):
        for direction, packets, octets in (("received", traffic.rx_packets, traffic.rx_octets),
                                            ("transmitted", traffic.tx_packets, traffic.tx_octets)):
            off = ctx.spec.out.off(f"{direction}_eth_{kind}")
            ctx.out[off : off + 8] = (packets[kind] & (1 << 64) - 1).to_bytes(8, "big")
            ctx.out[off + 8 : off + 16] = (octets[kind] & (1 << 64) - 1).to_bytes(8, "big")


@handler(Op.QUERY_VNIC_ENV, c.QUERY_VNIC_ENV_IN, c.QUERY_VNIC_ENV_OUT)
def query_vnic_env(ctx: Ctx) -> None:
    _own_vport(ctx)

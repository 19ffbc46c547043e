"""L2 table entries (MPFS) and VXLAN UDP ports.

Only issued with eswitch / tunnel caps, which this model keeps at 0; kept for completeness."""

from __future__ import annotations

from ..consts import Op
from ..dispatcher import Ctx, handler
from ..ifc import cmds as c
from ..objects import Opaque


@handler(Op.SET_L2_TABLE_ENTRY, c.SET_L2_TABLE_ENTRY_IN, c.CMD_OUT)
def set_l2_table_entry(ctx: Ctx) -> None:
    index = ctx.get("table_index")
    entries = ctx.dev.objects.l2_entries
    if index in entries:
        entries.remove(index)
    entries.add(Opaque(), obj_id=index)


@handler(Op.DELETE_L2_TABLE_ENTRY, c.DELETE_L2_TABLE_ENTRY_IN, c.CMD_OUT)
def delete_l2_table_entry(ctx: Ctx) -> None:
    ctx.dev.objects.l2_entries.remove(ctx.get("table_index"))


@handler(Op.ADD_VXLAN_UDP_DPORT, c.ADD_VXLAN_UDP_DPORT_IN, c.CMD_OUT)
def add_vxlan_udp_dport(ctx: Ctx) -> None:
    port = ctx.get("vxlan_udp_port")
    if port not in ctx.dev.objects.vxlan_ports:
        ctx.dev.objects.vxlan_ports.add(Opaque(), obj_id=port)


@handler(Op.DELETE_VXLAN_UDP_DPORT, c.DELETE_VXLAN_UDP_DPORT_IN, c.CMD_OUT)
def delete_vxlan_udp_dport(ctx: Ctx) -> None:
    ctx.dev.objects.vxlan_ports.remove(ctx.get("vxlan_udp_port"))

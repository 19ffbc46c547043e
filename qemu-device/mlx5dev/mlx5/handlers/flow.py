"""Flow steering (fs_cmd.c): flow tables, groups, entries, root, counters, header contexts.

Tables, groups and entries are tracked so destroys of unknown ids fail and the trace shows leaks;
matching and actions are not modelled (no packets are steered).
Destroying a table that still has groups or entries succeeds and is noted in the trace.
"""

from __future__ import annotations

from ..consts import Cap, Op, Status
from ..dispatcher import Ctx, handler
from ..errors import CmdError, Synd, bad_param
from ..ifc import cmds as c
from ..ifc.caps import FLOW_TABLE_NIC_CAP
from ..objects import FlowGroup, FlowTable, Opaque

FT = "flow_table_context."
SET_FTE_CREATE, SET_FTE_MODIFY = 0, 1
ROOT_DISCONNECT = 1
TRAFFIC_COUNTER = 0x10


def _table(ctx: Ctx) -> tuple[int, FlowTable]:
    tid = ctx.get("table_id")
    return tid, ctx.dev.objects.flow_tables.get(tid)


@handler(Op.CREATE_FLOW_TABLE, c.CREATE_FLOW_TABLE_IN, c.CREATE_FLOW_TABLE_OUT)
def create_flow_table(ctx: Ctx) -> None:
    caps = ctx.dev.caps_cur[Cap.FLOW_TABLE]
    prefix = "flow_table_properties_nic_receive."
    log_size, level = ctx.get(FT + "log_size"), ctx.get(FT + "level")
    if log_size > FLOW_TABLE_NIC_CAP.get(caps, prefix + "log_max_ft_size"):
        raise bad_param(f"log_size {log_size} too large")
    if level > FLOW_TABLE_NIC_CAP.get(caps, prefix + "max_ft_level"):
        ctx.note(f"level {level} above max_ft_level (accepted)")  # fs_core derives levels, not FW
    tid = ctx.dev.objects.flow_tables.add(FlowTable(ctx.get("table_type"), level, log_size))
    ctx.put("table_id", tid)
    ctx.note(f"table {tid:#x} type {ctx.get('table_type')} level {level} log_size {log_size}")


@handler(Op.DESTROY_FLOW_TABLE, c.DESTROY_FLOW_TABLE_IN, c.CMD_OUT)
def destroy_flow_table(ctx: Ctx) -> None:
    objs = ctx.dev.objects
    tid, ft = _table(ctx)
    if ft.groups or ft.entries:
        ctx.note(f"table {tid:#x} destroyed with {len(ft.groups)} groups, {len(ft.entries)} entries")
        for gid in ft.groups:
            objs.flow_groups.remove(gid)
    objs.flow_tables.remove(tid)


@handler(Op.MODIFY_FLOW_TABLE, c.MODIFY_FLOW_TABLE_IN, c.CMD_OUT)
def modify_flow_table(ctx: Ctx) -> None:
    _table(ctx)


@handler(Op.QUERY_FLOW_TABLE, c.QUERY_FLOW_TABLE_IN, c.QUERY_FLOW_TABLE_OUT)
def query_flow_table(ctx: Ctx) -> None:
    _tid, ft = _table(ctx)
    ctx.put(FT + "level", ft.level)
    ctx.put(FT + "log_size", ft.log_size)


@handler(Op.SET_FLOW_TABLE_ROOT, c.SET_FLOW_TABLE_ROOT_IN, c.CMD_OUT)
def set_flow_table_root(ctx: Ctx) -> None:
    if ctx.op_mod != ROOT_DISCONNECT:
        tid, _ft = _table(ctx)
        ctx.note(f"root {tid:#x}")


@handler(Op.CREATE_FLOW_GROUP, c.CREATE_FLOW_GROUP_IN, c.CREATE_FLOW_GROUP_OUT)
def create_flow_group(ctx: Ctx) -> None:
    tid, ft = _table(ctx)
    start, end = ctx.get("start_flow_index"), ctx.get("end_flow_index")
    if start > end or end >= 1 << ft.log_size:
        raise bad_param(f"group {start}..{end} outside table of {1 << ft.log_size}")
    gid = ctx.dev.objects.flow_groups.add(FlowGroup(tid, start, end))
    ft.groups.add(gid)
    ctx.put("group_id", gid)


@handler(Op.DESTROY_FLOW_GROUP, c.DESTROY_FLOW_GROUP_IN, c.CMD_OUT)
def destroy_flow_group(ctx: Ctx) -> None:
    tid, ft = _table(ctx)
    gid = ctx.get("group_id")
    if gid not in ft.groups:
        raise CmdError(
            Status.BAD_RES, Synd.BAD_RESOURCE | Op.DESTROY_FLOW_GROUP, f"no group {gid:#x} in table {tid:#x}"
        )
    ft.groups.discard(gid)
    ctx.dev.objects.flow_groups.remove(gid)


@handler(Op.SET_FLOW_TABLE_ENTRY, c.SET_FTE_IN, c.CMD_OUT)
def set_flow_table_entry(ctx: Ctx) -> None:
    tid, ft = _table(ctx)
    index = ctx.get("flow_index")
    if index >= 1 << ft.log_size:
        raise bad_param(f"flow_index {index} outside table {tid:#x}")
    if ctx.op_mod == SET_FTE_MODIFY and index not in ft.entries:
        raise CmdError(
            Status.BAD_RES, Synd.BAD_RESOURCE | Op.SET_FLOW_TABLE_ENTRY, f"no entry {index} to modify"
        )
    ft.entries[index] = next((g for g in ft.groups if _in_group(ctx, g, index)), 0)


def _in_group(ctx: Ctx, gid: int, index: int) -> bool:
    g = ctx.dev.objects.flow_groups.get(gid)
    return g.start <= index <= g.end


@handler(Op.DELETE_FLOW_TABLE_ENTRY, c.DELETE_FTE_IN, c.CMD_OUT)
def delete_flow_table_entry(ctx: Ctx) -> None:
    tid, ft = _table(ctx)
    index = ctx.get("flow_index")
    if ft.entries.pop(index, None) is None:
        raise CmdError(
            Status.BAD_RES, Synd.BAD_RESOURCE | Op.DELETE_FLOW_TABLE_ENTRY, f"no entry {index} in {tid:#x}"
        )


@handler(Op.ALLOC_FLOW_COUNTER, c.ALLOC_FLOW_COUNTER_IN, c.ALLOC_FLOW_COUNTER_OUT)
def alloc_flow_counter(ctx: Ctx) -> None:
    ctx.put("flow_counter_id", ctx.dev.objects.flow_counters.add(Opaque()))


@handler(Op.DEALLOC_FLOW_COUNTER, c.DEALLOC_FLOW_COUNTER_IN, c.CMD_OUT)
def dealloc_flow_counter(ctx: Ctx) -> None:
    ctx.dev.objects.flow_counters.remove(ctx.get("flow_counter_id"))


@handler(Op.QUERY_FLOW_COUNTER, c.QUERY_FLOW_COUNTER_IN, c.QUERY_FLOW_COUNTER_OUT)
def query_flow_counter(ctx: Ctx) -> None:
    n = ctx.get("num_of_counters")
    if n == 0:  # single counter: it must exist; a bulk query starts at an aligned base (fs_counters.c)
        ctx.dev.objects.flow_counters.get(ctx.get("flow_counter_id"))
    n = max(1, n)
    if c.QUERY_FLOW_COUNTER_OUT.size + n * TRAFFIC_COUNTER > ctx.req.outlen:
        raise CmdError(Status.BAD_OUTP_LEN, Synd.BAD_OUTPUT_LEN | Op.QUERY_FLOW_COUNTER, f"{n} counters")
    # packets / octets stay 0: no traffic is steered


@handler(Op.ALLOC_MODIFY_HEADER_CONTEXT, c.CMD_IN, c.ALLOC_MODIFY_HEADER_CONTEXT_OUT)
def alloc_modify_header_context(ctx: Ctx) -> None:
    ctx.put("modify_header_id", ctx.dev.objects.modify_headers.add(Opaque()))


@handler(Op.DEALLOC_MODIFY_HEADER_CONTEXT, c.DEALLOC_MODIFY_HEADER_CONTEXT_IN, c.CMD_OUT)
def dealloc_modify_header_context(ctx: Ctx) -> None:
    ctx.dev.objects.modify_headers.remove(ctx.get("modify_header_id"))


@handler(Op.ALLOC_PACKET_REFORMAT_CONTEXT, c.CMD_IN, c.ALLOC_PACKET_REFORMAT_CONTEXT_OUT)
def alloc_packet_reformat_context(ctx: Ctx) -> None:
    ctx.put("packet_reformat_id", ctx.dev.objects.reformats.add(Opaque()))


@handler(Op.DEALLOC_PACKET_REFORMAT_CONTEXT, c.DEALLOC_PACKET_REFORMAT_CONTEXT_IN, c.CMD_OUT)
def dealloc_packet_reformat_context(ctx: Ctx) -> None:
    ctx.dev.objects.reformats.remove(ctx.get("packet_reformat_id"))

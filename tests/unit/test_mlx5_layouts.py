"""Layouts: a fixed set of field positions and sizes, written down from the Linux 6.1 sources.

Positions of ``mlx5_ifc`` layouts are those of ``include/linux/mlx5/mlx5_ifc.h`` (``struct
mlx5_ifc_<name>_bits``, in bits); ``mbox_in``/``mbox_out`` are declared in
``drivers/net/ethernet/mellanox/mlx5/core/cmd.c``; the hardware structures of ``hw.py`` are the C structs of
``include/linux/mlx5/device.h`` (``mlx5_cmd_layout``, ``mlx5_cmd_prot_block``, ``mlx5_eqe``, ``mlx5_cqe64``,
``mlx5_init_seg`` and its ``health_buffer``), given as byte offsets. No kernel source is needed here;
tests/host/test_mlx5_ifc.py checks every field of the ``mlx5_ifc`` layouts (``cmds``, ``contexts``,
``caps``, ``regs``) against the guest kernel's own ``mlx5_ifc.h`` and ``cmd.c``.
"""

from __future__ import annotations

import pytest

from mlx5dev.mlx5.ifc import caps, cmds, contexts, hw, regs
from mlx5dev.mlx5.layout import Layout, bits


def f(layout: Layout, name: str) -> tuple[int, int]:
    fld = layout.field(name)
    return fld.bit, fld.width


def byte_field(off: int, width: int) -> tuple[int, int]:
    return off * 8, width


# (layout, field, expected (bit, width)): mlx5_ifc.h, cmd.c and device.h of Linux 6.1, see the docstring
KNOWN = [
    (cmds.CMD_IN, "opcode", bits(0x00, 31, 16)),  # core/cmd.c mlx5_ifc_mbox_in_bits
    (cmds.CMD_IN, "op_mod", bits(0x04, 15, 0)),
    (cmds.CMD_OUT, "status", byte_field(0x00, 8)),
    (cmds.CMD_OUT, "syndrome", byte_field(0x04, 32)),
    (cmds.QUERY_ISSI_OUT, "supported_issi_dw0", byte_field(0x6C, 32)),
    (cmds.SET_ISSI_IN, "current_issi", bits(0x08, 15, 0)),
    (cmds.QUERY_PAGES_OUT, "function_id", bits(0x08, 15, 0)),
    (cmds.QUERY_PAGES_OUT, "num_pages", byte_field(0x0C, 32)),
    (cmds.MANAGE_PAGES_OUT, "output_num_entries", byte_field(0x08, 32)),
    (caps.CMD_HCA_CAP, "port_type", bits(0x34, 9, 8)),
    (caps.CMD_HCA_CAP, "num_ports", bits(0x34, 7, 0)),
    (caps.CMD_HCA_CAP, "nic_flow_table", bits(0x34, 25, 25)),
    (caps.CMD_HCA_CAP, "eth_net_offloads", bits(0x40, 3, 3)),
    (caps.CMD_HCA_CAP, "log_max_eq", bits(0x1C, 3, 0)),
    (caps.CMD_HCA_CAP, "max_wqe_sz_sq", bits(0x50, 15, 0)),
    (caps.CMD_HCA_CAP, "fast_teardown", bits(0x1C, 4, 4)),
    (caps.CMD_HCA_CAP, "force_teardown", bits(0x20, 15, 15)),
    (caps.CMD_HCA_CAP, "log_bf_reg_size", bits(0x4C, 20, 16)),
    (caps.CMD_HCA_CAP, "log_max_current_uc_list", bits(0x7C, 4, 0)),
    (caps.CMD_HCA_CAP, "vport_group_manager", bits(0x34, 31, 31)),
    (caps.CMD_HCA_CAP, "device_frequency_khz", byte_field(0x9C, 32)),
    (caps.ETH_OFFLOAD_CAPS, "csum_cap", bits(0x00, 31, 31)),
    (caps.ETH_OFFLOAD_CAPS, "max_lso_cap", bits(0x00, 20, 16)),
    (caps.ETH_OFFLOAD_CAPS, "rss_ind_tbl_cap", bits(0x00, 11, 8)),
    (caps.FLOW_TABLE_NIC_CAP, "flow_table_properties_nic_receive.ft_support", bits(0x40, 31, 31)),
    (caps.FLOW_TABLE_NIC_CAP, "flow_table_properties_nic_receive.log_max_ft_size", bits(0x44, 29, 24)),
    (caps.FLOW_TABLE_NIC_CAP, "flow_table_properties_nic_receive.max_ft_level", bits(0x44, 7, 0)),
    (contexts.EQC, "log_eq_size", bits(0x0C, 28, 24)),
    (contexts.EQC, "intr", bits(0x14, 11, 0)),
    (cmds.CREATE_EQ_IN, "eq_context_entry.log_eq_size", bits(0x1C, 28, 24)),
    (cmds.CREATE_EQ_IN, "eq_context_entry.uar_page", bits(0x1C, 23, 0)),
    (cmds.CREATE_EQ_IN, "eq_context_entry.intr", bits(0x24, 11, 0)),
    (cmds.CREATE_EQ_IN, "eq_context_entry.log_page_size", bits(0x28, 28, 24)),
    (cmds.CREATE_EQ_IN, "event_bitmask", byte_field(0x58, 256)),
    (cmds.CREATE_EQ_IN, "pas", byte_field(0x110, 0)),
    (cmds.CREATE_EQ_OUT, "eq_number", byte_field(0x0B, 8)),
    (cmds.CREATE_CQ_IN, "cq_context.c_eqn_or_apu_element", byte_field(0x24, 32)),
    (cmds.CREATE_CQ_IN, "cq_context.log_cq_size", bits(0x1C, 28, 24)),
    (cmds.CREATE_CQ_IN, "pas", byte_field(0x110, 0)),
    (cmds.CREATE_SQ_IN, "ctx.cqn", bits(0x28, 23, 0)),
    (cmds.ALLOC_UAR_OUT, "uar", bits(0x08, 23, 0)),
    (cmds.CREATE_FLOW_TABLE_OUT, "table_id", bits(0x08, 23, 0)),
    (cmds.ALLOC_Q_COUNTER_OUT, "counter_set_id", byte_field(0x0B, 8)),
    (cmds.QUERY_ADAPTER_OUT, "query_adapter_struct.vsd_contd_psid", byte_field(0x100, 128)),
    (
        cmds.QUERY_NIC_VPORT_CONTEXT_OUT,
        "nic_vport_context.permanent_address.mac_addr_47_32",
        byte_field(0x106, 16),
    ),
    (cmds.QUERY_NIC_VPORT_CONTEXT_OUT, "nic_vport_context.mtu", byte_field(0x36, 16)),
    (cmds.MODIFY_NIC_VPORT_CONTEXT_IN, "nic_vport_context.mtu", byte_field(0x126, 16)),
    (cmds.QUERY_VPORT_STATE_OUT, "state", bits(0x0C, 3, 0)),
    (cmds.QUERY_VPORT_STATE_OUT, "admin_state", bits(0x0C, 7, 4)),
    (cmds.TEARDOWN_HCA_OUT, "state", bits(0x0C, 0, 0)),
    (cmds.ACCESS_REGISTER_IN, "register_id", bits(0x08, 15, 0)),
    (cmds.ACCESS_REGISTER_IN, "register_data", byte_field(0x10, 0)),
    (regs.PTYS, "local_port", byte_field(0x01, 8)),
    (regs.PTYS, "proto_mask", bits(0x00, 2, 0)),
    (regs.PTYS, "an_status", bits(0x04, 31, 28)),
    (regs.PTYS, "data_rate_oper", bits(0x04, 15, 0)),
    (regs.PTYS, "ext_eth_proto_capability", byte_field(0x08, 32)),
    (regs.PTYS, "eth_proto_capability", byte_field(0x0C, 32)),
    (regs.PTYS, "eth_proto_admin", byte_field(0x18, 32)),
    (regs.PTYS, "eth_proto_oper", byte_field(0x24, 32)),
    (regs.PTYS, "connector_type", bits(0x2C, 3, 0)),
    (regs.PMTU, "max_mtu", bits(0x04, 31, 16)),
    (regs.PMTU, "admin_mtu", bits(0x08, 31, 16)),
    (regs.PMTU, "oper_mtu", bits(0x0C, 31, 16)),
    (regs.PFCC, "pptx", bits(0x08, 31, 31)),
    (regs.PFCC, "pprx", bits(0x0C, 31, 31)),
    (regs.DTOR, "health_poll_to", byte_field(0x14, 32)),
    (regs.DTOR, "reclaim_vfs_pages_to", byte_field(0x34, 32)),
    (hw.CMD_LAYOUT, "inlen", byte_field(0x04, 32)),
    (hw.CMD_LAYOUT, "in_ptr", byte_field(0x08, 64)),
    (hw.CMD_LAYOUT, "in", byte_field(0x10, 128)),
    (hw.CMD_LAYOUT, "out", byte_field(0x20, 128)),
    (hw.CMD_LAYOUT, "out_ptr", byte_field(0x30, 64)),
    (hw.CMD_LAYOUT, "outlen", byte_field(0x38, 32)),
    (hw.CMD_LAYOUT, "token", byte_field(0x3C, 8)),
    (hw.CMD_LAYOUT, "sig", byte_field(0x3D, 8)),
    (hw.CMD_LAYOUT, "status_own", byte_field(0x3F, 8)),
    (hw.PROT_BLOCK, "next", byte_field(0x230, 64)),
    (hw.PROT_BLOCK, "block_num", byte_field(0x238, 32)),
    (hw.PROT_BLOCK, "token", byte_field(0x23D, 8)),
    (hw.EQE, "type", byte_field(0x01, 8)),
    (hw.EQE, "sub_type", byte_field(0x03, 8)),
    (hw.EQE, "cmd_vector", byte_field(0x20, 32)),
    (hw.EQE, "port", byte_field(0x28, 8)),
    (hw.EQE, "comp_cqn", byte_field(0x38, 32)),
    (hw.EQE, "owner", byte_field(0x3F, 8)),
    (hw.CQE64, "sop_drop_qpn", byte_field(0x38, 32)),
    (hw.CQE64, "wqe_counter", byte_field(0x3C, 16)),
    (hw.CQE64, "op_own", byte_field(0x3F, 8)),
    (hw.INIT_SEG, "cmdq_addr_h", byte_field(0x10, 32)),
    (hw.INIT_SEG, "nic_interface", bits(0x14, 10, 8)),
    (hw.INIT_SEG, "log_cmdq_size", bits(0x14, 7, 4)),
    (hw.INIT_SEG, "cmd_dbell", byte_field(0x18, 32)),
    (hw.INIT_SEG, "initializing", bits(0x1FC, 31, 31)),
    (hw.INIT_SEG, "health.fw_ver", byte_field(0x230, 32)),
    (hw.INIT_SEG, "health.synd", byte_field(0x23D, 8)),
    (hw.INIT_SEG, "health.rfr", bits(0x238, 31, 31)),
    (hw.INIT_SEG, "cmd_exec_to", byte_field(0xFF8, 32)),
    (hw.INIT_SEG, "health_counter", byte_field(0x1010, 32)),
]


@pytest.mark.parametrize(("layout", "name", "want"), KNOWN, ids=[f"{lay.name}.{n}" for lay, n, _ in KNOWN])
def test_known_positions(layout: Layout, name: str, want: tuple[int, int]) -> None:
    assert f(layout, name) == want


def test_sizes() -> None:
    """sizeof(struct mlx5_cmd_layout), mlx5_cmd_prot_block, mlx5_eqe, mlx5_init_seg; query_hca_cap_out."""
    assert hw.CMD_LAYOUT.size == 64
    assert hw.PROT_BLOCK.size == 576
    assert hw.EQE.size == 64
    assert hw.INIT_SEG.size == 0x2010
    assert cmds.QUERY_HCA_CAP_OUT.size == 0x1010


def test_get_set_roundtrip() -> None:
    buf = cmds.CREATE_EQ_IN.build({"eq_context_entry.log_eq_size": 13, "eq_context_entry.intr": 0xABC})
    assert buf[0x1C] == 13  # bits 28:24 of dw 0x1c, nothing else set in that byte
    assert int.from_bytes(buf[0x24:0x28], "big") == 0xABC
    assert cmds.CREATE_EQ_IN.get(buf, "eq_context_entry.intr") == 0xABC
    with pytest.raises(ValueError):
        cmds.CREATE_EQ_IN.set(buf, "eq_context_entry.log_eq_size", 32)
    assert cmds.CREATE_EQ_IN.get(b"", "eq_context_entry.intr") == 0  # short input reads as zeros

"""The capability pages QUERY_HCA_CAP returns, and which GENERAL fields SET_HCA_CAP may change.

The values are: the required bits for an Ethernet PF that mlx5e binds to, sizes a real ConnectX-5
would report, and 0 for every feature whose presence would make the 6.1 driver issue commands this
model does not implement (eswitch, RoCE, ODP, PTP clock, PCAM/MCAM, ...).
``max`` and ``cur`` start identical and already hold what the driver's SET_HCA_CAP would write.

The requirements, in the 6.1 source (under ``drivers/net/ethernet/mellanox/mlx5/core/``):
``dev.c: mlx5_eth_supported`` creates the eth auxiliary device only with ``port_type`` ETH,
``eth_net_offloads``, ``nic_flow_table``, ``csum_cap``, ``max_lso_cap``, ``vlan_cap``, ``rss_ind_tbl_cap``
and ``max_ft_level >= 3`` (and warns without ``self_lb_en_modifiable`` or ``cq_moderation``);
``fs_core.c: init_root_tree_recursive`` skips every prio whose ``min_ft_level`` exceeds ``max_ft_level``,
and ``create_anchor_flow_table`` fails ``mlx5_load`` if the ANCHOR prio (``ANCHOR_MIN_LEVEL`` = 54) is
missing; ``en_main.c: mlx5e_attach_netdev`` returns -EIO if ``max_wqe_sz_sq / 64 < MLX5E_MAX_TX_WQEBBS``
(16); ``eq.c: mlx5_eq_table_create`` gives ``min(vectors, num_eqs - MLX5_MAX_ASYNC_EQS)`` completion EQs
(4 async EQs with ``CONFIG_INFINIBAND_ON_DEMAND_PAGING``, as in Debian's config). The SET_HCA_CAP
rewrites are ``main.c: handle_hca_cap``.
"""

from __future__ import annotations

from .config import FunctionConfig
from .consts import Cap
from .ifc.caps import CMD_HCA_CAP, ETH_OFFLOAD_CAPS, FLOW_TABLE_NIC_CAP

CAP_PAGE = 0x1000

GENERAL = {
    "port_type": 1,  # Ethernet
    "num_ports": 1,
    "nic_flow_table": 1,
    "eth_net_offloads": 1,
    "max_wqe_sz_sq": 0x400,  # >= 16 WQEBBs or mlx5e_attach_netdev fails
    "max_wqe_sz_rq": 0x400,
    "max_wqe_sz_sq_dc": 0x400,
    "log_max_qp": 18,
    "log_max_qp_sz": 15,
    "log_max_cq": 24,
    "log_max_cq_sz": 22,
    "log_max_eq_sz": 22,
    "log_max_mkey": 24,
    "log_max_mrw_sz": 64 - 1,
    "log_max_klm_list_size": 16,
    "log_max_pd": 23,
    "log_max_transport_domain": 20,
    "log_max_rq": 23,
    "log_max_sq": 23,
    "log_max_tir": 16,
    "log_max_tis": 16,
    "log_max_rqt": 16,
    "log_max_rqt_size": 16,
    "log_max_tis_per_sq": 0,
    "log_max_wq_sz": 16,
    "log_max_stride_sz_rq": 13,
    "log_min_stride_sz_rq": 6,
    "log_max_stride_sz_sq": 13,
    "log_min_stride_sz_sq": 6,
    "log_max_msg": 30,
    "log_max_current_uc_list": 4,
    "log_max_current_mc_list": 4,
    "log_max_vlan_list": 8,
    "log_max_l2_table": 10,
    "log_bf_reg_size": 9,
    "log_pg_sz": 12,
    "cqe_version": 1,
    "cq_moderation": 1,
    "cq_oi": 1,
    "basic_cyclic_rcv_wqe": 1,
    "vport_counters": 1,
    "driver_version": 1,
    "max_flow_counter_31_16": 0x100,
    "max_indirection": 0,
    "log_max_mcg": 21,
    "max_qp_mcg": 0xFC000,
    "max_tc": 0,  # 0: the driver assumes 8 traffic classes
    # stays 0 on purpose: vport_group_manager, eswitch_manager, ets, mcam_reg, pcam_reg,
    # qcam_reg, debug, fast/force_teardown (from config), roce, atomic, qos, dct, striding_rq, pg,
    # uar_4k, hca_cap_2, general_obj_types, device_frequency_khz, cqe_compression, sf, ...
    # Each makes the 6.1 driver query more capability pages or registers (fw.c: mlx5_query_hca_caps),
    # issue more SET_HCA_CAPs (main.c: handle_hca_cap_atomic, _odp, _roce, handle_hca_cap_2), or start
    # features this model does not answer: eswitch/LAG/DCB (vport_group_manager, eswitch_manager, ets,
    # qos), the PTP clock (lib/clock.c: mlx5_init_clock), SW-ICM device memory (lib/dm.c:
    # mlx5_dm_create), striding RQ (en_main.c: mlx5e_check_fragmented_striding_rq_cap), 4K UARs
    # (uar.c: uars_per_sys_page, uar2pfn), the PTYS read of slow_pci_heuristic (cqe_compression, with
    # vport_group_manager: en_main.c: mlx5e_build_nic_params), or the fast-teardown shutdown path
    # (main.c: mlx5_try_fast_unload) instead of the full unload the race needs.
}

ETHERNET = {
    "csum_cap": 1,
    "vlan_cap": 1,
    "max_lso_cap": 16,
    "rss_ind_tbl_cap": 0xB,
    "self_lb_en_modifiable": 1,
    "wqe_inline_mode": 0,  # L2 inline; 1 (vport context) would add a QUERY_NIC_VPORT_CONTEXT
}

NIC_RX = "flow_table_properties_nic_receive."
FLOW_TABLE = {
    NIC_RX + "ft_support": 1,
    NIC_RX + "flow_modify_en": 1,
    NIC_RX + "modify_root": 1,
    NIC_RX + "identified_miss_table_mode": 1,
    NIC_RX + "flow_table_modify": 1,
    NIC_RX + "log_max_ft_size": 0x17,
    NIC_RX + "max_ft_level": 0x3F,  # the ANCHOR prio needs >= 54
    NIC_RX + "log_max_ft_num": 16,
    NIC_RX + "log_max_destination": 16,
    NIC_RX + "log_max_flow": 16,
    NIC_RX + "log_max_flow_counter": 16,
}

# GENERAL fields SET_HCA_CAP is allowed to change in ``cur`` (main.c handle_hca_cap writes these)
WRITABLE_GENERAL = (
    "pkey_table_size",
    "log_max_qp",
    "cmdif_checksum",
    "log_uar_page_sz",
    "cache_line_128byte",
    "log_max_current_uc_list",
    "pci_sync_for_fw_update_event",  # set when the max has it (handle_hca_cap)
)


def build_caps(cfg: FunctionConfig) -> dict[int, bytearray]:
    """``{cap type: 4 KiB page}`` for the capability types that have content; others read as zeros."""
    general = CMD_HCA_CAP.build(GENERAL, size=CAP_PAGE)
    CMD_HCA_CAP.set(general, "log_max_eq", cfg.log_max_eq)
    CMD_HCA_CAP.set(general, "fast_teardown", int(cfg.fast_teardown))
    CMD_HCA_CAP.set(general, "force_teardown", int(cfg.force_teardown))
    # sync reset (fw_reset.c) needs the GENERAL_EVENT in the async EQ (eq.c: gather_async_events_mask)
    # and the driver's opt-in (main.c: handle_hca_cap)
    CMD_HCA_CAP.set(general, "general_notification_event", int(cfg.sync_reset))
    CMD_HCA_CAP.set(general, "pci_sync_for_fw_update_event", int(cfg.sync_reset))
    CMD_HCA_CAP.set(general, "vhca_id", cfg.function_index & 0xFFFF)
    return {
        Cap.GENERAL: general,
        Cap.ETHERNET_OFFLOADS: ETH_OFFLOAD_CAPS.build(ETHERNET, size=CAP_PAGE),
        Cap.FLOW_TABLE: FLOW_TABLE_NIC_CAP.build(FLOW_TABLE, size=CAP_PAGE),
    }

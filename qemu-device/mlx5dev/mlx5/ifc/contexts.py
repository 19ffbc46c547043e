"""Queue-object contexts embedded in commands (``mlx5_ifc.h``: eqc, cqc, wq, sqc, rqc, rqtc, ...).

Bit offsets are as in ``mlx5_ifc.h``; ``tests/unit/test_mlx5_layouts.py`` checks every row against
the header when the kernel source is available.
"""

from ..layout import Layout

EQC = Layout(
    "eqc",
    0x40,
    [
        ("status", 0x0, 0x4),
        ("ec", 0xD, 0x1),
        ("oi", 0xE, 0x1),
        ("st", 0x14, 0x4),
        ("page_offset", 0x54, 0x6),
        ("log_eq_size", 0x63, 0x5),
        ("uar_page", 0x68, 0x18),
        ("intr", 0xB4, 0xC),
        ("log_page_size", 0xC3, 0x5),
        ("consumer_counter", 0x148, 0x18),
        ("producer_counter", 0x168, 0x18),
    ],
)

CQC = Layout(
    "cqc",
    0x40,
    [
        ("status", 0x0, 0x4),
        ("cqe_sz", 0x8, 0x3),
        ("cc", 0xB, 0x1),
        ("oi", 0xE, 0x1),
        ("cq_period_mode", 0xF, 0x2),
        ("cqe_comp_en", 0x11, 0x1),
        ("st", 0x14, 0x4),
        ("page_offset", 0x54, 0x6),
        ("log_cq_size", 0x63, 0x5),
        ("uar_page", 0x68, 0x18),
        ("cq_period", 0x84, 0xC),
        ("cq_max_count", 0x90, 0x10),
        ("c_eqn_or_apu_element", 0xA0, 0x20),
        ("log_page_size", 0xC3, 0x5),
        ("last_notified_index", 0x108, 0x18),
        ("last_solicit_index", 0x128, 0x18),
        ("consumer_counter", 0x148, 0x18),
        ("producer_counter", 0x168, 0x18),
        ("dbr_addr", 0x1C0, 0x40),
    ],
)

WQ = Layout(
    "wq",
    0xC0,
    [
        ("wq_type", 0x0, 0x4),
        ("wq_signature", 0x4, 0x1),
        ("end_padding_mode", 0x5, 0x2),
        ("page_offset", 0x2B, 0x5),
        ("lwm", 0x30, 0x10),
        ("pd", 0x48, 0x18),
        ("uar_page", 0x68, 0x18),
        ("dbr_addr", 0x80, 0x40),
        ("hw_counter", 0xC0, 0x20),
        ("sw_counter", 0xE0, 0x20),
        ("log_wq_stride", 0x10C, 0x4),
        ("log_wq_pg_sz", 0x113, 0x5),
        ("log_wq_sz", 0x11B, 0x5),
        ("pas", 0x600, 0x0),
    ],
)

SQC = Layout(
    "sqc",
    0xF0,
    [
        ("rlky", 0x0, 0x1),
        ("fre", 0x2, 0x1),
        ("flush_in_error_en", 0x3, 0x1),
        ("allow_multi_pkt_send_wqe", 0x4, 0x1),
        ("min_wqe_inline_mode", 0x5, 0x3),
        ("state", 0x8, 0x4),
        ("reg_umr", 0xC, 0x1),
        ("allow_swp", 0xD, 0x1),
        ("hairpin", 0xE, 0x1),
        ("ts_format", 0x1A, 0x2),
        ("user_index", 0x28, 0x18),
        ("cqn", 0x48, 0x18),
        ("ts_cqe_to_dest_cqn", 0xC8, 0x18),
        ("packet_pacing_rate_limit_index", 0xF0, 0x10),
        ("tis_lst_sz", 0x100, 0x10),
        ("qos_queue_group_id", 0x110, 0x10),
        ("tis_num_0", 0x168, 0x18),
        ("wq", 0x180, WQ),
    ],
)

RQC = Layout(
    "rqc",
    0xF0,
    [
        ("rlky", 0x0, 0x1),
        ("delay_drop_en", 0x1, 0x1),
        ("scatter_fcs", 0x2, 0x1),
        ("vsd", 0x3, 0x1),
        ("mem_rq_type", 0x4, 0x4),
        ("state", 0x8, 0x4),
        ("flush_in_error_en", 0xD, 0x1),
        ("hairpin", 0xE, 0x1),
        ("ts_format", 0x1A, 0x2),
        ("user_index", 0x28, 0x18),
        ("cqn", 0x48, 0x18),
        ("counter_set_id", 0x60, 0x8),
        ("rmpn", 0x88, 0x18),
        ("wq", 0x180, WQ),
    ],
)

MKC = Layout(
    "mkc",
    0x40,
    [
        ("free", 0x1, 0x1),
        ("lw", 0x14, 0x1),
        ("lr", 0x15, 0x1),
        ("access_mode_1_0", 0x16, 0x2),
        ("qpn", 0x20, 0x18),
        ("mkey_7_0", 0x38, 0x8),
        ("length64", 0x60, 0x1),
        ("pd", 0x68, 0x18),
        ("start_addr", 0x80, 0x40),
        ("len", 0xC0, 0x40),
    ],
)

RQTC = Layout(
    "rqtc",
    0xF0,
    [
        ("list_q_type", 0xA5, 0x3),
        ("rqt_max_size", 0xB0, 0x10),
        ("rq_vhca_id_format", 0xC0, 0x1),
        ("rqt_actual_size", 0xD0, 0x10),
        ("rq_num", 0x780, 0x0),
    ],
)

FLOW_TABLE_CONTEXT = Layout(
    "flow_table_context",
    0x28,
    [
        ("reformat_en", 0x0, 0x1),
        ("decap_en", 0x1, 0x1),
        ("sw_owner", 0x2, 0x1),
        ("termination_table", 0x3, 0x1),
        ("table_miss_action", 0x4, 0x4),
        ("level", 0x8, 0x8),
        ("log_size", 0x18, 0x8),
        ("table_miss_id", 0x28, 0x18),
        ("lag_master_next_table_id", 0x48, 0x18),
    ],
)

MAC_ADDRESS_LAYOUT = Layout(
    "mac_address_layout",
    0x8,
    [
        ("mac_addr_47_32", 0x10, 0x10),
        ("mac_addr_31_0", 0x20, 0x20),
    ],
)

NIC_VPORT_CONTEXT = Layout(
    "nic_vport_context",
    0x100,
    [
        ("min_wqe_inline_mode", 0x5, 0x3),
        ("disable_mc_local_lb", 0x1D, 0x1),
        ("disable_uc_local_lb", 0x1E, 0x1),
        ("roce_en", 0x1F, 0x1),
        ("arm_change_event", 0x20, 0x1),
        ("event_on_mtu", 0x3B, 0x1),
        ("event_on_promisc_change", 0x3C, 0x1),
        ("event_on_vlan_change", 0x3D, 0x1),
        ("event_on_mc_address_change", 0x3E, 0x1),
        ("event_on_uc_address_change", 0x3F, 0x1),
        ("mtu", 0x130, 0x10),
        ("system_image_guid", 0x140, 0x40),
        ("port_guid", 0x180, 0x40),
        ("node_guid", 0x1C0, 0x40),
        ("promisc_uc", 0x780, 0x1),
        ("promisc_mc", 0x781, 0x1),
        ("promisc_all", 0x782, 0x1),
        ("allowed_list_type", 0x785, 0x3),
        ("allowed_list_size", 0x794, 0xC),
        ("permanent_address", 0x7A0, MAC_ADDRESS_LAYOUT),
        ("current_uc_mac_address", 0x800, 0x0),
    ],
)

QUERY_ADAPTER_PARAM_BLOCK = Layout(
    "query_adapter_param_block",
    0x100,
    [
        ("ieee_vendor_id", 0xC8, 0x18),
        ("vsd_vendor_id", 0xF0, 0x10),
        ("vsd", 0x100, 0x680),
        ("vsd_contd_psid", 0x780, 0x80),
    ],
)
MODIFY_NIC_VPORT_FIELD_SELECT = Layout(
    "modify_nic_vport_field_select",
    0x4,
    [
        ("affiliation", 0x12, 0x1),
        ("disable_uc_local_lb", 0x14, 0x1),
        ("disable_mc_local_lb", 0x15, 0x1),
        ("node_guid", 0x16, 0x1),
        ("port_guid", 0x17, 0x1),
        ("min_inline", 0x18, 0x1),
        ("mtu", 0x19, 0x1),
        ("change_event", 0x1A, 0x1),
        ("promisc", 0x1B, 0x1),
        ("permanent_address", 0x1C, 0x1),
        ("addresses_list", 0x1D, 0x1),
        ("roce_en", 0x1E, 0x1),
    ],
)

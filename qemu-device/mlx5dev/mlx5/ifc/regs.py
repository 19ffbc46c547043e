"""Access registers (ACCESS_REG register_data), ``mlx5_ifc.h`` ``*_reg`` structs."""

from ..layout import Layout

PTYS = Layout(
    "ptys_reg",
    0x40,
    [
        ("an_disable_admin", 0x1, 0x1),
        ("an_disable_cap", 0x2, 0x1),
        ("local_port", 0x8, 0x8),
        ("proto_mask", 0x1D, 0x3),
        ("an_status", 0x20, 0x4),
        ("data_rate_oper", 0x30, 0x10),
        ("ext_eth_proto_capability", 0x40, 0x20),
        ("eth_proto_capability", 0x60, 0x20),
        ("ib_link_width_capability", 0x80, 0x10),
        ("ib_proto_capability", 0x90, 0x10),
        ("ext_eth_proto_admin", 0xA0, 0x20),
        ("eth_proto_admin", 0xC0, 0x20),
        ("ib_link_width_admin", 0xE0, 0x10),
        ("ib_proto_admin", 0xF0, 0x10),
        ("ext_eth_proto_oper", 0x100, 0x20),
        ("eth_proto_oper", 0x120, 0x20),
        ("ib_link_width_oper", 0x140, 0x10),
        ("ib_proto_oper", 0x150, 0x10),
        ("connector_type", 0x17C, 0x4),
        ("eth_proto_lp_advertise", 0x180, 0x20),
    ],
)

PAOS = Layout(
    "paos_reg",
    0x10,
    [
        ("swid", 0x0, 0x8),
        ("local_port", 0x8, 0x8),
        ("admin_status", 0x14, 0x4),
        ("oper_status", 0x1C, 0x4),
        ("ase", 0x20, 0x1),
        ("ee", 0x21, 0x1),
        ("e", 0x3E, 0x2),
    ],
)

PMTU = Layout(
    "pmtu_reg",
    0x10,
    [
        ("local_port", 0x8, 0x8),
        ("max_mtu", 0x20, 0x10),
        ("admin_mtu", 0x40, 0x10),
        ("oper_mtu", 0x60, 0x10),
    ],
)

PFCC = Layout(
    "pfcc_reg",
    0x20,
    [
        ("local_port", 0x8, 0x8),
        ("ppan_mask_n", 0x1B, 0x1),
        ("minor_stall_mask", 0x1C, 0x1),
        ("critical_stall_mask", 0x1D, 0x1),
        ("ppan", 0x20, 0x4),
        ("prio_mask_tx", 0x28, 0x8),
        ("prio_mask_rx", 0x38, 0x8),
        ("pptx", 0x40, 0x1),
        ("aptx", 0x41, 0x1),
        ("pptx_mask_n", 0x42, 0x1),
        ("pfctx", 0x48, 0x8),
        ("pprx", 0x60, 0x1),
        ("aprx", 0x61, 0x1),
        ("pprx_mask_n", 0x62, 0x1),
        ("pfcrx", 0x68, 0x8),
        ("device_stall_minor_watermark", 0x80, 0x10),
        ("device_stall_critical_watermark", 0x90, 0x10),
    ],
)

PPCNT = Layout(
    "ppcnt_reg",
    0x100,
    [
        ("swid", 0x0, 0x8),
        ("local_port", 0x8, 0x8),
        ("pnat", 0x10, 0x2),
        ("grp", 0x1A, 0x6),
        ("clr", 0x20, 0x1),
        ("prio_tc", 0x3D, 0x3),
        ("counter_set", 0x40, 0x7C0),
    ],
)

PPLM = Layout(
    "pplm_reg",
    0x50,
    [
        ("local_port", 0x8, 0x8),
        ("port_profile_mode", 0x40, 0x8),
        ("static_port_profile", 0x48, 0x8),
        ("active_port_profile", 0x50, 0x8),
        ("retransmission_active", 0x60, 0x8),
        ("fec_mode_active", 0x68, 0x18),
    ],
)

PCAM = Layout(
    "pcam_reg",
    0x50,
    [
        ("feature_group", 0x8, 0x8),
        ("access_reg_group", 0x18, 0x8),
        ("port_access_reg_cap_mask", 0x40, 0x80),
        ("feature_cap_mask", 0x140, 0x80),
    ],
)

MCAM = Layout(
    "mcam_reg",
    0x48,
    [
        ("feature_group", 0x8, 0x8),
        ("access_reg_group", 0x18, 0x8),
        ("mng_access_reg_cap_mask", 0x40, 0x80),
        ("mng_feature_cap_mask", 0x140, 0x80),
    ],
)

QCAM = Layout(
    "qcam_reg",
    0x48,
    [
        ("feature_group", 0x8, 0x8),
        ("access_reg_group", 0x18, 0x8),
        ("qos_access_reg_cap_mask", 0x40, 0x80),
        ("qos_feature_cap_mask", 0x140, 0x80),
    ],
)

HOST_ENDIANNESS = Layout(
    "register_host_endianness",
    0x10,
    [
        ("he", 0x0, 0x1),
    ],
)

PMLP = Layout(
    "pmlp_reg",
    0x40,
    [
        ("rxtx", 0x0, 0x1),
        ("local_port", 0x8, 0x8),
        ("width", 0x18, 0x8),
        ("lane0_module_mapping", 0x20, 0x20),  # a struct mlx5_ifc_lane_2_module_mapping_bits: module in bits 7:0
    ],
)

MCIA = Layout(
    "mcia_reg",
    0x90,
    [
        ("l", 0x0, 0x1),
        ("module", 0x8, 0x8),
        ("status", 0x18, 0x8),
        ("i2c_device_address", 0x20, 0x8),
        ("page_number", 0x28, 0x8),
        ("device_address", 0x30, 0x10),
        ("size", 0x50, 0x10),
        ("dwords", 0x80, 0x400),
    ],
)

MFRL = Layout(
    "mfrl_reg",
    0x8,
    [
        ("pci_sync_for_fw_update_start", 0x22, 0x1),
        ("pci_sync_for_fw_update_resp", 0x23, 0x2),
        ("rst_type_sel", 0x25, 0x3),
        ("reset_state", 0x2C, 0x4),
        ("reset_type", 0x30, 0x8),
        ("reset_level", 0x38, 0x8),
    ],
)

DTOR = Layout(
    "dtor_reg",
    0x40,
    [
        ("pcie_toggle_to", 0x20, 0x20),
        ("health_poll_to", 0xA0, 0x20),
        ("full_crdump_to", 0xC0, 0x20),
        ("fw_reset_to", 0xE0, 0x20),
        ("flush_on_err_to", 0x100, 0x20),
        ("pci_sync_update_to", 0x120, 0x20),
        ("tear_down_to", 0x140, 0x20),
        ("fsm_reactivate_to", 0x160, 0x20),
        ("reclaim_pages_to", 0x180, 0x20),
        ("reclaim_vfs_pages_to", 0x1A0, 0x20),
    ],
)

DEFAULT_TIMEOUT = Layout(
    "default_timeout",
    0x4,
    [
        ("to_multiplier", 0x0, 0x3),
        ("to_value", 0xC, 0x14),
    ],
)

MTRC_CAP = Layout(
    "mtrc_cap",
    0x80,
    [
        ("trace_owner", 0x0, 0x1),
        ("trace_to_memory", 0x1, 0x1),
        ("trc_ver", 0x6, 0x2),
        ("num_string_db", 0x1C, 0x4),
        ("first_string_trace", 0x20, 0x8),
        ("num_string_trace", 0x28, 0x8),
        ("log_max_trace_buffer_size", 0x58, 0x8),
        ("string_db_param", 0x80, 0x200),
    ],
)

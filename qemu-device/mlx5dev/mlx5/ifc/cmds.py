"""Command inputs and outputs (``mlx5_ifc.h`` ``*_in`` / ``*_out``): the subset this model decodes or builds.

Every input starts with ``opcode`` (bits 0..15), ``uid`` and ``op_mod`` (bits 0x30..0x3f); every
output with ``status`` (byte 0) and ``syndrome`` (BE32 at byte 4): see :data:`CMD_IN` / :data:`CMD_OUT`.
"""

from ..layout import Layout
from .contexts import (
    CQC,
    EQC,
    FLOW_TABLE_CONTEXT,
    MKC,
    MODIFY_NIC_VPORT_FIELD_SELECT,
    NIC_VPORT_CONTEXT,
    QUERY_ADAPTER_PARAM_BLOCK,
    RQC,
    RQTC,
    SQC,
)

CMD_IN = Layout(
    "mbox_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
    ],
)

CMD_OUT = Layout(
    "mbox_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
    ],
)

ENABLE_HCA_IN = Layout(
    "enable_hca_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("embedded_cpu_function", 0x40, 0x1),
        ("function_id", 0x50, 0x10),
    ],
)

DISABLE_HCA_IN = Layout(
    "disable_hca_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("embedded_cpu_function", 0x40, 0x1),
        ("function_id", 0x50, 0x10),
    ],
)

QUERY_ISSI_OUT = Layout(
    "query_issi_out",
    0x70,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("current_issi", 0x50, 0x10),
        ("supported_issi_dw0", 0x360, 0x20),
    ],
)

SET_ISSI_IN = Layout(
    "set_issi_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("current_issi", 0x50, 0x10),
    ],
)

QUERY_PAGES_IN = Layout(
    "query_pages_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("embedded_cpu_function", 0x40, 0x1),
        ("function_id", 0x50, 0x10),
    ],
)

QUERY_PAGES_OUT = Layout(
    "query_pages_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("embedded_cpu_function", 0x40, 0x1),
        ("function_id", 0x50, 0x10),
        ("num_pages", 0x60, 0x20),
    ],
)

MANAGE_PAGES_IN = Layout(
    "manage_pages_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("embedded_cpu_function", 0x40, 0x1),
        ("function_id", 0x50, 0x10),
        ("input_num_entries", 0x60, 0x20),
        ("pas", 0x80, 0x0),
    ],
)

MANAGE_PAGES_OUT = Layout(
    "manage_pages_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("output_num_entries", 0x40, 0x20),
        ("pas", 0x80, 0x0),
    ],
)

QUERY_HCA_CAP_IN = Layout(
    "query_hca_cap_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("other_function", 0x40, 0x1),
        ("function_id", 0x50, 0x10),
    ],
)

QUERY_HCA_CAP_OUT = Layout(
    "query_hca_cap_out",
    0x1010,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("capability", 0x80, 0x8000),
    ],
)

SET_HCA_CAP_IN = Layout(
    "set_hca_cap_in",
    0x1010,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("other_function", 0x40, 0x1),
        ("function_id", 0x50, 0x10),
        ("capability", 0x80, 0x8000),
    ],
)

INIT_HCA_IN = Layout(
    "init_hca_in",
    0x20,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("sw_vhca_id", 0x62, 0xE),
        ("sw_owner_id", 0x80, 0x80),
    ],
)

TEARDOWN_HCA_IN = Layout(
    "teardown_hca_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("profile", 0x50, 0x10),
    ],
)

TEARDOWN_HCA_OUT = Layout(
    "teardown_hca_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("state", 0x7F, 0x1),
    ],
)

QUERY_ADAPTER_OUT = Layout(
    "query_adapter_out",
    0x110,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("query_adapter_struct", 0x80, QUERY_ADAPTER_PARAM_BLOCK),
    ],
)

SET_DRIVER_VERSION_IN = Layout(
    "set_driver_version_in",
    0x50,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("driver_version", 0x80, 0x200),
    ],
)

ALLOC_UAR_OUT = Layout(
    "alloc_uar_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("uar", 0x48, 0x18),
    ],
)

DEALLOC_UAR_IN = Layout(
    "dealloc_uar_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("uar", 0x48, 0x18),
    ],
)

CREATE_EQ_IN = Layout(
    "create_eq_in",
    0x110,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("eq_context_entry", 0x80, EQC),
        ("event_bitmask", 0x2C0, 0x100),
        ("pas", 0x880, 0x0),
    ],
)

CREATE_EQ_OUT = Layout(
    "create_eq_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("eq_number", 0x58, 0x8),
    ],
)

DESTROY_EQ_IN = Layout(
    "destroy_eq_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("eq_number", 0x58, 0x8),
    ],
)

QUERY_EQ_IN = Layout(
    "query_eq_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("eq_number", 0x58, 0x8),
    ],
)

QUERY_EQ_OUT = Layout(
    "query_eq_out",
    0x110,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("eq_context_entry", 0x80, EQC),
        ("event_bitmask", 0x2C0, 0x40),
        ("pas", 0x880, 0x0),
    ],
)

CREATE_CQ_IN = Layout(
    "create_cq_in",
    0x110,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("cq_context", 0x80, CQC),
        ("cq_umem_valid", 0x2E0, 0x1),
        ("pas", 0x880, 0x0),
    ],
)

CREATE_CQ_OUT = Layout(
    "create_cq_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("cqn", 0x48, 0x18),
    ],
)

DESTROY_CQ_IN = Layout(
    "destroy_cq_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("cqn", 0x48, 0x18),
    ],
)

MODIFY_CQ_IN = Layout(
    "modify_cq_in",
    0x110,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("cqn", 0x48, 0x18),
        ("modify_field_select_resize_field_select", 0x60, 0x20),
        ("cq_context", 0x80, CQC),
        ("cq_umem_valid", 0x2E0, 0x1),
        ("pas", 0x880, 0x0),
    ],
)

QUERY_CQ_IN = Layout(
    "query_cq_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("cqn", 0x48, 0x18),
    ],
)

QUERY_CQ_OUT = Layout(
    "query_cq_out",
    0x110,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("cq_context", 0x80, CQC),
        ("pas", 0x880, 0x0),
    ],
)

CREATE_SQ_IN = Layout(
    "create_sq_in",
    0x110,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("ctx", 0x100, SQC),
    ],
)

CREATE_SQ_OUT = Layout(
    "create_sq_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("sqn", 0x48, 0x18),
    ],
)

MODIFY_SQ_IN = Layout(
    "modify_sq_in",
    0x110,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("sq_state", 0x40, 0x4),
        ("sqn", 0x48, 0x18),
        ("modify_bitmask", 0x80, 0x40),
        ("ctx", 0x100, SQC),
    ],
)

DESTROY_SQ_IN = Layout(
    "destroy_sq_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("sqn", 0x48, 0x18),
    ],
)

QUERY_SQ_IN = Layout(
    "query_sq_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("sqn", 0x48, 0x18),
    ],
)

QUERY_SQ_OUT = Layout(
    "query_sq_out",
    0x110,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("sq_context", 0x100, SQC),
    ],
)

CREATE_RQ_IN = Layout(
    "create_rq_in",
    0x110,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("ctx", 0x100, RQC),
    ],
)

CREATE_RQ_OUT = Layout(
    "create_rq_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("rqn", 0x48, 0x18),
    ],
)

MODIFY_RQ_IN = Layout(
    "modify_rq_in",
    0x110,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("rq_state", 0x40, 0x4),
        ("rqn", 0x48, 0x18),
        ("modify_bitmask", 0x80, 0x40),
        ("ctx", 0x100, RQC),
    ],
)

DESTROY_RQ_IN = Layout(
    "destroy_rq_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("rqn", 0x48, 0x18),
    ],
)

QUERY_RQ_IN = Layout(
    "query_rq_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("rqn", 0x48, 0x18),
    ],
)

QUERY_RQ_OUT = Layout(
    "query_rq_out",
    0x110,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("rq_context", 0x100, RQC),
    ],
)

CREATE_TIS_IN = Layout(
    "create_tis_in",
    0xC0,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("ctx", 0x100, 0x500),
    ],
)

CREATE_TIS_OUT = Layout(
    "create_tis_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("tisn", 0x48, 0x18),
    ],
)

MODIFY_TIS_IN = Layout(
    "modify_tis_in",
    0xC0,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("tisn", 0x48, 0x18),
        ("bitmask", 0x80, 0x40),
        ("ctx", 0x100, 0x500),
    ],
)

DESTROY_TIS_IN = Layout(
    "destroy_tis_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("tisn", 0x48, 0x18),
    ],
)

CREATE_TIR_IN = Layout(
    "create_tir_in",
    0x110,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("ctx", 0x100, 0x780),
    ],
)

CREATE_TIR_OUT = Layout(
    "create_tir_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("icm_address_63_40", 0x8, 0x18),
        ("syndrome", 0x20, 0x20),
        ("icm_address_39_32", 0x40, 0x8),
        ("tirn", 0x48, 0x18),
        ("icm_address_31_0", 0x60, 0x20),
    ],
)

MODIFY_TIR_IN = Layout(
    "modify_tir_in",
    0x110,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("tirn", 0x48, 0x18),
        ("bitmask", 0x80, 0x40),
        ("ctx", 0x100, 0x780),
    ],
)

DESTROY_TIR_IN = Layout(
    "destroy_tir_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("tirn", 0x48, 0x18),
    ],
)

CREATE_RQT_IN = Layout(
    "create_rqt_in",
    0x110,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("rqt_context", 0x100, RQTC),
    ],
)

CREATE_RQT_OUT = Layout(
    "create_rqt_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("rqtn", 0x48, 0x18),
    ],
)

MODIFY_RQT_IN = Layout(
    "modify_rqt_in",
    0x110,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("rqtn", 0x48, 0x18),
        ("bitmask", 0x80, 0x40),
        ("ctx", 0x100, RQTC),
    ],
)

DESTROY_RQT_IN = Layout(
    "destroy_rqt_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("rqtn", 0x48, 0x18),
    ],
)

CREATE_FLOW_TABLE_IN = Layout(
    "create_flow_table_in",
    0x40,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("other_vport", 0x40, 0x1),
        ("vport_number", 0x50, 0x10),
        ("table_type", 0x80, 0x8),
        ("flow_table_context", 0xC0, FLOW_TABLE_CONTEXT),
    ],
)

CREATE_FLOW_TABLE_OUT = Layout(
    "create_flow_table_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("icm_address_63_40", 0x8, 0x18),
        ("syndrome", 0x20, 0x20),
        ("icm_address_39_32", 0x40, 0x8),
        ("table_id", 0x48, 0x18),
        ("icm_address_31_0", 0x60, 0x20),
    ],
)

DESTROY_FLOW_TABLE_IN = Layout(
    "destroy_flow_table_in",
    0x40,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("other_vport", 0x40, 0x1),
        ("vport_number", 0x50, 0x10),
        ("table_type", 0x80, 0x8),
        ("table_id", 0xA8, 0x18),
    ],
)

MODIFY_FLOW_TABLE_IN = Layout(
    "modify_flow_table_in",
    0x40,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("other_vport", 0x40, 0x1),
        ("vport_number", 0x50, 0x10),
        ("modify_field_select", 0x70, 0x10),
        ("table_type", 0x80, 0x8),
        ("table_id", 0xA8, 0x18),
        ("flow_table_context", 0xC0, FLOW_TABLE_CONTEXT),
    ],
)

QUERY_FLOW_TABLE_IN = Layout(
    "query_flow_table_in",
    0x40,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("table_type", 0x80, 0x8),
        ("table_id", 0xA8, 0x18),
    ],
)

QUERY_FLOW_TABLE_OUT = Layout(
    "query_flow_table_out",
    0x40,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("flow_table_context", 0xC0, FLOW_TABLE_CONTEXT),
    ],
)

SET_FLOW_TABLE_ROOT_IN = Layout(
    "set_flow_table_root_in",
    0x40,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("other_vport", 0x40, 0x1),
        ("vport_number", 0x50, 0x10),
        ("table_type", 0x80, 0x8),
        ("table_of_other_vport", 0x8F, 0x1),
        ("table_vport_number", 0x90, 0x10),
        ("table_id", 0xA8, 0x18),
        ("underlay_qpn", 0xC8, 0x18),
        ("table_eswitch_owner_vhca_id_valid", 0xE0, 0x1),
        ("table_eswitch_owner_vhca_id", 0xF0, 0x10),
    ],
)

CREATE_FLOW_GROUP_IN = Layout(
    "create_flow_group_in",
    0x400,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("other_vport", 0x40, 0x1),
        ("vport_number", 0x50, 0x10),
        ("table_type", 0x80, 0x8),
        ("group_type", 0x8C, 0x4),
        ("table_id", 0xA8, 0x18),
        ("source_eswitch_owner_vhca_id_valid", 0xC0, 0x1),
        ("start_flow_index", 0xE0, 0x20),
        ("end_flow_index", 0x120, 0x20),
        ("match_definer_id", 0x150, 0x10),
        ("match_criteria_enable", 0x1F8, 0x8),
        ("match_criteria", 0x200, 0x1000),
    ],
)

CREATE_FLOW_GROUP_OUT = Layout(
    "create_flow_group_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("group_id", 0x48, 0x18),
    ],
)

DESTROY_FLOW_GROUP_IN = Layout(
    "destroy_flow_group_in",
    0x40,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("other_vport", 0x40, 0x1),
        ("vport_number", 0x50, 0x10),
        ("table_type", 0x80, 0x8),
        ("table_id", 0xA8, 0x18),
        ("group_id", 0xC0, 0x20),
    ],
)

SET_FTE_IN = Layout(
    "set_fte_in",
    0x340,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("other_vport", 0x40, 0x1),
        ("vport_number", 0x50, 0x10),
        ("table_type", 0x80, 0x8),
        ("table_id", 0xA8, 0x18),
        ("ignore_flow_level", 0xC0, 0x1),
        ("modify_enable_mask", 0xD8, 0x8),
        ("flow_index", 0x100, 0x20),
        ("flow_context", 0x200, 0x1800),
    ],
)

DELETE_FTE_IN = Layout(
    "delete_fte_in",
    0x40,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("other_vport", 0x40, 0x1),
        ("vport_number", 0x50, 0x10),
        ("table_type", 0x80, 0x8),
        ("table_id", 0xA8, 0x18),
        ("flow_index", 0x100, 0x20),
    ],
)

ALLOC_FLOW_COUNTER_IN = Layout(
    "alloc_flow_counter_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("flow_counter_bulk_log_size", 0x73, 0x5),
        ("flow_counter_bulk", 0x78, 0x8),
    ],
)

ALLOC_FLOW_COUNTER_OUT = Layout(
    "alloc_flow_counter_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("flow_counter_id", 0x40, 0x20),
    ],
)

DEALLOC_FLOW_COUNTER_IN = Layout(
    "dealloc_flow_counter_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("flow_counter_id", 0x40, 0x20),
    ],
)

QUERY_FLOW_COUNTER_IN = Layout(
    "query_flow_counter_in",
    0x20,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("clear", 0xC0, 0x1),
        ("num_of_counters", 0xD0, 0x10),
        ("flow_counter_id", 0xE0, 0x20),
    ],
)

QUERY_FLOW_COUNTER_OUT = Layout(
    "query_flow_counter_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("flow_statistics", 0x80, 0x0),
    ],
)

ALLOC_MODIFY_HEADER_CONTEXT_OUT = Layout(
    "alloc_modify_header_context_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("modify_header_id", 0x40, 0x20),
    ],
)

DEALLOC_MODIFY_HEADER_CONTEXT_IN = Layout(
    "dealloc_modify_header_context_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("modify_header_id", 0x40, 0x20),
    ],
)

ALLOC_PACKET_REFORMAT_CONTEXT_OUT = Layout(
    "alloc_packet_reformat_context_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("packet_reformat_id", 0x40, 0x20),
    ],
)

DEALLOC_PACKET_REFORMAT_CONTEXT_IN = Layout(
    "dealloc_packet_reformat_context_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("packet_reformat_id", 0x40, 0x20),
    ],
)

QUERY_NIC_VPORT_CONTEXT_IN = Layout(
    "query_nic_vport_context_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("other_vport", 0x40, 0x1),
        ("vport_number", 0x50, 0x10),
        ("allowed_list_type", 0x65, 0x3),
    ],
)

QUERY_NIC_VPORT_CONTEXT_OUT = Layout(
    "query_nic_vport_context_out",
    0x110,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("nic_vport_context", 0x80, NIC_VPORT_CONTEXT),
    ],
)

MODIFY_NIC_VPORT_CONTEXT_IN = Layout(
    "modify_nic_vport_context_in",
    0x200,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("other_vport", 0x40, 0x1),
        ("vport_number", 0x50, 0x10),
        ("field_select", 0x60, MODIFY_NIC_VPORT_FIELD_SELECT),
        ("nic_vport_context", 0x800, NIC_VPORT_CONTEXT),
    ],
)

QUERY_VPORT_STATE_IN = Layout(
    "query_vport_state_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("other_vport", 0x40, 0x1),
        ("vport_number", 0x50, 0x10),
    ],
)

QUERY_VPORT_STATE_OUT = Layout(
    "query_vport_state_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("admin_state", 0x78, 0x4),
        ("state", 0x7C, 0x4),
    ],
)

MODIFY_VPORT_STATE_IN = Layout(
    "modify_vport_state_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("other_vport", 0x40, 0x1),
        ("vport_number", 0x50, 0x10),
        ("admin_state", 0x78, 0x4),
    ],
)

QUERY_VPORT_COUNTER_IN = Layout(
    "query_vport_counter_in",
    0x20,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("other_vport", 0x40, 0x1),
        ("port_num", 0x4C, 0x4),
        ("vport_number", 0x50, 0x10),
        ("clear", 0xC0, 0x1),
    ],
)

QUERY_VPORT_COUNTER_OUT = Layout(
    "query_vport_counter_out",
    0x210,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("received_eth_broadcast", 0x380, 0x80),
        ("transmitted_eth_broadcast", 0x400, 0x80),
        ("received_eth_unicast", 0x480, 0x80),
        ("transmitted_eth_unicast", 0x500, 0x80),
        ("received_eth_multicast", 0x580, 0x80),
        ("transmitted_eth_multicast", 0x600, 0x80),
    ],
)

QUERY_VNIC_ENV_IN = Layout(
    "query_vnic_env_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("other_vport", 0x40, 0x1),
        ("vport_number", 0x50, 0x10),
    ],
)

QUERY_VNIC_ENV_OUT = Layout(
    "query_vnic_env_out",
    0x210,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("vport_env", 0x80, 0x1000),
    ],
)

ALLOC_Q_COUNTER_OUT = Layout(
    "alloc_q_counter_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("counter_set_id", 0x58, 0x8),
    ],
)

DEALLOC_Q_COUNTER_IN = Layout(
    "dealloc_q_counter_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("counter_set_id", 0x58, 0x8),
    ],
)

QUERY_Q_COUNTER_IN = Layout(
    "query_q_counter_in",
    0x20,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("clear", 0xC0, 0x1),
        ("counter_set_id", 0xF8, 0x8),
    ],
)

QUERY_Q_COUNTER_OUT = Layout(
    "query_q_counter_out",
    0x100,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("out_of_buffer", 0x180, 0x20),
    ],
)

CREATE_MKEY_IN = Layout(
    "create_mkey_in",
    0x110,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("pg_access", 0x60, 0x1),
        ("mkey_umem_valid", 0x61, 0x1),
        ("memory_key_mkey_entry", 0x80, MKC),
        ("translations_octword_actual_size", 0x300, 0x20),
        ("klm_pas_mtt", 0x880, 0x0),
    ],
)

CREATE_MKEY_OUT = Layout(
    "create_mkey_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("mkey_index", 0x48, 0x18),
    ],
)

DESTROY_MKEY_IN = Layout(
    "destroy_mkey_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("mkey_index", 0x48, 0x18),
    ],
)

ALLOC_PD_OUT = Layout(
    "alloc_pd_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("pd", 0x48, 0x18),
    ],
)

DEALLOC_PD_IN = Layout(
    "dealloc_pd_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("pd", 0x48, 0x18),
    ],
)

ALLOC_TRANSPORT_DOMAIN_OUT = Layout(
    "alloc_transport_domain_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("transport_domain", 0x48, 0x18),
    ],
)

DEALLOC_TRANSPORT_DOMAIN_IN = Layout(
    "dealloc_transport_domain_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("uid", 0x10, 0x10),
        ("op_mod", 0x30, 0x10),
        ("transport_domain", 0x48, 0x18),
    ],
)

ACCESS_REGISTER_IN = Layout(
    "access_register_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("register_id", 0x50, 0x10),
        ("argument", 0x60, 0x20),
        ("register_data", 0x80, 0x0),
    ],
)

ACCESS_REGISTER_OUT = Layout(
    "access_register_out",
    0x10,
    [
        ("status", 0x0, 0x8),
        ("syndrome", 0x20, 0x20),
        ("register_data", 0x80, 0x0),
    ],
)

ADD_VXLAN_UDP_DPORT_IN = Layout(
    "add_vxlan_udp_dport_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("vxlan_udp_port", 0x70, 0x10),
    ],
)

DELETE_VXLAN_UDP_DPORT_IN = Layout(
    "delete_vxlan_udp_dport_in",
    0x10,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("vxlan_udp_port", 0x70, 0x10),
    ],
)

SET_L2_TABLE_ENTRY_IN = Layout(
    "set_l2_table_entry_in",
    0x40,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("table_index", 0xA8, 0x18),
        ("vlan_valid", 0xF3, 0x1),
        ("vlan", 0xF4, 0xC),
        ("mac_address", 0x100, 0x40),
    ],
)

DELETE_L2_TABLE_ENTRY_IN = Layout(
    "delete_l2_table_entry_in",
    0x40,
    [
        ("opcode", 0x0, 0x10),
        ("op_mod", 0x30, 0x10),
        ("table_index", 0xA8, 0x18),
    ],
)

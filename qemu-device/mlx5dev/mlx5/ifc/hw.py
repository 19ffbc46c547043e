"""Hardware structures declared in C rather than in ``mlx5_ifc`` bit units (``include/linux/mlx5/device.h``).

Offsets are still given in bits (byte * 8) so they use the same :class:`Layout` machinery:
the init segment, the 64-byte command queue entry, the 576-byte mailbox block, the EQE and the CQE.
"""

from ..layout import Layout

HEALTH_BUFFER = Layout(
    "health_buffer",
    0x40,
    [  # device.h:532 struct health_buffer
        ("assert_var0", 0x00 * 8, 32),
        ("assert_exit_ptr", 0x20 * 8, 32),
        ("assert_callra", 0x24 * 8, 32),
        ("time", 0x2C * 8, 32),
        ("fw_ver", 0x30 * 8, 32),
        ("hw_id", 0x34 * 8, 32),
        ("rfr", 0x38 * 8, 1),  # rfr_severity bit 7
        ("severity_valid", 0x38 * 8 + 4, 1),  # rfr_severity bit 3
        ("severity", 0x38 * 8 + 5, 3),  # rfr_severity bits 2:0
        ("irisc_index", 0x3C * 8, 8),
        ("synd", 0x3D * 8, 8),
        ("ext_synd", 0x3E * 8, 16),
    ],
)

INIT_SEG = Layout(
    "mlx5_init_seg",
    0x2010,
    [  # device.h:556 struct mlx5_init_seg
        ("fw_rev", 0x000 * 8, 32),  # minor << 16 | major
        ("cmdif_rev", 0x004 * 8, 16),
        ("fw_rev_sub", 0x004 * 8 + 16, 16),
        ("cmdq_addr_h", 0x010 * 8, 32),
        ("cmdq_addr_l", 0x014 * 8, 20),  # address bits 31:12
        ("nic_interface", 0x014 * 8 + 21, 3),  # bits 10:8
        ("log_cmdq_size", 0x014 * 8 + 24, 4),  # bits 7:4
        ("log_cmdq_stride", 0x014 * 8 + 28, 4),  # bits 3:0
        ("cmd_dbell", 0x018 * 8, 32),
        ("initializing", 0x1FC * 8, 1),  # bit 31
        ("fw_reset_supported", 0x1FC * 8 + 1, 1),  # bit 30
        ("health", 0x200 * 8, HEALTH_BUFFER),
        ("cmd_exec_to", 0xFF8 * 8, 32),
        ("cmd_q_init_to", 0xFFC * 8, 32),
        ("internal_timer_h", 0x1000 * 8, 32),
        ("internal_timer_l", 0x1004 * 8, 32),
        ("health_counter", 0x1010 * 8, 32),
        ("real_time_h", 0x1040 * 8, 32),
        ("real_time_l", 0x1044 * 8, 32),
        ("ieee1588_clk", 0x2000 * 8, 64),
        ("ieee1588_clk_type", 0x2008 * 8, 32),
        ("clr_intx", 0x200C * 8, 32),
    ],
)

CMD_LAYOUT = Layout(
    "mlx5_cmd_layout",
    0x40,
    [  # device.h:513 struct mlx5_cmd_layout
        ("type", 0x00 * 8, 8),
        ("inlen", 0x04 * 8, 32),
        ("in_ptr", 0x08 * 8, 64),
        ("in", 0x10 * 8, 128),
        ("out", 0x20 * 8, 128),
        ("out_ptr", 0x30 * 8, 64),
        ("outlen", 0x38 * 8, 32),
        ("token", 0x3C * 8, 8),
        ("sig", 0x3D * 8, 8),
        ("status_own", 0x3F * 8, 8),  # delivery status << 1 | ownership (1 = HW)
    ],
)

PROT_BLOCK = Layout(
    "mlx5_cmd_prot_block",
    0x240,
    [  # device.h:762 struct mlx5_cmd_prot_block
        ("data", 0x000 * 8, 512 * 8),
        ("next", 0x230 * 8, 64),
        ("block_num", 0x238 * 8, 32),
        ("token", 0x23D * 8, 8),
        ("ctrl_sig", 0x23E * 8, 8),
        ("sig", 0x23F * 8, 8),
    ],
)

EQE = Layout(
    "mlx5_eqe",
    0x40,
    [  # device.h:750 struct mlx5_eqe
        ("type", 0x01 * 8, 8),
        ("sub_type", 0x03 * 8, 8),
        ("data", 0x20 * 8, 0x1C * 8),
        ("cmd_vector", 0x20 * 8, 32),  # data.cmd.vector: completed slot bitmask
        ("page_ec_function", 0x20 * 8, 16),  # data.req_pages
        ("page_func_id", 0x22 * 8, 16),
        ("page_num_pages", 0x24 * 8, 32),
        ("port", 0x28 * 8, 8),  # data.port.port: port number << 4
        ("comp_cqn", 0x38 * 8, 32),  # data.comp.cqn (low 24 bits)
        ("signature", 0x3E * 8, 8),
        ("owner", 0x3F * 8, 8),
    ],
)

CQE64 = Layout(
    "mlx5_cqe64",
    0x40,
    [  # device.h struct mlx5_cqe64
        ("wqe_id", 0x02 * 8, 16),
        ("byte_cnt", 0x2C * 8, 32),
        ("timestamp_h", 0x30 * 8, 32),
        ("timestamp_l", 0x34 * 8, 32),
        ("sop_drop_qpn", 0x38 * 8, 32),
        ("wqe_counter", 0x3C * 8, 16),
        ("signature", 0x3E * 8, 8),
        ("op_own", 0x3F * 8, 8),  # opcode << 4 | ... | owner (bit 0)
    ],
)

WQE_CTRL = Layout(
    "mlx5_wqe_ctrl_seg",
    0x10,
    [  # qp.h struct mlx5_wqe_ctrl_seg; first 8 bytes = doorbell
        ("opmod", 0x00 * 8, 8),
        ("wqe_index", 0x01 * 8, 16),
        ("opcode", 0x03 * 8, 8),
        ("qpn", 0x04 * 8, 24),
        ("ds", 0x07 * 8, 8),
        ("fm_ce_se", 0x0B * 8, 8),
    ],
)

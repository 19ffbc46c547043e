"""Init segment registers, the JSON-lines command trace and its reader, the speed/link model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlx5dev.mlx5 import CommandTrace, FunctionConfig, read_trace
from mlx5dev.mlx5.consts import Op, Status
from mlx5dev.mlx5.port import Port
from mlx5dev.mlx5.registers.timeouts import encode_timeout

from .mlx5_testdriver import make_device


def test_init_segment_registers() -> None:
    dev, _mem, _irq, drv = make_device(fw_version=(16, 35, 2010))
    try:
        assert drv.rd32(0x00) == (35 << 16) | 16  # fw_rev: minor << 16 | major
        assert drv.rd32(0x04) == (5 << 16) | 2010  # cmdif_rev 5, fw_rev_sub
        assert drv.rd32(0x14) == 0x56  # log_sz 5, log_stride 6, nic_interface 0, no address yet
        assert drv.rd32(0x1FC) == 1 << 30  # not initializing (bit 31); FW reset supported (bit 30)
        assert drv.rd32(0xFF8) == 0 and drv.rd32(0xFFC) == 0  # driver keeps its own timeouts
        drv.wr32(0x10, 0x1)
        drv.wr32(0x14, 0x2345_6000)
        assert drv.rd32(0x10) == 1 and drv.rd32(0x14) == 0x2345_6056
        assert dev.iseg.cmdq_addr == 0x1_2345_6000
        counter = [drv.rd32(0x1010) for _ in range(3)]
        assert counter[1] == counter[0] + 1 and counter[2] == counter[1] + 1  # ticks on every read
        assert dev.mmio_read(0x16, 2) == (0x6056).to_bytes(2, "big")  # sub-dword reads
        assert drv.rd32(0x230) == drv.rd32(0x00)  # health.fw_ver is not the "PCI dead" 0xffffffff
    finally:
        dev.close()


def test_cmd_timeout_knob_makes_the_driver_read_dtor() -> None:
    dev, _mem, _irq, drv = make_device(cmd_timeout_ms=600_000)
    try:
        assert drv.rd32(0xFF8) == encode_timeout(600_000) == 600_000  # unit 0 (ms), value 600000
        assert encode_timeout(7_200_000) == (1 << 29) | 7200  # too many ms for 20 bits: seconds
        assert drv.rd32(0xFFC) != 0
        drv.probe()
        dtor = drv.access_reg(0xC00E, b"", 0x40).out[0x10:]
        assert all(int.from_bytes(dtor[o : o + 4], "big") for o in range(0x14, 0x38, 4))
    finally:
        dev.close()


def test_trace_file_and_reader(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    dev, _mem, _irq, drv = make_device(name="fn7", trace=CommandTrace(path))
    try:
        drv.probe()
        drv.cmd(None, {}, 0x10, opcode=0x7FF, check=False)
        drv.wr32(0x18, 1 << 9)  # idle slot
        drv.ptys()
        assert dev.wait_idle()
    finally:
        dev.close()
        dev.trace.close()
    lines = path.read_text().splitlines()
    assert all(json.loads(line) for line in lines)
    cmds = read_trace(path, function="fn7")
    assert cmds[0]["op"] == "ENABLE_HCA" and cmds[0]["status"] == 0
    for key in (
        "slot",
        "opcode",
        "op_mod",
        "status",
        "syndrome",
        "delivery",
        "t_doorbell_ns",
        "t_done_ns",
        "eqe",
    ):
        assert key in cmds[0]
    bad = read_trace(path, status="BAD_OP")
    assert [r["opcode"] for r in bad] == [0x7FF] and bad[0]["syndrome"] == 0xE50107FF
    ptys = read_trace(path, opcode="ACCESS_REG")
    assert ptys[-1]["reg"] == "PTYS" and ptys[-1]["reg_id"] == 0x5004
    assert read_trace(path, opcode=Op.CREATE_EQ, status=Status.OK)
    assert read_trace(path, function="other") == []
    assert any(r["kind"] == "reject" and "idle slot 9" in r["detail"] for r in read_trace(path))
    with path.open("a") as f:
        f.write('{"torn": ')  # a crash mid-line: skipped
    assert len(read_trace(path)) == len(lines)


def test_port_speed_encoding() -> None:
    port = Port(b"\x02" * 6, 100000, True)
    assert port.ptys().eth_proto_oper == 1 << 20
    port.set_speed(400000)
    view = port.ptys()
    assert view.eth_proto_oper == 0 and view.ext_eth_proto_oper == 1 << 16 and view.ext_eth_proto_capability
    port.set_link(False)
    assert port.ptys().ext_eth_proto_oper == 0 and port.ptys().data_rate_oper == 0
    with pytest.raises(ValueError):
        port.set_speed(12345)
    with pytest.raises(ValueError):
        FunctionConfig(mac="01:00:5e:00:00:01")  # multicast


def test_config_sizes_eq_capability_from_vectors() -> None:
    assert FunctionConfig(num_msix=16).log_max_eq == 5  # 16 + 4 async <= 32
    assert FunctionConfig(num_msix=2).log_max_eq == 4
    assert FunctionConfig(num_msix=300).log_max_eq == 8  # eq_number is 8 bits

"""The happy paths the real driver takes: probe, mlx5e probe, ifup (NOP -> CQE -> COMP EQE), speed
reads through PTYS, link / speed changes as PORT_CHANGE events, and the teardown paths."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mlx5dev.mlx5 import Mlx5Function
from mlx5dev.mlx5.consts import Event, Op, PortChange, Reg
from mlx5dev.mlx5.ifc import cmds as c
from mlx5dev.mlx5.ifc.hw import CQE64
from mlx5dev.mlx5.port import LEGACY_MASK

from .mlx5_testdriver import PAGE, TestDriver, make_device


@pytest.fixture
def env() -> Iterator[tuple[Mlx5Function, TestDriver]]:
    dev, _mem, _irq, drv = make_device()
    yield dev, drv
    dev.close()


def up(drv: TestDriver) -> None:
    drv.probe()
    drv.mlx5e_probe()
    drv.ifup()


def test_probe_switches_to_events_mode(env: tuple[Mlx5Function, TestDriver]) -> None:
    dev, drv = env
    drv.probe()
    st = dev.status()
    assert st["state"] == "initialized" and st["mode"] == "events"
    assert st["objects"]["eqs"] == 5 and st["objects"]["uars"] == 1 and st["objects"]["flow_tables"] == 1
    assert st["pending_slots"] == []
    # the commands before and including the cmd EQ's CREATE_EQ were polled: no CMD EQE for them
    cmds = dev.trace.records(kind="cmd")
    first_eq = next(i for i, r in enumerate(cmds) if r["opcode"] == Op.CREATE_EQ)
    assert not any(r["eqe"] for r in cmds[: first_eq + 1])
    assert all(r["eqe"] for r in cmds[first_eq + 1 :])


def test_caps_required_by_the_driver(env: tuple[Mlx5Function, TestDriver]) -> None:
    _dev, drv = env
    drv.probe()
    from mlx5dev.mlx5.consts import Cap
    from mlx5dev.mlx5.ifc.caps import CMD_HCA_CAP, ETH_OFFLOAD_CAPS, FLOW_TABLE_NIC_CAP

    gen, eth, ft = drv.caps[Cap.GENERAL], drv.caps[Cap.ETHERNET_OFFLOADS], drv.caps[Cap.FLOW_TABLE]
    assert CMD_HCA_CAP.get(gen, "port_type") == 1 and CMD_HCA_CAP.get(gen, "nic_flow_table") == 1
    assert 1 << CMD_HCA_CAP.get(gen, "log_max_eq") >= 16 + 4
    assert CMD_HCA_CAP.get(gen, "max_wqe_sz_sq") // 64 >= 16
    # ConnectX-5-like: shutdown takes main.c: mlx5_try_fast_unload; sync reset is offered
    assert CMD_HCA_CAP.get(gen, "fast_teardown") == 1 and CMD_HCA_CAP.get(gen, "force_teardown") == 1
    assert CMD_HCA_CAP.get(gen, "general_notification_event") == 1
    assert CMD_HCA_CAP.get(gen, "pci_sync_for_fw_update_event") == 1
    for name in ("csum_cap", "vlan_cap", "max_lso_cap", "rss_ind_tbl_cap"):
        assert ETH_OFFLOAD_CAPS.get(eth, name)
    assert FLOW_TABLE_NIC_CAP.get(ft, "flow_table_properties_nic_receive.max_ft_level") >= 54


def test_mlx5e_probe_objects_and_mtu(env: tuple[Mlx5Function, TestDriver]) -> None:
    dev, drv = env
    drv.probe()
    drv.mlx5e_probe()
    assert drv.mac == dev.config.mac_bytes
    assert drv.max_mtu == 9978 and drv.hw_mtu == 1522
    counts = dev.status()["objects"]
    assert counts["tises"] == 8 and counts["q_counters"] == 2 and counts["pds"] == 1 and counts["tds"] == 1
    assert counts["mkeys"] == 1 and counts["rqts"] == 2 and counts["tirs"] == 11
    rss = dev.trace.records(op="CREATE_RQT")[0]
    assert rss["inlen"] == 0x110 + 4 * 256  # a 3-block input chain


def test_ifup_nop_completes_through_cq_and_eq(env: tuple[Mlx5Function, TestDriver]) -> None:
    dev, drv = env
    up(drv)
    cqe = drv.nop(1)  # the first NOP (pc 0) already went out in ifup()
    assert CQE64.get(cqe, "wqe_counter") == 1
    assert CQE64.get(cqe, "sop_drop_qpn") == drv.sqs[0]
    assert CQE64.get(cqe, "op_own") == 0x00  # opcode REQ, owner 0 on the first lap
    assert drv.comp_events == [drv.cqs[0][0]] * 2
    assert drv.irq.fired.count(drv.comp_eqs[0].intr) >= 2


def test_cqe_owner_flips_on_the_second_lap(env: tuple[Mlx5Function, TestDriver]) -> None:
    dev, drv = env
    up(drv)
    cqn, _buf, dbr = drv.cqs[0]
    for pc in range(1, 64 + 2):
        drv.mem.write(dbr, (pc - 1).to_bytes(4, "big"))  # consumer index, as mlx5_cqwq_update_db_record
        cqe = drv.nop(pc)
        assert CQE64.get(cqe, "op_own") & 1 == (pc >> 6) & 1


def test_full_cq_is_not_overwritten(env: tuple[Mlx5Function, TestDriver]) -> None:
    dev, drv = env
    up(drv)  # the NOP of ifup was consumed: the consumer index stays at 1 from here on
    for _ in range(65):
        drv.post_nop(drv.sqs[0])
        assert dev.wait_idle()
    assert any("full" in r.get("detail", "") for r in dev.trace.records(kind="reject"))
    assert dev.state.objects.cqs.get(drv.cqs[0][0]).posted == 1 + 64


def test_ptys_reports_configured_speed() -> None:
    for mbps, field, bit in (
        (100000, "eth_proto_oper", 20),
        (25000, "eth_proto_oper", 27),
        (40000, "eth_proto_oper", 6),
        (200000, "ext_eth_proto_oper", 12),
    ):
        dev, _m, _i, drv = make_device(speed_mbps=mbps)
        try:
            drv.probe()
            reg = drv.ptys()
            from mlx5dev.mlx5.ifc.regs import PTYS

            assert PTYS.get(reg, field) == 1 << bit
            assert PTYS.get(reg, "data_rate_oper") == mbps // 100
            if field == "eth_proto_oper":
                assert PTYS.get(reg, "eth_proto_capability") == LEGACY_MASK
                assert PTYS.get(reg, "ext_eth_proto_capability") == 0
            else:
                assert PTYS.get(reg, "eth_proto_capability") == 0
        finally:
            dev.close()


def test_ptys_raw_offsets_and_odd_speed() -> None:
    dev, _m, _i, drv = make_device(speed_mbps=12300)
    try:
        drv.probe()
        reg = drv.ptys()
        assert reg[1] == 1 and reg[3] & 7 == 4
        assert int.from_bytes(reg[0x24:0x28], "big") == 0  # no link mode: the driver uses data_rate_oper
        assert int.from_bytes(reg[0x06:0x08], "big") == 123
    finally:
        dev.close()


def test_set_speed_and_set_link_post_port_change_events(env: tuple[Mlx5Function, TestDriver]) -> None:
    dev, drv = env
    up(drv)  # PAOS down at init, up at open: DOWN then ACTIVE already
    assert drv.port_events == [PortChange.DOWN, PortChange.ACTIVE]
    dev.set_speed(25000)
    dev.set_link(False)
    dev.set_link(False)  # no change, no event
    dev.set_link(True)
    assert dev.wait_idle()
    drv.poll_eqs()
    assert drv.port_events[2:] == [PortChange.ACTIVE, PortChange.DOWN, PortChange.ACTIVE]
    port_eqes = [e for eq in drv.eqs.values() for e in eq.eqes if e[1] == Event.PORT_CHANGE]
    assert all(e[0x28] == 1 << 4 for e in port_eqes)  # data.port.port = port << 4
    from mlx5dev.mlx5.ifc.regs import PTYS

    assert PTYS.get(drv.ptys(), "eth_proto_oper") == 1 << 27
    assert drv.cmd(c.QUERY_VPORT_STATE_IN, {}, 0x10, opcode=Op.QUERY_VPORT_STATE).out[0x0F] & 0xF == 1


def test_link_down_vport_state_and_speed() -> None:
    dev, _m, _i, drv = make_device(link_up=False)
    try:
        drv.probe()
        assert drv.cmd(c.QUERY_VPORT_STATE_IN, {}, 0x10, opcode=Op.QUERY_VPORT_STATE).out[0x0F] & 0xF == 0
        from mlx5dev.mlx5.ifc.regs import PTYS

        assert PTYS.get(drv.ptys(), "eth_proto_oper") == 0
        dev.set_speed(10000)  # posts the current state (DOWN) when EQs exist
        assert dev.wait_idle()
        drv.poll_eqs()
        assert drv.port_events == [PortChange.DOWN]
    finally:
        dev.close()


def test_events_mode_contract_with_concurrent_slots(env: tuple[Mlx5Function, TestDriver]) -> None:
    """Many slots in flight: every CMD EQE names pending slots only, once each (TestDriver checks)."""
    dev, drv = env
    drv.probe()
    dev.add_fault(Op.QUERY_VPORT_STATE, delay_ms=30, count=1)
    for slot in range(8):
        inp = c.QUERY_VPORT_STATE_IN.build() if slot == 0 else c.CMD_IN.build()
        c.CMD_IN.set(inp, "opcode", Op.QUERY_VPORT_STATE if slot == 0 else Op.ALLOC_PD)
        drv.post(bytes(inp), 0x10, slot)
    results = {slot: drv.wait(slot, 0x10) for slot in range(1, 8)}
    assert 0 in drv.pending  # the delayed one is still running while the others completed
    results[0] = drv.wait(0, 0x10)
    assert all(r.status == 0 and r.delivery == 0 for r in results.values())
    cmd_eqes = [e for e in drv.cmd_eq.eqes if e[1] == Event.CMD]
    assert sorted(int.from_bytes(e[0x20:0x24], "big") for e in cmd_eqes[-8:]) == sorted(
        1 << s for s in range(8)
    )
    assert dev.status()["pending_slots"] == []


def test_manage_pages_uses_the_page_slot_and_takes_back_given_pages(
    env: tuple[Mlx5Function, TestDriver],
) -> None:
    dev, drv = env
    drv.probe()
    pages = [drv.mem.alloc(PAGE) for _ in range(3)]
    pas = b"".join(p.to_bytes(8, "big") for p in pages)
    drv.cmd(c.MANAGE_PAGES_IN, {"input_num_entries": 3}, opcode=Op.MANAGE_PAGES, op_mod=1, extra=pas, slot=31)
    res = drv.cmd(
        c.MANAGE_PAGES_IN, {"input_num_entries": 8}, 0x10 + 8 * 8, opcode=Op.MANAGE_PAGES, op_mod=2, slot=31
    )
    n = int.from_bytes(res.out[8:12], "big")
    assert n == 3
    assert sorted(int.from_bytes(res.out[0x10 + 8 * i : 0x18 + 8 * i], "big") for i in range(n)) == pages


def test_full_teardown_leaves_nothing(env: tuple[Mlx5Function, TestDriver]) -> None:
    """ip link down + rmmod: mlx5e_close / mlx5e_remove, mlx5_unload, TEARDOWN_HCA, DISABLE_HCA."""
    dev, drv = env
    up(drv)
    drv.ifdown_and_remove()
    drv.teardown()
    st = dev.status()
    assert st["state"] == "disabled" and st["mode"] == "polling"
    assert not any(st["objects"].values())
    cmds = dev.trace.records(kind="cmd")
    assert all(r["status"] == 0 and r["delivery"] == 0 for r in cmds)
    destroy_cmd_eq = [r for r in cmds if r["opcode"] == Op.DESTROY_EQ][-1]
    assert destroy_cmd_eq["eqe"] is False  # polled: the cmd EQ is being destroyed
    assert [r["op"] for r in cmds[-3:]] == ["DEALLOC_UAR", "TEARDOWN_HCA", "DISABLE_HCA"]


def test_fast_teardown_path() -> None:
    """reboot -f with fast_teardown: TEARDOWN_HCA(PREPARE_FAST) in events mode gets its EQE, then
    nic_interface is set to DISABLED and reads back; later doorbells are refused."""
    dev, _m, _i, drv = make_device(fast_teardown=True)
    try:
        drv.probe()
        res = drv.cmd(c.TEARDOWN_HCA_IN, {"profile": 2}, 0x10, opcode=Op.TEARDOWN_HCA)
        assert res.out[0x0F] & 1 == 0
        assert drv.cmd_eq is not None and drv.cmd_eq.eqes[-1][1] == Event.CMD
        assert dev.status()["objects"]["eqs"] == 0
        l_sz = drv.rd32(0x14)
        drv.wr32(0x14, (l_sz & 0xFFFFF000) | 1 << 8)  # mlx5_set_nic_state(DISABLED)
        assert (drv.rd32(0x14) >> 8) & 7 == 1
        drv.post(bytes(c.CMD_IN.build({"opcode": Op.QUERY_ISSI})), 0x70, 3)
        assert dev.wait_idle()
        assert any("nic_interface" in r["detail"] for r in dev.trace.records(kind="reject"))
    finally:
        dev.close()


def test_force_teardown_is_polled() -> None:
    dev, _m, _i, drv = make_device(force_teardown=True)
    try:
        drv.probe()
        drv.events_mode = False  # mlx5_cmd_exec_polling
        res = drv.cmd(c.TEARDOWN_HCA_IN, {"profile": 1}, 0x10, opcode=Op.TEARDOWN_HCA)
        assert res.status == 0
        assert dev.trace.records(op="TEARDOWN_HCA")[0]["eqe"] is False
        drv.poll_eqs()  # raises ContractViolation if a CMD EQE for slot 0 shows up
    finally:
        dev.close()


def test_reset_drops_state_and_restarts_worker(env: tuple[Mlx5Function, TestDriver]) -> None:
    dev, drv = env
    up(drv)
    old_worker = dev.worker
    dev.reset()
    assert not old_worker._thread.is_alive()
    st = dev.status()
    assert st["state"] == "disabled" and not any(st["objects"].values()) and st["cmdq_addr"] == 0
    drv2 = TestDriver(dev, drv.mem, drv.irq)  # a rebooted guest probes again
    drv2.probe()
    assert dev.status()["mode"] == "events"


def test_access_reg_echo_registers(env: tuple[Mlx5Function, TestDriver]) -> None:
    _dev, drv = env
    drv.probe()
    pfcc = bytearray(0x20)
    pfcc[1] = 1
    pfcc[8] = 0x80  # pptx
    drv.access_reg(Reg.PFCC, bytes(pfcc), 0x20, write=True)
    assert drv.access_reg(Reg.PFCC, b"\x00\x01", 0x20).out[0x10 + 8] == 0x80
    paos = drv.access_reg(Reg.PAOS, b"\x00\x01", 0x10).out[0x10:]
    assert paos[2] & 0xF == 1 and paos[3] & 0xF == 1  # admin up, oper up
    ppcnt = drv.access_reg(Reg.PPCNT, b"\x00\x01\x00\x00", 0x100).out
    assert not any(ppcnt[0x18:])


def test_generic_outputs_accept_the_drivers_exact_lengths() -> None:
    """enable_hca_out is 12 bytes in 6.1's mlx5_ifc.h; the driver sends outlen 12, not 16."""
    dev, _mem, _irq, drv = make_device()
    try:
        drv.enable_cmdq()
        res = drv.cmd(c.ENABLE_HCA_IN, outlen=12, opcode=Op.ENABLE_HCA, check=False)
        assert (res.delivery, res.status) == (0, 0)
        res = drv.cmd(c.ENABLE_HCA_IN, outlen=7, opcode=Op.ENABLE_HCA, check=False)
        assert res.status == 0x51  # shorter than status + syndrome: bad output length
    finally:
        dev.close()

"""Hostile or broken guest input: every path ends in a delivery status, a command status or a trace
line; nothing raises out of the model and no work is unbounded. Plus fault injection."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from mlx5dev.mlx5 import Mlx5Function
from mlx5dev.mlx5.consts import Delivery, Op, Status
from mlx5dev.mlx5.errors import Synd
from mlx5dev.mlx5.ifc import cmds as c
from mlx5dev.mlx5.ifc.hw import PROT_BLOCK
from mlx5dev.mlx5.mailbox import MAX_MSG_LEN

from .mlx5_testdriver import PAGE, RAM_BASE, TestDriver, make_device


@pytest.fixture
def env() -> Iterator[tuple[Mlx5Function, TestDriver]]:
    dev, _mem, _irq, drv = make_device()
    drv.probe()
    yield dev, drv
    dev.close()


def rejects(dev: Mlx5Function, text: str) -> list[dict]:
    assert dev.wait_idle()
    return [r for r in dev.trace.records(kind="reject") if text in r.get("detail", "")]


def create_rqt_input(n: int = 256) -> bytes:
    inp = c.CREATE_RQT_IN.build(
        {"opcode": Op.CREATE_RQT, "rqt_context.rqt_max_size": n, "rqt_context.rqt_actual_size": n}
    )
    return bytes(inp) + b"\0" * 4 * n  # three input blocks


def chain(drv: TestDriver, n: int, *, nums: list[int] | None = None) -> list[int]:
    """``n`` linked blocks (numbered 0..n-1 unless ``nums``); returns their addresses."""
    addrs = [drv.mem.alloc(PROT_BLOCK.size, 1024) for _ in range(n)]
    for k, addr in enumerate(addrs):
        blk = PROT_BLOCK.build({"next": addrs[k + 1] if k + 1 < n else 0, "block_num": (nums or range(n))[k]})
        drv.mem.write(addr, bytes(blk))
    return addrs


def link(drv: TestDriver, addr: int, nxt: int) -> None:
    drv.mem.write(addr + 0x230, nxt.to_bytes(8, "big"))


def test_looping_input_chain(env: tuple[Mlx5Function, TestDriver]) -> None:
    dev, drv = env
    a = chain(drv, 2)
    link(drv, a[1], a[0])  # block 1 -> block 0: a loop, 3 blocks needed
    drv.post(create_rqt_input(), 0x10, in_ptr=a[0])
    res = drv.wait(0, 0x10)
    assert res.delivery == Delivery.BAD_BLK_NUM_ERR
    assert "loops" in dev.trace.records(op="CREATE_RQT")[-1]["detail"]
    assert dev.status()["objects"]["rqts"] == 0


def test_self_looping_block_with_matching_numbers(env: tuple[Mlx5Function, TestDriver]) -> None:
    dev, drv = env
    (a,) = chain(drv, 1)
    link(drv, a, a)
    drv.post(create_rqt_input(), 0x10, in_ptr=a)
    assert drv.wait(0, 0x10).delivery == Delivery.BAD_BLK_NUM_ERR


def test_wrong_block_number(env: tuple[Mlx5Function, TestDriver]) -> None:
    _dev, drv = env
    a = chain(drv, 3, nums=[0, 2, 1])
    drv.post(create_rqt_input(), 0x10, in_ptr=a[0])
    assert drv.wait(0, 0x10).delivery == Delivery.BAD_BLK_NUM_ERR


def test_short_input_chain(env: tuple[Mlx5Function, TestDriver]) -> None:
    _dev, drv = env
    a = chain(drv, 2)  # 3 needed
    drv.post(create_rqt_input(), 0x10, in_ptr=a[0])
    assert drv.wait(0, 0x10).delivery == Delivery.IN_LENGTH_ERR


def test_short_output_chain(env: tuple[Mlx5Function, TestDriver]) -> None:
    _dev, drv = env
    a = chain(drv, 3)  # QUERY_HCA_CAP output needs 8
    drv.post(bytes(c.QUERY_HCA_CAP_IN.build({"opcode": Op.QUERY_HCA_CAP, "op_mod": 1})), 0x1010, out_ptr=a[0])
    assert drv.wait(0, 0x1010).delivery == Delivery.OUT_LENGTH_ERR


def test_longer_chain_than_needed_is_fine(env: tuple[Mlx5Function, TestDriver]) -> None:
    """The driver's message cache hands out chains longer than the message: only the needed blocks count."""
    _dev, drv = env
    a = chain(drv, 3)  # 1 needed for 0x40 bytes of ACCESS_REG input, then two more (never visited)
    link(drv, a[2], a[0])  # even a loop beyond the needed length is never walked
    inp = c.ACCESS_REGISTER_IN.build({"opcode": Op.ACCESS_REG, "op_mod": 1, "register_id": 0x5004})
    inp += b"\x00\x01\x00\x04" + b"\0" * 0x3C
    drv.mem.write(a[0], bytes(inp[16:]))
    drv.post(bytes(inp), 0x50, in_ptr=a[0])
    res = drv.wait(0, 0x50)
    assert (
        res.delivery == 0
        and res.status == 0
        and res.out[0x10 + 0x24 : 0x10 + 0x28] == (1 << 20).to_bytes(4, "big")
    )


def test_multi_block_output_chain_roundtrip(env: tuple[Mlx5Function, TestDriver]) -> None:
    dev, drv = env
    cap = drv.query_cap(0)  # QUERY_HCA_CAP: 0x1010 bytes over 8 output blocks
    assert cap[:0x1000] == bytes(dev.state.caps_cur[0])


@pytest.mark.parametrize(
    ("inlen", "outlen", "delivery"),
    [
        (MAX_MSG_LEN + 1, 0x10, Delivery.IN_LENGTH_ERR),
        (0x10, MAX_MSG_LEN + 1, Delivery.OUT_LENGTH_ERR),
        (0xFFFFFFFF, 0x10, Delivery.IN_LENGTH_ERR),
    ],
)
def test_lengths_that_do_not_fit(
    env: tuple[Mlx5Function, TestDriver], inlen: int, outlen: int, delivery: Delivery
) -> None:
    _dev, drv = env
    drv.post(bytes(c.CMD_IN.build({"opcode": Op.ALLOC_PD})), outlen, inlen=inlen, in_ptr=0, out_ptr=0)
    t = time.monotonic()
    assert drv.wait(0, 0x10).delivery == delivery
    assert time.monotonic() - t < 1.0  # rejected up front, never walked


def test_inlen_outlen_shorter_than_the_command(env: tuple[Mlx5Function, TestDriver]) -> None:
    _dev, drv = env
    drv.post(bytes(c.CMD_IN.build({"opcode": Op.CREATE_EQ})), 0x10)  # inlen 16 < create_eq_in 0x110
    res = drv.wait(0, 0x10)
    assert (res.status, res.syndrome) == (Status.BAD_INP_LEN, Synd.BAD_INPUT_LEN | Op.CREATE_EQ)
    drv.post(bytes(c.CMD_IN.build({"opcode": Op.QUERY_HCA_CAP, "op_mod": 1})), 0x100)
    assert drv.wait(0, 0x100).status == Status.BAD_OUTP_LEN
    drv.post(bytes(c.CMD_IN.build({"opcode": Op.ALLOC_PD}))[:4], 0x10)
    assert drv.wait(0, 0x10).status == Status.BAD_INP_LEN


def test_dma_outside_guest_memory(env: tuple[Mlx5Function, TestDriver]) -> None:
    dev, drv = env
    drv.post(create_rqt_input(), 0x10, in_ptr=0x1000)  # below RAM
    assert drv.wait(0, 0x10).delivery == Delivery.IN_PTR_ALIGN_ERR
    drv.post(
        bytes(c.QUERY_HCA_CAP_IN.build({"opcode": Op.QUERY_HCA_CAP, "op_mod": 1})),
        0x1010,
        out_ptr=RAM_BASE + (1 << 40),
    )
    assert drv.wait(0, 0x1010).delivery == Delivery.OUT_PTR_ALIGN_ERR
    drv.post(create_rqt_input(), 0x10, in_ptr=drv.mem.alloc(2048, 1024) + 8)  # misaligned
    assert drv.wait(0, 0x10).delivery == Delivery.IN_PTR_ALIGN_ERR
    assert dev.status()["delivery_errors"] == 3


def test_command_queue_outside_guest_memory() -> None:
    dev, _mem, _irq, drv = make_device()
    try:
        drv.wr32(0x18, 1)  # before the queue address is set
        assert rejects(dev, "before the command queue address")
        drv.wr32(0x10, 0x7F)
        drv.wr32(0x14, 0)
        drv.wr32(0x18, 1 << 4)
        assert rejects(dev, "DMA error reading entry")
        assert dev.status()["pending_slots"] == []
    finally:
        dev.close()


def test_unknown_opcode_and_register(env: tuple[Mlx5Function, TestDriver]) -> None:
    dev, drv = env
    res = drv.cmd(None, {}, 0x10, opcode=0x7FF, check=False)
    assert (res.status, res.syndrome) == (Status.BAD_OP, Synd.BAD_OPCODE | 0x7FF)
    res = drv.cmd(None, {}, 0x10, opcode=Op.CREATE_QP, check=False)  # a real opcode the model lacks
    assert res.status == Status.BAD_OP
    res = drv.access_reg(0x1234, b"", 0x10, check=False)
    assert (res.status, res.syndrome) == (Status.BAD_PARAM, Synd.BAD_REGISTER | 0x1234)
    rec = dev.trace.records(kind="cmd")[-1]
    assert rec["reg_id"] == 0x1234 and rec["status_name"] == "BAD_PARAM"


def test_doorbell_for_idle_and_busy_slots(env: tuple[Mlx5Function, TestDriver]) -> None:
    dev, drv = env
    drv.wr32(0x18, 1 << 5)  # slot 5 was never written: ownership bit clear
    assert rejects(dev, "idle slot 5")
    dev.add_fault(Op.ALLOC_PD, delay_ms=50, count=1)
    drv.post(bytes(c.CMD_IN.build({"opcode": Op.ALLOC_PD})), 0x10, 6)
    drv.wr32(0x18, 1 << 6)  # ring again while it is still executing
    assert drv.wait(6, 0x10).status == 0
    assert rejects(dev, "slot 6 still executing")
    assert len(dev.trace.records(op="ALLOC_PD")) == 1  # executed and completed once


def test_bad_entry_type(env: tuple[Mlx5Function, TestDriver]) -> None:
    _dev, drv = env
    drv.post(bytes(c.CMD_IN.build({"opcode": Op.ALLOC_PD})), 0x10, entry_type=3)
    assert drv.wait(0, 0x10).delivery == Delivery.CMD_DESCR_ERR


def test_destroy_unknown_and_twice(env: tuple[Mlx5Function, TestDriver]) -> None:
    dev, drv = env
    for layout, field, op in (
        (c.DESTROY_CQ_IN, "cqn", Op.DESTROY_CQ),
        (c.DEALLOC_PD_IN, "pd", Op.DEALLOC_PD),
        (c.DESTROY_EQ_IN, "eq_number", Op.DESTROY_EQ),
        (c.DESTROY_FLOW_TABLE_IN, "table_id", Op.DESTROY_FLOW_TABLE),
        (c.DEALLOC_Q_COUNTER_IN, "counter_set_id", Op.DEALLOC_Q_COUNTER),
    ):
        res = drv.cmd(layout, {field: 0xEE}, opcode=op, check=False)
        assert (res.status, res.syndrome & 0xFFFF0000) == (Status.BAD_RES, Synd.BAD_RESOURCE), op.name
    pd = drv.id24(drv.cmd(None, {}, 0x10, opcode=Op.ALLOC_PD))
    drv.cmd(c.DEALLOC_PD_IN, {"pd": pd}, opcode=Op.DEALLOC_PD)
    assert drv.cmd(c.DEALLOC_PD_IN, {"pd": pd}, opcode=Op.DEALLOC_PD, check=False).status == Status.BAD_RES
    assert dev.status()["objects"]["pds"] == 0


def test_object_ids_are_unique_and_nonzero(env: tuple[Mlx5Function, TestDriver]) -> None:
    _dev, drv = env
    ids = [drv.id24(drv.cmd(None, {}, 0x10, opcode=Op.ALLOC_PD)) for _ in range(20)]
    drv.cmd(c.DEALLOC_PD_IN, {"pd": ids[0]}, opcode=Op.DEALLOC_PD)
    ids.append(drv.id24(drv.cmd(None, {}, 0x10, opcode=Op.ALLOC_PD)))
    assert 0 not in ids and len(set(ids)) == len(ids)  # a freed id is not handed out again at once


def test_life_cycle_and_state_checks() -> None:
    dev, _mem, _irq, drv = make_device()
    try:
        drv.enable_cmdq()
        assert drv.cmd(None, {}, 0x70, opcode=Op.QUERY_ISSI, check=False).status == Status.BAD_SYS_STATE
        drv.cmd(c.ENABLE_HCA_IN, {}, opcode=Op.ENABLE_HCA)
        assert drv.cmd(None, {}, 0x10, opcode=Op.ALLOC_PD, check=False).status == Status.BAD_SYS_STATE
        drv.cmd(c.INIT_HCA_IN, {}, opcode=Op.INIT_HCA)
        assert drv.cmd(c.INIT_HCA_IN, {}, opcode=Op.INIT_HCA, check=False).status == Status.BAD_SYS_STATE
        assert drv.cmd(None, {}, 0x10, opcode=Op.ALLOC_PD).status == 0
    finally:
        dev.close()


def test_bad_queue_parameters(env: tuple[Mlx5Function, TestDriver]) -> None:
    dev, drv = env
    vals = {
        "eq_context_entry.log_eq_size": 4,
        "eq_context_entry.uar_page": drv.uar,
        "eq_context_entry.intr": 99,
    }
    assert drv.cmd(c.CREATE_EQ_IN, vals, 0x10, opcode=Op.CREATE_EQ, check=False).status == Status.BAD_PARAM
    vals["eq_context_entry.intr"] = 1  # valid vector, but no pas[] for the 1 KiB buffer
    assert drv.cmd(c.CREATE_EQ_IN, vals, 0x10, opcode=Op.CREATE_EQ, check=False).status == Status.BAD_PARAM
    res = drv.cmd(
        c.CREATE_EQ_IN,
        {**vals, "event_bitmask": 1 << (192 + 0x0A)},
        0x10,
        opcode=Op.CREATE_EQ,
        extra=(RAM_BASE).to_bytes(8, "big"),
        check=False,
    )
    assert res.status == Status.BAD_PARAM  # a second command EQ
    cq = drv.cmd(
        c.CREATE_CQ_IN, {"cq_context.c_eqn_or_apu_element": 0xFE}, 0x10, opcode=Op.CREATE_CQ, check=False
    )
    assert cq.status == Status.BAD_RES  # no such EQ
    sq = drv.cmd(c.CREATE_SQ_IN, {"ctx.cqn": 0x123456}, 0x10, opcode=Op.CREATE_SQ, check=False)
    assert sq.status == Status.BAD_RES
    assert dev.status()["objects"]["eqs"] == 5


def test_modify_sq_from_wrong_state(env: tuple[Mlx5Function, TestDriver]) -> None:
    _dev, drv = env
    cqn = drv.create_cq(drv.comp_eqs[0].eqn)[0]
    sqn = drv.create_sq(cqn, 0)  # RST -> RDY
    res = drv.cmd(
        c.MODIFY_SQ_IN, {"sqn": sqn, "sq_state": 0, "ctx.state": 1}, opcode=Op.MODIFY_SQ, check=False
    )
    assert res.status == Status.BAD_RES_STATE
    state = drv.cmd(c.QUERY_SQ_IN, {"sqn": sqn}, c.QUERY_SQ_OUT.size, opcode=Op.QUERY_SQ)
    assert c.QUERY_SQ_OUT.get(state.out, "sq_context.state") == 1


def test_mmio_garbage_is_traced_not_raised(env: tuple[Mlx5Function, TestDriver]) -> None:
    dev, drv = env
    dev.mmio_write(0x13, b"\x01")  # unaligned iseg write
    dev.mmio_write(0x200, b"\xff" * 4)  # read-only health buffer
    dev.mmio_write(0x7000, b"\0" * 4)  # page 7: not a UAR
    dev.mmio_write(drv.uar * PAGE + 0x40, (0xEE << 24 | 5).to_bytes(4, "big"))  # unknown EQ
    dev.mmio_write(drv.uar * PAGE + 0x800, b"\0" * 8)  # SQ doorbell for sqn 0
    dev.mmio_write(drv.uar * PAGE + 0x123, b"\x01")
    assert dev.mmio_read(1 << 19, 8) == bytes(8)
    assert dev.mmio_read(0x1E, 2) == bytes(2)
    for text in (
        "unaligned iseg write",
        "not an allocated UAR",
        "unknown eqn",
        "unknown sqn",
        "not understood",
    ):
        assert rejects(dev, text), text
    assert dev.mmio_read(0x230, 4) != b"\xff" * 4


def test_eq_overflow_drops_and_reports(env: tuple[Mlx5Function, TestDriver]) -> None:
    dev, drv = env
    for _ in range(300):  # > 256 entries in the cmd EQ without consuming
        dev.set_link(False)
        dev.set_link(True)
    assert dev.wait_idle()
    async_eq = dev.state.objects.eqs.get(2)
    assert async_eq.pi == 600 and async_eq.dropped == 0  # 8192-entry async EQ holds them
    eq = dev.state.objects.eqs.get(drv.cmd_eq.eqn)
    eq.pi, eq.ci = 1000, 1000 - eq.nent  # pretend the driver stopped consuming
    drv.post(bytes(c.CMD_IN.build({"opcode": Op.ALLOC_PD})), 0x10, 2)
    assert rejects(dev, "full")
    assert eq.dropped == 1


def test_handler_crash_becomes_internal_error(
    env: tuple[Mlx5Function, TestDriver], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlx5dev.mlx5 import dispatcher

    def boom(ctx: object) -> None:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(dispatcher.REGISTRY[Op.ALLOC_PD], "fn", boom)
    res = drv_cmd = env[1].cmd(None, {}, 0x10, opcode=Op.ALLOC_PD, check=False)
    assert drv_cmd.status == Status.INT_ERR and res.syndrome == Synd.INTERNAL | Op.ALLOC_PD
    assert "handler crashed" in env[0].trace.records(op="ALLOC_PD")[-1]["detail"]


# -- fault injection ---------------------------------------------------------------------------


def test_fault_fail_has_no_side_effect(env: tuple[Mlx5Function, TestDriver]) -> None:
    dev, drv = env
    dev.add_fault(Op.ALLOC_PD, status=Status.NO_RES, syndrome=0x1234, count=2)
    for _ in range(2):
        res = drv.cmd(None, {}, 0x10, opcode=Op.ALLOC_PD, check=False)
        assert (res.status, res.syndrome) == (Status.NO_RES, 0x1234)
    assert drv.cmd(None, {}, 0x10, opcode=Op.ALLOC_PD).status == 0  # count used up
    assert dev.status()["objects"]["pds"] == 1 and dev.faults.list() == []
    assert dev.trace.records(op="ALLOC_PD")[0]["fault"]["status"] == Status.NO_RES


def test_fault_delay_only_for_one_register(env: tuple[Mlx5Function, TestDriver]) -> None:
    dev, drv = env
    dev.add_fault(Op.ACCESS_REG, register_id=0x5004, delay_ms=80)  # PTYS, always
    drv.post(
        bytes(c.ACCESS_REGISTER_IN.build({"opcode": Op.ACCESS_REG, "op_mod": 1, "register_id": 0x5004}))
        + b"\x00\x01\x00\x04"
        + b"\0" * 0x3C,
        0x50,
        1,
    )
    t0 = time.monotonic()
    assert drv.access_reg(0x5003, b"\x00\x01", 0x10, check=True).status == 0  # PMTU on slot 0: not delayed
    fast = time.monotonic() - t0
    res = drv.wait(1, 0x50)
    slow = time.monotonic() - t0
    assert res.status == 0 and fast < 0.06 and slow >= 0.07
    rec = dev.trace.records(reg="PTYS")[-1]
    assert rec["latency_us"] >= 70000 and rec["fault"]["delay_ms"] == 80


def test_fault_drop_never_completes(env: tuple[Mlx5Function, TestDriver]) -> None:
    dev, drv = env
    dev.add_fault(Op.ALLOC_PD, drop=True, count=1)
    drv.post(bytes(c.CMD_IN.build({"opcode": Op.ALLOC_PD})), 0x10, 3)
    with pytest.raises(TimeoutError):
        drv.wait(3, 0x10, timeout=0.1)
    assert dev.status()["pending_slots"] == [3]
    drv.pending.discard(3)


def test_health_injection(env: tuple[Mlx5Function, TestDriver]) -> None:
    dev, drv = env
    c1, c2 = drv.rd32(0x1010), drv.rd32(0x1010)
    assert c2 == c1 + 1
    dev.set_health(synd=0x10, rfr=True, counter_frozen=True)
    assert drv.rd32(0x1010) == drv.rd32(0x1010)
    assert drv.rd32(0x23C) >> 16 & 0xFF == 0x10 and drv.rd32(0x238) >> 31 == 1
    dev.set_health(fw_ver_dead=True)
    assert drv.rd32(0x230) == 0xFFFFFFFF
    dev.clear_health()
    assert drv.rd32(0x23C) == 0 and drv.rd32(0x230) != 0xFFFFFFFF

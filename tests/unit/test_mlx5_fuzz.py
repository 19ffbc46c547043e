"""Property-based tests: random queue entries, mailboxes, command payloads and MMIO never make the
model raise, hang, or skip accounting: every doorbell ends in a completion or a trace line."""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlx5dev.mlx5 import Mlx5Function, dispatcher
from mlx5dev.mlx5.consts import Op, Status
from mlx5dev.mlx5.ifc import cmds as c
from mlx5dev.mlx5.ifc.hw import CMD_LAYOUT, PROT_BLOCK

from .mlx5_testdriver import RAM_BASE, TestDriver, make_device

FUZZ = settings(
    max_examples=int(__import__("os").environ.get("MLX5_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
OPCODES = sorted(dispatcher.REGISTRY)


class Crashes(logging.Handler):
    """Collects ERROR records of the model's logger (handler crashes, failed jobs)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def crashes() -> Crashes:
    h = Crashes()
    logging.getLogger("mlx5dev.mlx5").addHandler(h)
    yield h
    logging.getLogger("mlx5dev.mlx5").removeHandler(h)


class Bench:
    """A probed device reused across examples; rebuilt when a random command broke events mode."""

    def __init__(self) -> None:
        self.dev: Mlx5Function | None = None
        self.drv: TestDriver | None = None

    def get(self, probed: bool) -> tuple[Mlx5Function, TestDriver]:
        ok = (
            self.dev is not None
            and self.probed == probed
            and (
                not probed
                or self.dev.status()["mode"] == "events"
                and self.dev.status()["state"] == "initialized"
            )
        )
        if not ok:
            self.close()
            self.dev, _mem, _irq, self.drv = make_device()
            self.probed = probed
            if probed:
                self.drv.probe()
            else:
                self.drv.enable_cmdq()
        assert self.dev is not None and self.drv is not None
        return self.dev, self.drv

    def close(self) -> None:
        if self.dev is not None:
            self.dev.close()
            self.dev = None


@pytest.fixture(scope="module")
def bench() -> Bench:
    b = Bench()
    yield b
    b.close()


@pytest.fixture(scope="module")
def mmio_bench() -> Bench:
    """Its own device: random MMIO may move the queue address under the other tests' feet."""
    b = Bench()
    yield b
    b.close()


def settle(dev: Mlx5Function, drv: TestDriver, slot: int, before: int) -> None:
    """The doorbell must have produced a completion (ownership returned) or a trace line about it."""
    assert dev.wait_idle(2.0), "worker did not go idle: unbounded work?"
    assert dev.worker._thread.is_alive()
    owned = drv.mem.read(drv.cmdq + slot * 64 + 0x3F, 1)[0] & 1
    mentioned = any(r.get("slot") == slot for r in dev.trace.since(before))
    assert not owned or mentioned, "a doorbell left no completion and no trace line"
    if drv.events_mode:
        drv.poll_eqs()  # raises ContractViolation on a CMD EQE for a slot that is not pending
    drv.pending.discard(slot)
    drv.done.discard(slot)
    assert dev.status()["pending_slots"] == []


ptr = st.one_of(
    st.just(0),
    st.just("chain"),
    st.integers(RAM_BASE, RAM_BASE + (32 << 20)).map(lambda a: a & ~0x3FF),
    st.integers(0, 2**64 - 1),
)


@FUZZ
@given(
    entry_type=st.sampled_from([7, 7, 7, 0, 255]),
    inlen=st.one_of(st.integers(0, 0x1200), st.integers(0, 2**32 - 1)),
    outlen=st.one_of(st.integers(0, 0x1200), st.integers(0, 2**32 - 1)),
    in_ptr=ptr,
    out_ptr=ptr,
    opcode=st.one_of(st.sampled_from(OPCODES), st.integers(0, 0xFFFF)),
    inline=st.binary(min_size=16, max_size=16),
    own=st.sampled_from([1, 1, 1, 0, 0xFF]),
    slot=st.integers(0, 31),
    blocks=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 2)), max_size=6),
)
def test_random_queue_entries(
    bench: Bench,
    crashes: Crashes,
    entry_type: int,
    inlen: int,
    outlen: int,
    in_ptr: object,
    out_ptr: object,
    opcode: int,
    inline: bytes,
    own: int,
    slot: int,
    blocks: list[tuple[int, int]],
) -> None:
    dev, drv = bench.get(probed=False)
    # a random chain: block_num and next are scrambled by (num, link) choices
    addrs = [drv.mem.alloc(PROT_BLOCK.size, 1024) for _ in blocks]
    for i, (num, how) in enumerate(blocks):
        nxt = [addrs[(i + 1) % len(addrs)], 0, addrs[0]][how] if addrs else 0
        drv.mem.write(addrs[i], bytes(PROT_BLOCK.build({"next": nxt, "block_num": num})))
    ent = CMD_LAYOUT.build({"type": entry_type, "inlen": inlen, "outlen": outlen, "status_own": own})
    for name, p in (("in_ptr", in_ptr), ("out_ptr", out_ptr)):
        CMD_LAYOUT.set(ent, name, (addrs[0] if addrs else 0) if p == "chain" else p)  # type: ignore[arg-type]
    ent[0x10:0x20] = opcode.to_bytes(2, "big") + inline[2:]
    drv.mem.write(drv.cmdq + slot * 64, bytes(ent))
    before = dev.trace.emitted
    drv.wr32(0x18, 1 << slot)
    settle(dev, drv, slot, before)
    assert not crashes.records, crashes.records[0].getMessage()


@FUZZ
@given(
    opcode=st.sampled_from(OPCODES),
    op_mod=st.sampled_from([0, 1, 2, 3, 0xFFFF]),
    payload=st.binary(max_size=0x600),
    pad=st.sampled_from([0, 1, 2]),
    out_choice=st.sampled_from(["exact", "short", "long"]),
    slot=st.integers(0, 30),
)
def test_random_command_payloads(
    bench: Bench,
    crashes: Crashes,
    opcode: int,
    op_mod: int,
    payload: bytes,
    pad: int,
    out_choice: str,
    slot: int,
) -> None:
    """Well-formed delivery, random content: every registered handler answers with a status."""
    dev, drv = bench.get(probed=True)
    spec = dispatcher.REGISTRY[opcode]
    size = spec.inp.size if spec.inp else 16
    inp = bytearray(payload[: size + 0x40 * pad].ljust([size, size, 16][pad], b"\0"))
    c.CMD_IN.set(inp, "opcode", opcode)
    c.CMD_IN.set(inp, "op_mod", op_mod)
    full = spec.out.size if spec.out else 16
    outlen = {"exact": full, "short": max(16, full - 4), "long": full + 0x200}[out_choice]
    before = dev.trace.emitted
    drv.post(bytes(inp), outlen, slot)
    settle(dev, drv, slot, before)
    rec = [r for r in dev.trace.since(before) if r.get("slot") == slot and r.get("kind") == "cmd"][-1]
    assert rec["delivery"] == 0 and rec["opcode"] == opcode
    assert rec["status"] != Status.INT_ERR, rec.get("detail")
    assert not crashes.records, crashes.records[0].getMessage()


@FUZZ
@given(
    writes=st.lists(
        st.tuples(st.integers(0, (1 << 20) + 0x100), st.binary(min_size=1, max_size=8)), max_size=20
    )
)
def test_random_mmio(mmio_bench: Bench, crashes: Crashes, writes: list[tuple[int, bytes]]) -> None:
    dev, _drv = mmio_bench.get(probed=True)
    for off, data in writes:
        if off == 0x18:
            continue  # a random command doorbell is covered by test_random_queue_entries
        dev.mmio_write(off, data)
        assert len(dev.mmio_read(off, len(data))) == len(data)
    assert dev.wait_idle(2.0)
    assert dev.worker._thread.is_alive()
    assert not crashes.records, crashes.records[0].getMessage()


def test_no_handler_left_behind() -> None:
    """Every opcode the 6.1 driver issues between probe and teardown has a handler."""
    issued = {
        Op.ENABLE_HCA,
        Op.DISABLE_HCA,
        Op.QUERY_ISSI,
        Op.SET_ISSI,
        Op.QUERY_PAGES,
        Op.MANAGE_PAGES,
        Op.QUERY_HCA_CAP,
        Op.SET_HCA_CAP,
        Op.INIT_HCA,
        Op.TEARDOWN_HCA,
        Op.SET_DRIVER_VERSION,
        Op.QUERY_ADAPTER,
        Op.ALLOC_UAR,
        Op.DEALLOC_UAR,
        Op.ACCESS_REG,
        Op.CREATE_EQ,
        Op.DESTROY_EQ,
        Op.CREATE_CQ,
        Op.DESTROY_CQ,
        Op.MODIFY_CQ,
        Op.CREATE_SQ,
        Op.MODIFY_SQ,
        Op.DESTROY_SQ,
        Op.CREATE_RQ,
        Op.MODIFY_RQ,
        Op.DESTROY_RQ,
        Op.CREATE_TIS,
        Op.DESTROY_TIS,
        Op.CREATE_TIR,
        Op.MODIFY_TIR,
        Op.DESTROY_TIR,
        Op.CREATE_RQT,
        Op.MODIFY_RQT,
        Op.DESTROY_RQT,
        Op.CREATE_FLOW_TABLE,
        Op.DESTROY_FLOW_TABLE,
        Op.MODIFY_FLOW_TABLE,
        Op.SET_FLOW_TABLE_ROOT,
        Op.CREATE_FLOW_GROUP,
        Op.DESTROY_FLOW_GROUP,
        Op.SET_FLOW_TABLE_ENTRY,
        Op.DELETE_FLOW_TABLE_ENTRY,
        Op.QUERY_NIC_VPORT_CONTEXT,
        Op.MODIFY_NIC_VPORT_CONTEXT,
        Op.QUERY_VPORT_STATE,
        Op.QUERY_VPORT_COUNTER,
        Op.ALLOC_Q_COUNTER,
        Op.DEALLOC_Q_COUNTER,
        Op.QUERY_Q_COUNTER,
        Op.CREATE_MKEY,
        Op.DESTROY_MKEY,
        Op.ALLOC_PD,
        Op.DEALLOC_PD,
        Op.ALLOC_TRANSPORT_DOMAIN,
        Op.DEALLOC_TRANSPORT_DOMAIN,
    }
    assert issued <= set(dispatcher.REGISTRY)

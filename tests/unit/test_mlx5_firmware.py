"""The card's firmware against the test-side driver: function-level reset, fatal errors and the firmware
reset of health recovery, a dead firmware, held completions, and the sync reset of ``fw_reset.c``."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from mlx5dev.mlx5 import FunctionConfig
from mlx5dev.mlx5.consts import Event, GeneralSubtype, Op, Reg
from mlx5dev.mlx5.device import Mlx5Function
from mlx5dev.mlx5.firmware import Firmware, SyncRstState, SyncState
from mlx5dev.mlx5.ifc import cmds as c
from mlx5dev.mlx5.ifc.hw import EQE
from mlx5dev.mlx5.ifc.regs import MFRL

from .mlx5_testdriver import FakeGuestMemory, FakeIrq, TestDriver, make_device

NIC_DISABLED, NIC_SW_RESET = 1, 7


def nic_interface(drv: TestDriver) -> int:
    return (drv.rd32(0x14) >> 8) & 7


def wait_until(cond, timeout: float = 3.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


@pytest.fixture
def card() -> Iterator[tuple[Firmware, list[tuple[Mlx5Function, TestDriver]]]]:
    """Two functions on one firmware, as ``mlx5dev.card.Card`` builds them, both probed."""
    fw = Firmware((16, 35, 2000), sw_reset_ms=20, sync_reset_ms=200)
    pairs = []
    for i in range(2):
        mem, irq = FakeGuestMemory(), FakeIrq()
        dev = Mlx5Function(FunctionConfig(name=f"fn{i}", function_index=i), mem, irq, None, fw)
        drv = TestDriver(dev, mem, irq)
        drv.probe()
        pairs.append((dev, drv))
    yield fw, pairs
    for dev, _drv in pairs:
        dev.close()
    fw.close()


def test_flr_keeps_what_the_functions_share() -> None:
    dev, _m, _i, drv = make_device()
    try:
        drv.probe()
        dev.set_health(synd=3)  # not fatal without rfr: only reported
        before = drv.rd32(0x1010)
        dev.reset(function_only=True)
        assert drv.rd32(0x14) & 0xFFFFF000 == 0 and dev.status()["state"] == "disabled"
        assert nic_interface(drv) == NIC_DISABLED  # what health.c: poll_health notices (sensor 3)
        assert dev.status()["health"]["synd"] == 3  # the health buffer is the firmware's
        assert drv.rd32(0x1010) > before  # the counter went on
        drv.__init__(dev, drv.mem, drv.irq)
        drv.probe()  # the health recovery's mlx5_load_one: the command queue address write re-enables it
        assert nic_interface(drv) == 0 and dev.status()["state"] == "initialized"
        dev.reset()  # QEMU's system reset: power-on
        assert dev.status()["health"]["synd"] == 0 and nic_interface(drv) == 0
    finally:
        dev.close()


def test_fatal_error_halts_and_the_drivers_sw_reset_recovers(card) -> None:  # noqa: ANN001
    fw, pairs = card
    (dev0, drv0), (dev1, drv1) = pairs
    fw.set_health(synd=1, rfr=True)  # health.c: sensor FW_SYND_RFR
    assert drv0.rd32(0x23C) >> 16 & 0xFF == 1 and drv1.rd32(0x238) >> 31 == 1  # both see the assert
    # halted: a command is neither executed nor completed, and nothing is written to the guest
    drv0.post(bytes(c.CMD_IN.build({"opcode": Op.QUERY_ISSI})), 0x70, 3)
    assert dev0.wait_idle()
    assert drv0.mem.read(drv0.cmdq + 3 * 64 + 0x3F, 1)[0] & 1 == 1  # still owned by the device
    assert dev0.status()["ignored_while_halted"] >= 1
    dev1.set_link(False)
    assert dev1.wait_idle() and not drv1.port_events
    # health.c: reset_fw_if_needed needs initializing bit 30, then writes nic_interface = SW_RESET
    assert drv0.rd32(0x1FC) == 1 << 30
    drv0.wr32(0x14, (drv0.rd32(0x14) & 0xFFFFF000) | NIC_SW_RESET << 8)
    assert nic_interface(drv0) == NIC_SW_RESET and nic_interface(drv1) == NIC_SW_RESET
    wait_until(lambda: nic_interface(drv0) == NIC_DISABLED and nic_interface(drv1) == NIC_DISABLED)
    assert not fw.halted and fw.resets == 1
    assert drv1.rd32(0x23C) == 0  # health buffer clear for every function
    for dev, drv in pairs:  # mlx5_load_one: a fresh probe on each function works
        assert dev.status()["state"] == "disabled"
        drv.__init__(dev, drv.mem, drv.irq)
        drv.probe()
        assert nic_interface(drv) == 0 and dev.status()["state"] == "initialized"


def test_a_dead_firmware_reads_all_ones_and_comes_back_reset(card) -> None:  # noqa: ANN001
    fw, pairs = card
    (dev0, drv0), _ = pairs
    fw.set_health(fw_ver_dead=True)
    assert {drv0.rd32(off) for off in (0x0, 0x14, 0x1FC, 0x230, 0x1010)} == {0xFFFFFFFF}
    fw.revive_after(0.05)
    wait_until(lambda: drv0.rd32(0x230) != 0xFFFFFFFF)
    wait_until(lambda: nic_interface(drv0) == NIC_DISABLED)
    assert dev0.status()["objects"]["eqs"] == 0  # the firmware rebooted: the driver must reload


def test_frozen_health_counter_is_not_fatal() -> None:
    dev, _m, _i, drv = make_device()
    try:
        dev.set_health(counter_frozen=True)
        assert len({drv.rd32(0x1010) for _ in range(3)}) == 1
        assert not dev.firmware.halted
        dev.clear_health()
        assert drv.rd32(0x1010) != drv.rd32(0x1010)
    finally:
        dev.close()


def test_health_counter_reads_are_counted_per_function(card) -> None:  # noqa: ANN001
    """What a path waits for between two freezes: each function's own polls of the counter."""
    _fw, [(dev0, drv0), (dev1, _drv1)] = card
    before0, before1 = dev0.status()["health_counter_reads"], dev1.status()["health_counter_reads"]
    drv0.rd32(0x1010)
    drv0.rd32(0x1010)
    assert dev0.status()["health_counter_reads"] == before0 + 2
    assert dev1.status()["health_counter_reads"] == before1


def test_dtor_advertises_a_short_pci_toggle_timeout() -> None:
    """fw_reset.c: mlx5_pci_link_toggle waits the whole pcie_toggle_to behind QEMU's root port; the card
    advertises 500 ms (milliseconds unit, lib/tout.c: tout_convert_reg_field_to_ms)."""
    from mlx5dev.mlx5.registers.timeouts import DEFAULTS_MS, encode_timeout
    assert DEFAULTS_MS["pcie_toggle_to"] == 500
    assert encode_timeout(500) == 500  # unit 0 (ms), value 500


def test_held_completion_arrives_when_released() -> None:
    dev, _m, _i, drv = make_device()
    try:
        drv.probe()
        dev.add_fault(Op.ACCESS_REG, register_id=Reg.PTYS, hold=True, count=1)
        slot = 5
        ptys = c.ACCESS_REGISTER_IN.build({"opcode": Op.ACCESS_REG, "op_mod": 1, "register_id": Reg.PTYS})
        drv.post(bytes(ptys) + bytes(0x40), 0x10 + 0x40, slot)
        assert dev.wait_idle()
        assert dev.status()["held_commands"] == 1 and slot in dev.status()["pending_slots"]
        assert dev.release_held() == 1
        assert dev.wait_idle() and dev.status()["pending_slots"] == []
        drv.poll_eqs()
        assert slot in drv.done  # the late completion: status and EQE as for any other
    finally:
        dev.close()


def _mfrl(drv: TestDriver, write: bool = False, **fields: int) -> dict[str, int]:
    data = bytearray(MFRL.size)
    for k, v in fields.items():
        MFRL.set(data, k, v)
    out = drv.access_reg(Reg.MFRL, bytes(data), MFRL.size, write=write).out[0x10:]
    return {f: MFRL.get(out, f) for f in ("reset_level", "reset_type", "reset_state")}


def _sync_events(drv: TestDriver, eq) -> list[int]:  # noqa: ANN001
    drv.poll_eq(eq)
    return [eqe[0x23] for eqe in eq.eqes
            if EQE.get(eqe, "type") == Event.GENERAL_EVENT
            and EQE.get(eqe, "sub_type") == GeneralSubtype.PCI_SYNC_FOR_FW_UPDATE]


def test_sync_reset_negotiation_and_reset(card) -> None:  # noqa: ANN001
    fw, pairs = card
    eqs = [drv.create_eq(1 << Event.GENERAL_EVENT, 6, 0) for _dev, drv in pairs]  # eq.c: async mask bit 0x22
    (dev0, drv0), (dev1, drv1) = pairs
    assert _mfrl(drv0)["reset_level"] & 1 << 3  # fw_reset.c: mlx5_fw_reset_query, level 3 offered
    # devlink reload action fw_activate: mlx5_fw_reset_set_reset_sync
    _mfrl(drv0, write=True, reset_level=1 << 3, pci_sync_for_fw_update_start=1)
    assert fw.sync_state is SyncState.IN_NEGOTIATION
    for dev, _drv in pairs:
        assert dev.wait_idle()
    assert [_sync_events(d, eq) for (_x, d), eq in zip(pairs, eqs, strict=True)] == [[SyncRstState.REQUEST]] * 2
    _mfrl(drv0, write=True, reset_level=1 << 3, pci_sync_for_fw_update_resp=1)  # ..._sync_ack
    assert fw.sync_state is SyncState.IN_NEGOTIATION  # fn1 has not acked yet
    _mfrl(drv1, write=True, reset_level=1 << 3, pci_sync_for_fw_update_resp=1)
    wait_until(lambda: fw.sync_state is SyncState.RESET_IN_PROGRESS)
    for dev, _drv in pairs:
        assert dev.wait_idle()
    assert [_sync_events(d, eq)[-1] for (_x, d), eq in zip(pairs, eqs, strict=True)] == [SyncRstState.NOW] * 2
    # mlx5_sync_reset_now_event: fast teardown, then the NIC interface DISABLED on both
    for _dev, drv in pairs:
        drv.cmd(c.TEARDOWN_HCA_IN, {"profile": 2}, 0x10, opcode=Op.TEARDOWN_HCA)
        drv.wr32(0x14, (drv.rd32(0x14) & 0xFFFFF000) | NIC_DISABLED << 8)
    wait_until(lambda: fw.sync_state is SyncState.IDLE and fw.resets == 1)
    assert drv0.rd32(0x1FC) >> 31 == 0  # main.c: wait_fw_init may go on
    assert dev1.status()["state"] == "disabled"


def test_sync_reset_refused_by_one_function_is_aborted(card) -> None:  # noqa: ANN001
    fw, pairs = card
    eqs = [drv.create_eq(1 << Event.GENERAL_EVENT, 6, 0) for _dev, drv in pairs]
    assert fw.sync_reset_request(None)  # the control channel's sync_reset
    (_dev0, drv0), (_dev1, drv1) = pairs
    _mfrl(drv1, write=True, reset_level=1 << 3, pci_sync_for_fw_update_resp=2)  # ..._sync_nack
    wait_until(lambda: fw.sync_state is SyncState.NACK)
    for dev, _drv in pairs:
        assert dev.wait_idle()
    assert _sync_events(drv0, eqs[0]) == [SyncRstState.REQUEST, SyncRstState.ABORT]
    assert fw.resets == 0
    assert fw.sync_reset_request(None)  # a new negotiation may start after a refusal


def test_an_earlier_negotiations_timeout_does_not_abort_the_next(card) -> None:  # noqa: ANN001
    """Found in the sync-reset VM test: negotiation N's timeout (5 x sync_reset_ms after its request) fired
    during negotiation N+1, started just under that long after N, and aborted it."""
    fw, pairs = card
    eqs = [drv.create_eq(1 << Event.GENERAL_EVENT, 6, 0) for _dev, drv in pairs]
    assert fw.sync_reset_request(None)
    (_dev0, drv0), (_dev1, drv1) = pairs
    _mfrl(drv1, write=True, reset_level=1 << 3, pci_sync_for_fw_update_resp=2)  # refused: ends at once
    wait_until(lambda: fw.sync_state is SyncState.NACK)
    time.sleep(fw.sync_reset_ms / 1000 * 4)
    assert fw.sync_reset_request(None)  # the first one's timeout is due in about one sync_reset_ms
    time.sleep(fw.sync_reset_ms / 1000 * 2)
    assert fw.sync_state is SyncState.IN_NEGOTIATION  # not aborted by the stale timer
    for dev, _drv in pairs:
        assert dev.wait_idle()
    assert _sync_events(drv0, eqs[0]) == [SyncRstState.REQUEST, SyncRstState.ABORT, SyncRstState.REQUEST]
    wait_until(lambda: fw.sync_state is SyncState.TIMEOUT, timeout=fw.sync_reset_ms / 1000 * 6)  # its own


def test_corrupted_answer_sets_one_output_field() -> None:
    dev, _m, _i, drv = make_device()
    try:
        drv.probe()
        dev.add_fault(Op.QUERY_PAGES, corrupt_field="num_pages", corrupt_value=0x7FFFFFFF, count=1)
        res = drv.cmd(c.QUERY_PAGES_IN, {}, 0x10, opcode=Op.QUERY_PAGES, op_mod=3)
        assert c.QUERY_PAGES_OUT.get(res.out, "num_pages") == 0x7FFFFFFF and res.status == 0
        again = drv.cmd(c.QUERY_PAGES_IN, {}, 0x10, opcode=Op.QUERY_PAGES, op_mod=3)
        assert c.QUERY_PAGES_OUT.get(again.out, "num_pages") == 0  # count=1: consumed
        assert "corrupted" in dev.trace.records(op="QUERY_PAGES")[-2]["detail"]
        with pytest.raises(ValueError, match="has no field"):
            dev.add_fault(Op.QUERY_PAGES, corrupt_field="no_such_field")
    finally:
        dev.close()

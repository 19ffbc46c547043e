"""Verdict wording from vmcore findings, for situations the positive control does not produce every time."""

from __future__ import annotations

from typing import Any

from mlx5lab.crash import CrashKind, kind_from_stack
from mlx5lab.triage.verdict import NMI, SYSRQ, vmcore_verdict


def _frames(*names: str, module: str | None = None) -> list[dict[str, Any]]:
    return [{"index": i, "function": n, "module": module if n.startswith(("mlx5", "cmd_")) else None}
            for i, n in enumerate(names)]


READER = {"pid": 160, "comm": "mlx5-reader", "cpu": 0,
          "stack": _frames("panic", "asm_exc_general_protection", "dma_pool_alloc", "mlx5_alloc_cmd_msg",
                           "cmd_exec", "mlx5e_ethtool_get_link_ksettings", "speed_show", module="mlx5_core")}


def _fn(bdf: str, in_kset: bool, pool: dict[str, Any], cmd_state: str = "MLX5_CMDIF_STATE_UP") -> dict[str, Any]:
    return {"bdf": bdf, "in_devices_kset": in_kset, "cmd_state": cmd_state, "cmd_pool_state": pool,
            "device": "0x1", "netdevs": []}


def _reboot(target: str) -> dict[str, Any]:
    return {"pid": 150, "comm": "reboot", "why": "reboot", "at": "cmd_exec [mlx5_core] in shutdown [mlx5_core]",
            "target": {"bdf": target}, "crashed": False}


def test_reader_on_a_function_whose_shutdown_is_over() -> None:
    """The seed case: the reader hit .1, whose shutdown had finished; reboot was already on .0."""
    mlx5 = {"functions": [_fn("0000:01:00.0", False, {"state": "alive"}),
                          _fn("0000:01:00.1", False, {"state": "freed", "pointer": "0xffff888003a1c000"},
                              "MLX5_CMDIF_STATE_DOWN")],
            "reader": {"function": "0000:01:00.1", "ifname": "eth2"}}
    v = vmcore_verdict("general protection fault", "general protection fault in dma_pool_alloc", READER, mlx5,
                       [_reboot("0000:01:00.0")])
    assert v.startswith("use-after-free: `mlx5-reader` (pid 160) read `eth2` (0000:01:00.1) and allocated from "
                        "that function's command pool, which its shutdown had already destroyed (the dma_pool at "
                        "0xffff888003a1c000 is a freed slab object)")
    assert "`reboot` (pid 150) was shutting down 0000:01:00.0, now in cmd_exec" in v
    assert "(the same function)" not in v
    assert "0000:01:00.0, 0000:01:00.1 are off devices_kset" in v


def test_mlx5_crash_with_a_live_pool_is_not_the_uaf() -> None:
    mlx5 = {"functions": [_fn("0000:01:00.0", True, {"state": "alive"})],
            "reader": {"function": "0000:01:00.0", "ifname": "eth1"}}
    v = vmcore_verdict("BUG: kernel NULL pointer dereference", "BUG: kernel NULL pointer dereference in cmd_exec",
                       READER, mlx5, [])
    assert "command pool is alive, so this is not the command-pool use-after-free" in v


def test_other_crash_during_teardown() -> None:
    crashed = {"pid": 7, "comm": "kworker/0:1", "cpu": 1, "stack": _frames("panic", "page_fault_oops", "ext4_x")}
    v = vmcore_verdict("BUG: unable to handle page fault", "BUG: unable to handle page fault in ext4_x", crashed,
                       {"functions": []}, [_reboot("0000:01:00.1")])
    assert v.startswith("BUG: unable to handle page fault in ext4_x by `kworker/0:1` (pid 7) on CPU 1; "
                        "no mlx5_core frames on its stack; not an mlx5 race (meanwhile `reboot` (pid 150)")


def test_hang() -> None:
    crashed = {"pid": 0, "comm": "swapper/1", "cpu": 1, "stack": _frames("panic", "nmi_panic", "unknown_nmi_error")}
    blocked = [{"pid": 150, "comm": "reboot", "at": "wait_for_completion_timeout in cmd_exec [mlx5_core]"}]
    v = vmcore_verdict("panic on NMI", "panic on NMI", crashed, {"functions": []}, [_reboot("0000:01:00.1")],
                       blocked)
    assert "CPU 1 was idle" in v and "Blocked (D) tasks: `reboot` (pid 150) in wait_for_completion" in v


def _kind(stack: list[dict[str, Any]]) -> CrashKind:
    return kind_from_stack(f["function"] for f in stack)  # as triage.vmcore calls it


def test_kind_from_stack() -> None:
    assert _kind(_frames("panic", "sysrq_handle_crash")).value == "deliberate crash from sysrq" == SYSRQ
    assert _kind(_frames("asm_exc_page_fault")).value == "BUG: unable to handle page fault"
    assert _kind(_frames("unknown_nmi_error")).value == "panic on NMI" == NMI
    assert _kind(READER["stack"]) is CrashKind.GPF
    assert _kind([]).value == "kernel panic"


def test_sysrq_verdict_from_the_enum_kind() -> None:
    crashed = {"pid": 119, "comm": "sh", "cpu": 1, "stack": _frames("panic", "sysrq_handle_crash")}
    v = vmcore_verdict(_kind(crashed["stack"]).value, "deliberate crash from sysrq", crashed, {"functions": []}, [])
    assert v.startswith("deliberate crash from sysrq (echo c > /proc/sysrq-trigger) by `sh` (pid 119) on CPU 1")


def test_a_corrupted_mlx5_timer_is_attributed_to_the_driver() -> None:
    """A fault in the timer softirq runs no driver code; the timer it was expiring names the owner."""
    idle = {"pid": 0, "comm": "swapper/1", "cpu": 1,
            "stack": _frames("panic", "asm_exc_general_protection", "__hlist_del", "detach_timer", "expire_timers",
                             "__run_timers", "run_timer_softirq")}
    timer = {"address": "0xffff8880076acd70", "function": "poll_health", "module": "mlx5_core",
             "frame": "detach_timer", "next": "0xdead000000000122", "next_poisoned": True}
    title = "general protection fault in __run_timers"
    v = vmcore_verdict("general protection fault", title, idle, {"functions": []}, [], None, timer)
    assert "expired mlx5_core's timer poll_health (struct timer_list at 0xffff8880076acd70)" in v
    assert "LIST_POISON2" in v and "not an mlx5 race" not in v
    kernel_timer = {**timer, "function": "tcp_keepalive_timer", "module": None, "next_poisoned": False}
    v = vmcore_verdict("general protection fault", title, idle, {"functions": []}, [], None, kernel_timer)
    assert "not an mlx5 race (the timer being expired: tcp_keepalive_timer, kernel)" in v

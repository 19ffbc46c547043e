"""vmcore triage with drgn on real guest dumps, made in this session by the fixtures of tests/vm/conftest.py.

``sysrq`` (stock kernel, echo c > /proc/sysrq-trigger), ``vulnerable`` (a positive-control race iteration),
``nmi`` (stock kernel, QMP inject-nmi with unknown_nmi_panic). Each test triages a copy of its sample with
the guest kernel's cached debug info. Cost: the three boots are shared with tests/vm/test_triage.py; the
triage itself takes ~1 s per dump, ~5 s in all.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mlx5lab.triage.report import triage_iteration
from mlx5lab.triage.result import TriageResult

Copy = Callable[[Path], Path]

pytestmark = pytest.mark.usefixtures("debuginfo")  # the guest kernel's, cached by `make setup`


def _triage(folder: Path) -> TriageResult:
    t0 = time.monotonic()
    r = triage_iteration(folder)
    assert time.monotonic() - t0 < 10, "triage of one vmcore must take at most 10 s"
    assert r.vmcore is not None, r.vmcore_skipped
    assert not r.vmcore["errors"]
    return r


def test_sysrq(sysrq_sample: Path, sample_copy: Copy) -> None:
    r = _triage(sample_copy(sysrq_sample))
    vm = r.vmcore
    assert vm["crashed_task"]["comm"] == "sh"
    assert "sysrq_handle_crash" in [f["function"] for f in vm["crashed_task"]["stack"]]
    assert r.verdict.startswith("deliberate crash from sysrq (echo c > /proc/sysrq-trigger) by `sh`")
    assert r.verdict.endswith("not an mlx5 race.")
    fns = vm["mlx5"]["functions"]
    assert [f["bdf"] for f in fns] == ["0000:01:00.0", "0000:01:00.1"]
    assert all(f["cmd_pool_state"]["state"] == "alive" and f["in_devices_kset"] for f in fns)
    pages = fns[0]["cmd_pool_state"]["pages"]
    assert pages["count"] > 0 and pages["null_vaddr"] == 0 and list(pages["slab_caches"]) == ["kmalloc-64"]
    assert vm["teardown_tasks"] == []


def test_positive_control(vulnerable_sample: Path, sample_copy: Copy) -> None:
    r = _triage(sample_copy(vulnerable_sample))
    vm = r.vmcore
    assert any(p.endswith("mlx5_core.debug.ko") for p in vm["debug_files"])  # the variant's own module
    stack = vm["crashed_task"]["stack"]
    assert {"dma_pool_alloc", "mlx5_alloc_cmd_msg", "cmd_exec", "speed_show"} <= {f["function"] for f in stack}
    assert next(f for f in stack if f["function"] == "cmd_exec")["module"] == "mlx5_core"
    reader = vm["mlx5"]["reader"]
    fn = next(f for f in vm["mlx5"]["functions"] if f["bdf"] == reader["function"])
    assert reader["ifname"] in [n["name"] for n in fn["netdevs"]]
    assert reader["pool"]["address"] == "0xdead000000006b00"
    pool = fn["cmd_pool_state"]
    assert pool["state"] == "poisoned" and pool["pointer"] == "0xdead000000006b00"
    freed = pool["freed_pool"]
    assert freed["state"] == "freed" and freed["pools_list_poisoned"] and freed["dev"] == fn["device"]
    assert not fn["in_devices_kset"]
    reboot = next(t for t in vm["teardown_tasks"] if t["comm"] == "reboot")
    assert reboot["why"] == "reboot" and reboot["target"]["bdf"] in ("0000:01:00.0", "0000:01:00.1")
    v = r.verdict
    assert v.startswith(f"use-after-free: `mlx5lab-read` (pid {vm['crashed_task']['pid']}) read "
                        f"`{reader['ifname']}` ({reader['function']})")
    assert "poisoned to 0xdead000000006b00" in v and f"`reboot` (pid {reboot['pid']}) was shutting down" in v


def test_nmi_without_console_report(nmi_sample: Path, sample_copy: Copy) -> None:
    r = _triage(sample_copy(nmi_sample))
    assert r.console_source.startswith("the vmcore's printk log")
    assert r.kind == "panic on NMI" and "CPU 0 was idle" in r.verdict


def test_concurrent_triages_match_serial(sysrq_sample: Path, vulnerable_sample: Path, sample_copy: Copy,
                                         tmp_path: Path) -> None:
    """What the campaign does: triage crash N in a thread while other work runs; no shared state."""
    a, b = sample_copy(sysrq_sample), sample_copy(vulnerable_sample)
    serial = {f: triage_iteration(f, write=False).verdict for f in (a, b)}
    out: dict[Path, str] = {}
    threads = [threading.Thread(target=lambda f=f: out.__setitem__(f, triage_iteration(f).verdict))
               for f in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert out == serial
    shutil.rmtree(tmp_path, ignore_errors=True)

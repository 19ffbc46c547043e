"""The debug kernel (mlx5image.debugkernel: KASAN, lockdep) as a guest: it boots with the card, and the
no-poison positive control's reboot race ends in a KASAN use-after-free report that triage titles.

Needs the debug kernel, which ``make setup`` does not build: run with ``make test-debug-kernel`` (it builds
the kernel first, 20-40 minutes once). ``$MLX5LAB_DEBUG_KERNEL`` names the kernel (default debug-6.1.192).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from mlx5dev.card import CardConfig
from mlx5image.build import GuestImage, ensure_image
from mlx5image.errors import ImageError
from mlx5lab.vm.machine import Machine, MachineConfig

from .conftest import Unavailable, run_cli

pytestmark = pytest.mark.debugkernel

NAME = os.environ.get("MLX5LAB_DEBUG_KERNEL") or "debug-6.1.192"
SPEEDS = (100000, 25000)
BDFS = ("0000:01:00.0", "0000:01:00.1")


@pytest.fixture(scope="module")
def debug_image(unavailable: Unavailable) -> GuestImage:
    try:
        return ensure_image(NAME, progress=lambda m: print(f"[{NAME}] {m}"))
    except ImageError as exc:
        unavailable(f"no image of the debug kernel: {exc}")


@pytest.mark.timeout(900)
def test_debug_kernel_boots_with_the_card_and_both_ports_come_up(debug_image: GuestImage, tmp_path: Path) -> None:
    assert not debug_image.pvh and debug_image.kernel == debug_image.vmlinuz  # see debugkernel/image.py
    assert "kasan.fault=panic" in debug_image.cmdline and "nokaslr" in debug_image.cmdline
    started = time.monotonic()
    with Machine(MachineConfig(image=debug_image, card=CardConfig.from_speeds(list(SPEEDS)),
                               workdir=tmp_path / "run")) as m:
        boot = m.wait_ssh(timeout=600)
        print(f"[{NAME}] SSH after {boot:.1f} s")
        assert m.run("uname -r").stdout.strip() == debug_image.kernel_release
        script = ("for i in $(seq 240); do n=0; for d in /sys/bus/pci/drivers/mlx5_core/0000:*; do "
                  "for f in $d/net/*/operstate; do [ \"$(cat $f)\" = up ] && n=$((n+1)); done; done; "
                  "[ $n -ge 2 ] && break; sleep 1; done; "
                  "for d in /sys/bus/pci/drivers/mlx5_core/0000:*; do i=$(ls $d/net); "
                  "echo \"${d##*/} $i $(cat $d/net/$i/operstate) $(cat $d/net/$i/speed)\"; done")
        res = m.run(script, timeout=300)
        assert res.status == 0, res.stderr
        seen = {line.split()[0]: line.split()[1:] for line in res.stdout.splitlines() if line.strip()}
        dmesg = m.run("dmesg", timeout=60).stdout
        assert sorted(seen) == list(BDFS), f"functions bound: {sorted(seen)}\n{dmesg[-4000:]}"
        for bdf, speed in zip(BDFS, SPEEDS, strict=True):
            assert (seen[bdf][1], int(seen[bdf][2])) == ("up", speed), f"{bdf}: {seen[bdf]}\n{dmesg[-4000:]}"
        # the detectors are on (mm/kasan/generic.c: kasan_init_generic; kernel/locking/lockdep.c:
        # lockdep_init), and nothing reported during probe and link-up
        assert "KernelAddressSanitizer initialized" in dmesg
        assert "Lock dependency validator" in dmesg
        for report in ("BUG: KASAN", "WARNING: possible circular locking", "INFO: task", "soft lockup"):
            assert report not in dmesg, dmesg[-4000:]
    print(f"[{NAME}] verified in {time.monotonic() - started:.1f} s")


@pytest.mark.timeout(1800)
def test_nopoison_race_is_a_kasan_use_after_free_in_the_dma_pool(debug_image: GuestImage, tmp_path: Path) -> None:
    out = tmp_path / "campaign"
    res = run_cli("race", "--kernel", NAME, "--variant", "vulnerable-nopoison", "--iterations", "2",
                  "--seed", "3", "--hang-timeout", "120", "--out", str(out), timeout=1700)
    print(res.stdout[-3000:], res.stderr[-3000:])
    assert res.returncode == 1, res.stderr[-3000:]
    journal = [json.loads(x) for x in (out / "journal.jsonl").read_text().splitlines()]
    crashes = [out / e["dir"] for e in journal if e["outcome"] == "panic"]
    assert crashes, journal
    for folder in crashes:
        oops = (folder / "oops.txt").read_text()
        # the first bad access is lockdep's read of the freed pool's lock (__lock_acquire); the title names
        # the lock's user, dma_pool_alloc (crash/signature.py: locking machinery)
        assert "BUG: KASAN: use-after-free in " in oops and "dma_pool_alloc+" in oops, oops[:3000]
        # dma_pool_destroy's kfree(pool) is a tail call: the free stack goes straight to its caller
        assert "Freed by task" in oops and "mlx5lab_cmd_destroy_pool+" in oops, oops[:3000]
        report = json.loads((folder / "triage.json").read_text())
        assert report["title"].startswith("KASAN: use-after-free in dma_pool_alloc"), report
        assert report["kind"] == "KASAN: use-after-free", report
        verdict = report["verdict"]
        assert verdict.startswith("use-after-free"), verdict
        assert report["verdict_source"] == "vmcore", report  # drgn read the vmcore with the kernel's vmlinux
        assert "shutdown had already destroyed" in verdict and "dma_pool_destroy" in verdict, verdict
        assert "0000:01:00." in verdict, verdict

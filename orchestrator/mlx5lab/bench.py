"""Benchmarks that print their figures (speed targets are measured here, never asserted by tests)."""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass

from mlx5image.build import GuestImage

from .machine import Machine, MachineConfig


@dataclass
class Spread:
    values: list[float]

    def line(self, label: str) -> str:
        v = sorted(self.values)
        med = statistics.median(v)
        q = statistics.quantiles(v, n=4) if len(v) >= 2 else [v[0], v[0], v[0]]
        return (f"{label:<34} median {med:6.2f} s   min {v[0]:6.2f}   max {v[-1]:6.2f}   "
                f"IQR {q[2] - q[0]:5.2f}   (n={len(v)})")


def bench_boot(image: GuestImage, runs: int) -> tuple[Spread, Spread]:
    """Boot ``runs`` times; per boot, seconds from QEMU start to init reached and to SSH ready."""
    init_times: list[float] = []
    ssh_times: list[float] = []
    for i in range(runs):
        with Machine(MachineConfig(image=image)) as m:
            ssh = m.wait_ssh(timeout=120)
            init = m.wait_init(timeout=1)
        init_times.append(init)
        ssh_times.append(ssh)
        print(f"  boot {i + 1}/{runs}: init reached {init:.2f} s, SSH ready {ssh:.2f} s ({m.accel})",
              file=sys.stderr, flush=True)
    return Spread(init_times), Spread(ssh_times)

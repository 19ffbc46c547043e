"""Where an iteration's time goes: the guest init's markers read from a console, the bench's medians."""

from __future__ import annotations

from mlx5lab.bench import phase_lines
from mlx5lab.campaign.outcome import IterationResult, Outcome
from mlx5lab.scenarios.guest import guest_phases

CONSOLE = """[    0.000000] Linux version 6.1.0-57-amd64
MLX5LAB-INIT 3.16
[    3.9] mlx5_core 0000:01:00.0: firmware version: 16.35.2000
MLX5LAB-MLX5 4.76 rc=0
MLX5LAB-PORTS 5.00 eth1 eth2
SSH-READY 5.19
MLX5LAB-INIT 9.99
"""


def test_guest_phases_of_the_first_boot() -> None:
    assert guest_phases(CONSOLE) == {"guest_init_s": 3.16, "guest_mlx5_loaded_s": 4.76, "guest_ports_up_s": 5.0,
                                     "guest_ssh_ready_s": 5.19}
    assert guest_phases("MLX5LAB-INIT garbage\n") == {}


def test_phase_medians() -> None:
    rs = [IterationResult(i, Outcome.CLEAN, timings={"phase_start_s": s, "phase_guest_init_s": 3.0})
          for i, s in enumerate((1.0, 2.0, 9.0))]
    lines = phase_lines(rs)
    assert any("QEMU and device server start" in x and "2.00 s" in x for x in lines)
    assert any("kernel to init" in x and "3.00 s" in x for x in lines) and not any("teardown" in x for x in lines)

"""The card-up check reads the ports marker from a console that printk shares."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from mlx5lab.campaign.outcome import IterationResult, Outcome
from mlx5lab.scenarios.guest import boot_card, marker_ports

# seen in a fuzz run: the kernel's "Link up" landed inside the marker's line
CUT = "MLX5LAB-PORTS 10.19 eth1 eth2[   10.242751] mlx5_core 0000:01:00.1 eth2: Link up"


def test_marker_ports_stop_at_a_kernel_message() -> None:
    assert marker_ports("MLX5LAB-PORTS 3.31 eth1 eth2") == ["eth1", "eth2"]
    assert marker_ports(CUT) == ["eth1", "eth2"]
    assert marker_ports("[    9.1] virtio_net: x MLX5LAB-PORTS 3.3 eth1") == ["eth1"]
    assert marker_ports("MLX5LAB-PORTS 3.31") == [] and marker_ports("no marker") == []


def machine(console: str, answer: str | Exception) -> Any:  # noqa: ANN401 - a stand-in for vm.machine.Machine
    def run(command: str, timeout: float) -> SimpleNamespace:
        if isinstance(answer, Exception):
            raise answer
        return SimpleNamespace(stdout=answer)

    return SimpleNamespace(wait_ssh=lambda timeout: 3.4, console_text=lambda: console, console_offset=0, run=run)


def test_boot_card_asks_the_guest_when_the_marker_was_cut_apart() -> None:
    split = "MLX5LAB-PORTS 10.19 eth1[   10.24] mlx5_core 0000:01:00.1 eth2: Link up\n eth2\n"
    r = IterationResult(1, Outcome.INFRA)
    assert boot_card(machine(CUT + "\n", ""), None, r, 2, 60)  # the cut is parsed: no question asked
    assert boot_card(machine(split, "eth1\neth2\n"), None, r, 2, 60)
    assert not boot_card(machine(split, "eth1\n"), None, r, 2, 60)
    assert "the card did not come up" in r.detail and "1 of 2 mlx5 ports up: eth1" in r.detail
    r = IterationResult(1, Outcome.INFRA)
    assert not boot_card(machine("", ConnectionError("closed")), None, r, 2, 60)
    assert "no MLX5LAB-PORTS line (and asking the guest failed: closed)" in r.detail

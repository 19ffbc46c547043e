"""Every guest-triggered unload/reload path, five times in a row on the stock driver, healthy every time.

One guest boot serves every path but poweroff (a path's runs cycle through its usual argument sets, so
unbind-bind runs fn=0, fn=1, both, both in reverse, ...); a path that leaves the driver unhealthy fails its
test and the next test gets a fresh boot. Poweroff ends QEMU, so its five runs are five boots (about 8 s
each), two of them on a card without fast and force teardown, whose shutdown is the full unload.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlx5dev.card import CardConfig
from mlx5dev.mlx5.trace import read_trace
from mlx5image.build import GuestImage
from mlx5lab.paths import PathResult, get_path, run_path
from mlx5lab.vm.machine import Machine, MachineConfig

SPEEDS = [100000, 25000]
RUNS = 5


class Guest:
    """The module's booted guest; booted again when a test left it unhealthy or gone."""

    def __init__(self, image: GuestImage, folder: Path) -> None:
        self.image, self.folder = image, folder
        self.m: Machine | None = None
        self.boots = 0
        self.dirty = False

    def machine(self) -> Machine:
        if self.m is None or self.dirty or not self.m.alive():
            self.close()
            self.boots += 1
            cfg = MachineConfig(image=self.image, card=CardConfig.from_speeds(SPEEDS),
                                workdir=self.folder / f"boot-{self.boots}")
            self.m = Machine(cfg)
            self.m.start()
            self.m.wait_ssh(timeout=120)
            self.dirty = False
        return self.m

    def close(self) -> None:
        if self.m is not None:
            self.m.close()
            self.m = None


@pytest.fixture(scope="module")
def guest(image: GuestImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    g = Guest(image, tmp_path_factory.mktemp("paths"))
    yield g
    g.close()


def run_healthy(guest: Guest, name: str, arg_sets: list[dict[str, Any]] | None = None,
                runs: int = RUNS) -> list[PathResult]:
    """Run ``name`` ``runs`` times in a row, cycling through ``arg_sets`` (default: the path's variants);
    every run must leave the driver healthy."""
    m = guest.machine()
    results = []
    for i, args in zip(range(runs), itertools.cycle(arg_sets or list(get_path(name).variants)), strict=False):
        r = run_path(m, name, **args)
        results.append(r)
        if not r.healthy:
            guest.dirty = True
        assert r.healthy, f"run {i + 1}/{runs} of {name}:\n{r.explain()}\n(run folder: {m.workdir})"
    return results


def test_unbind_then_bind(guest: Guest) -> None:
    m = guest.machine()
    for i, fn in zip(range(RUNS), itertools.cycle(["0", "1", "both"]), strict=False):
        for name in ("unbind", "bind"):
            r = run_path(m, name, fn=fn)
            guest.dirty |= not r.healthy
            assert r.healthy, f"run {i + 1}/{RUNS}:\n{r.explain()}"


def test_unbind_bind(guest: Guest) -> None:
    run_healthy(guest, "unbind-bind")


def test_remove_rescan(guest: Guest) -> None:
    run_healthy(guest, "remove-rescan")


def test_devlink_reload(guest: Guest) -> None:
    run_healthy(guest, "devlink-reload")


def test_module_reload(guest: Guest) -> None:
    run_healthy(guest, "module-reload")


def test_ethtool_channels(guest: Guest) -> None:
    run_healthy(guest, "ethtool-channels", [{"fn": "0"}, {"fn": "1"}])


def test_ethtool_rings(guest: Guest) -> None:
    run_healthy(guest, "ethtool-rings", [{"fn": "0"}, {"fn": "1"}])


def test_stack_bond(guest: Guest) -> None:
    run_healthy(guest, "stack-bond")


def test_stack_vlan(guest: Guest) -> None:
    run_healthy(guest, "stack-vlan")


def test_reboot_through_init(guest: Guest) -> None:
    results = run_healthy(guest, "reboot")
    assert all(not r.args["force"] for r in results)


@pytest.mark.parametrize("boot", range(RUNS))
def test_poweroff_through_init(image: GuestImage, tmp_path: Path, boot: int) -> None:
    """Each poweroff ends its QEMU, so each run is its own boot; boots 3 and 4 use a card without fast and
    force teardown, whose shutdown (main.c: mlx5_try_fast_unload -> -EOPNOTSUPP) is the full unload."""
    full_unload = boot in (3, 4)
    card = CardConfig.from_speeds(SPEEDS, fast_teardown=not full_unload, force_teardown=not full_unload)
    with Machine(MachineConfig(image=image, card=card, workdir=tmp_path / "run")) as m:
        m.wait_ssh(timeout=120)
        r = run_path(m, "poweroff")
        assert r.healthy, r.explain()
        assert not m.alive()
        assert m.card is not None
        for fn in range(len(SPEEDS)):  # the shutdown the card's capabilities chose reached the card
            ops = [(r["op"], r.get("detail", "")) for r in read_trace(m.card.trace_file(fn)) if r.get("kind") == "cmd"]
            teardowns = [i for i, (op, _) in enumerate(ops) if op == "TEARDOWN_HCA"]
            assert len(teardowns) == 1, ops[-10:]
            if full_unload:  # graceful TEARDOWN_HCA, then the pages back and DISABLE_HCA
                after = [op for op, _ in ops[teardowns[0]:]]
                assert ops[teardowns[0]][1] == "graceful" and "DISABLE_HCA" in after, ops[-10:]
            else:  # one TEARDOWN_HCA PREPARE_FAST_TEARDOWN is the last command
                assert ops[-1] == ("TEARDOWN_HCA", "prepare fast teardown"), ops[-10:]

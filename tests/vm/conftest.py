"""Fixtures for tests that boot a real QEMU guest (the real Debian kernel and modules).

``image`` and ``release`` come from tests/conftest.py. The vmcore samples are made here, once per session
and only when a test asks for them, so every triage test reads the same dumps and no sample costs a second
boot: ``sysrq_sample`` (a deliberate crash, echo c > /proc/sysrq-trigger), ``nmi_sample`` (QMP inject-nmi with
unknown_nmi_panic, whose report never reaches the serial console) and ``vulnerable_campaign`` (a two-iteration
race campaign on the positive control, run with the ``mlx5lab`` command line; ``vulnerable_sample`` is its first
crashed iteration). A sample is an iteration folder: vmcore.kdump and console.log, and for a campaign's
iteration also oops.txt, result.json and the campaign's own triage.json. Tests must not write into a sample:
triage a copy (``sample_copy``).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from mlx5dev.card import CardConfig
from mlx5image.build import GuestImage
from mlx5lab.campaign.evidence import dump_vmcore
from mlx5lab.triage.debuginfo import DebugInfo, find_debuginfo
from mlx5lab.vm.machine import Machine, MachineConfig

Unavailable = Callable[[str], NoReturn]  # the ``unavailable`` fixture of tests/conftest.py
SYSRQ_CRASH = "echo c > /proc/sysrq-trigger"
NMI_SETUP = "echo 1 > /proc/sys/kernel/unknown_nmi_panic"  # as the race sets up every guest
VULNERABLE_RACE = ("--variant", "vulnerable", "--iterations", "2", "--seed", "3")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.vm)


@pytest.fixture
def machine(image: GuestImage, tmp_path: Path) -> Iterator[Machine]:
    with Machine(MachineConfig(image=image, workdir=tmp_path / "run")) as m:
        m.wait_ssh(timeout=120)
        yield m


def run_cli(*args: str, timeout: float = 540) -> subprocess.CompletedProcess[str]:
    """Run the ``mlx5lab`` command line of this environment (``$MLX5LAB_KERNEL`` picks its kernel too)."""
    return subprocess.run([sys.executable, "-m", "mlx5lab", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def debuginfo(release: str, unavailable: Unavailable) -> DebugInfo:
    """The guest kernel's debug info, which `make setup` fetches (``mlx5lab image --debuginfo``)."""
    info = find_debuginfo(release)
    if info is None:
        unavailable(f"the debug info for {release} is not cached: run `make setup` or "
                    f"`mlx5lab image --kernel {release} --debuginfo` (about 860 MB, once)")
    return info


def _crash_and_dump(image: GuestImage, folder: Path, crash: Callable[[Machine], None]) -> Path:
    """Boot the stock image with the card, ``crash`` it, and keep its vmcore and console in ``folder``."""
    with Machine(MachineConfig(image=image, card=CardConfig(), workdir=folder)) as m:
        m.wait_ssh(timeout=120)
        since = m.event_index()
        crash(m)
        if m.wait_panic(timeout=60, since=since) is None:
            pytest.fail(f"the guest did not panic; see {m.console_log}", pytrace=False)
        dump_vmcore(m, folder / "vmcore.kdump")
    return folder


@pytest.fixture(scope="session")
def sysrq_sample(image: GuestImage, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # busybox sh makes the write whatever root's login shell is, so the crashed task is always `sh`
    return _crash_and_dump(image, tmp_path_factory.mktemp("samples") / "sysrq",
                           lambda m: m.start_command(f"exec /bin/sh -c {shlex.quote(SYSRQ_CRASH)}"))


@pytest.fixture(scope="session")
def nmi_sample(image: GuestImage, tmp_path_factory: pytest.TempPathFactory) -> Path:
    def nmi(m: Machine) -> None:
        assert m.run(NMI_SETUP).status == 0
        time.sleep(1.0)  # let dropbear finish the command, so the NMI finds the guest idle, as in a hang
        assert m.qmp is not None
        m.qmp.execute("inject-nmi")

    return _crash_and_dump(image, tmp_path_factory.mktemp("samples") / "nmi", nmi)


@dataclass(frozen=True)
class Campaign:
    """A finished ``mlx5lab race`` campaign: its folder and how the command ended."""

    folder: Path
    returncode: int
    stdout: str
    stderr: str

    def journal(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in (self.folder / "journal.jsonl").read_text().splitlines()]

    def crashes(self) -> list[Path]:
        """The iteration folders whose outcome was a panic, in order."""
        return [self.folder / e["dir"] for e in self.journal() if e["outcome"] == "panic"]


@pytest.fixture(scope="session")
def vulnerable_campaign(image: GuestImage, debuginfo: DebugInfo, tmp_path_factory: pytest.TempPathFactory) -> Campaign:
    """The positive control raced twice, through the command line as a user runs it; its background triage
    reads the vmcores with the debug info."""
    out = tmp_path_factory.mktemp("campaigns") / "vulnerable"
    res = run_cli("race", *VULNERABLE_RACE, "--out", str(out))
    return Campaign(out, res.returncode, res.stdout, res.stderr)


@pytest.fixture(scope="session")
def vulnerable_sample(vulnerable_campaign: Campaign, release: str) -> Path:
    """The first crashed iteration of the positive control's campaign."""
    c = vulnerable_campaign
    crashes = c.crashes() if (c.folder / "journal.jsonl").is_file() else []
    if c.returncode != 1 or not crashes:
        pytest.fail(f"mlx5lab race {' '.join(VULNERABLE_RACE)} found no panic (exit status {c.returncode}):\n"
                    f"{c.stderr[-3000:]}", pytrace=False)
    folder = crashes[0]
    identity = json.loads((folder / "result.json").read_text())["identity"]
    assert identity["kernel_release"] == release, "the campaign ran another kernel than the image's"
    return folder


@pytest.fixture
def sample_copy(tmp_path: Path) -> Callable[[Path], Path]:
    """A folder of symbolic links to a sample's files, for a triage that writes its reports next to them."""

    def copy(sample: Path) -> Path:
        dst = tmp_path / sample.name
        dst.mkdir()
        for f in sample.iterdir():
            (dst / f.name).symlink_to(f)
        return dst

    return copy

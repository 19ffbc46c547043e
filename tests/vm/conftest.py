"""Fixtures for tests that boot a real QEMU guest (the real Debian kernel and modules)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlx5image.build import GuestImage, ensure_image
from mlx5lab.vm.machine import Machine, MachineConfig


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.vm)


@pytest.fixture(scope="session")
def image() -> GuestImage:
    return ensure_image(os.environ.get("MLX5LAB_KERNEL") or None, progress=lambda m: None)


@pytest.fixture
def machine(image: GuestImage, tmp_path: Path) -> Iterator[Machine]:
    with Machine(MachineConfig(image=image, workdir=tmp_path / "run")) as m:
        m.wait_ssh(timeout=120)
        yield m

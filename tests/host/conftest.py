"""Fixtures for tests that need what the set-up built or installed (QEMU, the guest image, Debian's kernel
headers and source, root) but boot no guest kernel. Every test here is marked ``host``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest

from mlx5image.build import GuestImage
from mlx5image.cache import cache_dir
from mlx5image.hosttools import find_tool
from mlx5image.vulnerable import debs as vuln_debs
from mlx5lab import Mlx5LabError
from mlx5lab.vm.qemu import find_qemu

Unavailable = Callable[[str], NoReturn]  # the ``unavailable`` fixture of tests/conftest.py


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.host)


@pytest.fixture(scope="session")
def qemu(unavailable: Unavailable) -> Path:
    """The QEMU with the vfio-user-pci client that the guests use (built by `make setup`)."""
    try:
        return find_qemu()
    except Mlx5LabError as exc:
        unavailable(str(exc))


@pytest.fixture(scope="session")
def linux_source_deb(image: GuestImage, unavailable: Unavailable) -> Path:
    """Debian's linux-source .deb of the guest kernel's exact version, kept in the cache by `make setup`
    (the positive control is built from it)."""
    package = vuln_debs.source_package(image.kernel_release)
    version = image.package_version.replace(":", "%3a")
    debs = sorted((cache_dir() / "debs").glob(f"{package}_{version}_*.deb"))
    if not debs:
        unavailable(f"no {package} {image.package_version} .deb in {cache_dir() / 'debs'} (the source of "
                    f"{image.kernel_release}): run `make setup`")
    return debs[-1]


@pytest.fixture(scope="session")
def mellanox_source(linux_source_deb: Path, unavailable: Unavailable,
                    tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The guest kernel's drivers/net/ethernet/mellanox (mlx5/core and mlxfw only), extracted once (~5 s).

    Tests must not change it: copy what they edit.
    """
    if find_tool("dpkg-deb") is None:
        unavailable("dpkg-deb is not installed (it is part of every Debian system)")
    return vuln_debs.extract_mlx5_tree(linux_source_deb, tmp_path_factory.mktemp("linux-source"), lambda _m: None)

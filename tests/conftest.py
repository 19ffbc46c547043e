"""Fixtures shared by the host tests (tests/host) and the guest tests (tests/vm).

The kernel release always comes from the guest image in use (``$MLX5LAB_KERNEL``, else the kernel Debian's
``linux-image-amd64`` depends on today), never from a release written into a test. Something the set-up
(``make setup``) provides but that is missing is reported by :func:`unavailable`: a failure under
``make test`` (``MLX5LAB_FULL_TESTS=1``, set-up has run), a skip with the reason otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest

from mlx5image.build import GuestImage, ensure_image
from mlx5image.errors import ImageError

Unavailable = Callable[[str], NoReturn]


SETUP_FIXTURES = {"unavailable", "image", "release"}  # what tests/unit must not use (it needs no set-up)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    unit = Path(__file__).parent / "unit"
    for item in items:
        used = SETUP_FIXTURES & set(getattr(item, "fixturenames", ()))
        if used and unit in Path(str(item.fspath)).parents:
            raise pytest.UsageError(f"{item.nodeid} uses {', '.join(sorted(used))}: a test that needs the set-up "
                                    "belongs in tests/host (no guest) or tests/vm, not in tests/unit")


def full_tests() -> bool:
    """True under ``make test``, which runs the set-up first: everything it provides must be there."""
    return bool(os.environ.get("MLX5LAB_FULL_TESTS"))


def _unavailable(message: str) -> NoReturn:
    if full_tests():
        pytest.fail(f"{message} (MLX5LAB_FULL_TESTS is set: `make setup` should have provided it)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def unavailable() -> Unavailable:
    """Call with what is missing and how to get it: fails under ``make test``, skips otherwise."""
    return _unavailable


@pytest.fixture(scope="session")
def image(unavailable: Unavailable) -> GuestImage:
    """The stock guest image of ``$MLX5LAB_KERNEL`` (default: Debian's current kernel), built once if needed."""
    try:
        return ensure_image(os.environ.get("MLX5LAB_KERNEL") or None, progress=lambda m: None)
    except ImageError as exc:
        unavailable(f"no guest image: {exc}")


@pytest.fixture(scope="session")
def release(image: GuestImage) -> str:
    """The guest image's kernel release, e.g. ``6.1.0-57-amd64``."""
    return image.kernel_release

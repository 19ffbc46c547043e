from __future__ import annotations

import pytest

from mlx5lab import verify


def test_zero_successes_closed_form() -> None:
    for n in (1, 3, 10, 40):
        assert verify.upper_bound(0, n) == pytest.approx(1 - 0.05 ** (1 / n), abs=1e-9)
    assert verify.upper_bound(0, 40) * 100 == pytest.approx(7.22, abs=0.01)


def test_known_value_and_cdf_at_bound() -> None:
    # Clopper-Pearson one-sided 95% upper bound for 1/10 is 0.3942 (Beta(2, 9) 0.95 quantile).
    b = verify.upper_bound(1, 10)
    assert b == pytest.approx(0.3942, abs=1e-4)
    assert verify.binom_cdf(1, 10, b) == pytest.approx(0.05, abs=1e-9)
    assert verify.upper_bound(10, 10) == 1.0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        verify.upper_bound(3, 2)
    with pytest.raises(ValueError):
        verify.upper_bound(0, 0)


def test_verdicts() -> None:
    v = verify.verdict(10, 10, 0, 40)
    assert v.exit_code == verify.EXIT_VERIFIED
    assert v.text.startswith("base: 10/10 panics; with the fix: 0/40 clean; at 95% confidence "
                             "the fixed panic rate is below 7.2%")
    assert verify.verdict(10, 10, 2, 40).exit_code == verify.EXIT_NOT_VERIFIED
    assert verify.verdict(0, 10, 0, 40).exit_code == verify.EXIT_NOT_VERIFIED
    assert verify.verdict(0, 0, 0, 0).exit_code == verify.EXIT_INFRA

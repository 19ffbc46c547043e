"""Statistics and verdict for fix verification (issue 12, part 3).

The upper bound on a panic rate is the exact (Clopper-Pearson) binomial bound:
the largest p with P(X <= k | n, p) >= alpha, i.e. the (1 - alpha) quantile of
Beta(k + 1, n - k) (Clopper and Pearson, Biometrika 26(4), 1934).  No declared
dependency (pyproject.toml) ships a beta quantile -- scipy is not one -- so the
bound is found by bisection on the binomial CDF, which is monotone decreasing
in p.  For k = 0 it has the closed form 1 - alpha ** (1 / n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EXIT_VERIFIED = 0
EXIT_NOT_VERIFIED = 1
EXIT_USAGE = 2
EXIT_INFRA = 3


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return math.fsum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


def upper_bound(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided exact upper bound on p after k successes in n trials."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k} n={n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha = 1 - confidence
    if k == n:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if binom_cdf(k, n, mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


@dataclass(frozen=True)
class Verdict:
    text: str
    exit_code: int


def verdict(base_panics: int, base_n: int, fix_panics: int, fix_n: int,
            confidence: float = 0.95) -> Verdict:
    """Verified means the base panicked at least once and the fix never did."""
    if base_n == 0 or fix_n == 0:
        return Verdict("no completed iterations: infrastructure failure only", EXIT_INFRA)
    pct = round(confidence * 100)
    bound = upper_bound(fix_panics, fix_n, confidence)
    fix_word = "clean" if fix_panics == 0 else "panics"
    text = (f"base: {base_panics}/{base_n} panics; with the fix: {fix_panics}/{fix_n} {fix_word}; "
            f"at {pct}% confidence the fixed panic rate is below {bound * 100:.1f}%")
    if base_panics == 0:
        return Verdict(text + "; not verified: the base never panicked, the schedule shows nothing",
                       EXIT_NOT_VERIFIED)
    if fix_panics:
        return Verdict(text + "; not verified: the fix still panics", EXIT_NOT_VERIFIED)
    return Verdict(text + "; fix verified", EXIT_VERIFIED)

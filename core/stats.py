"""Small statistics for replicated results: Student-t quantiles and confidence intervals."""
from __future__ import annotations

import math
import statistics


def t_cdf_two_sided(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer ``df`` (Abramowitz & Stegun 26.7.3-4, exact)."""
    if t <= 0:
        return 0.0
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    s = math.sin(theta)
    if df % 2 == 1:
        total, term = 0.0, 0.0
        if df > 1:
            term, total = 1.0, 1.0
            for k in range(3, df - 1, 2):  # 1 + 2/3 c^2 + 2*4/(3*5) c^4 + ...
                term *= (k - 1) / k * c2
                total += term
            total *= s * math.cos(theta)
        return min(1.0, 2.0 / math.pi * (theta + total))
    term, total = 1.0, 1.0
    for k in range(2, df - 1, 2):  # 1 + 1/2 c^2 + 1*3/(2*4) c^4 + ...
        term *= (k - 1) / k * c2
        total += term
    return min(1.0, s * total)


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (p > 0.5) of Student's t with ``df`` degrees of freedom, by bisection."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 < p < 1 and df >= 1, got p={p}, df={df}")
    want = 2 * p - 1
    lo, hi = 0.0, 1.0
    while t_cdf_two_sided(hi, df) < want:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf_two_sided(mid, df) < want:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2


def mean_ci(values: list[float], confidence: float = 0.95) -> tuple[float, float | None, float | None]:
    """(mean, low, high): a Student-t interval for the mean; no interval from fewer than two values."""
    if not values:
        raise ValueError("mean_ci needs at least one value")
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, None, None
    half = t_quantile(0.5 + confidence / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return m, m - half, m + half

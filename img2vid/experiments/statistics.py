"""Paired statistics over seeds: mean, spread, Student-t confidence intervals and wins.

Every arm is trained on the same seeds as the baseline (same initialisation, same data order), so the
quantity of interest is the per-seed difference ``d_s = acc_arm(s) - acc_baseline(s)``. Its 95 %
interval is ``mean(d) ± t_{0.975, n-1} · std(d) / sqrt(n)`` (Student t over seeds, ``std`` with the
``n - 1`` denominator). The verdict is read from the interval, never from the sign of the mean.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

__all__ = ["mean_interval", "mean_std", "paired_difference", "student_t_quantile", "verdict_word"]


def _student_t_cdf(x: float, df: int) -> float:
    """``P(T <= x)`` for Student's t with ``df`` degrees of freedom.

    Uses the regularised incomplete beta function, ``P(|T| > x) = I_{df/(df+x²)}(df/2, 1/2)``,
    evaluated with its continued fraction (Numerical Recipes, Sec. 6.4), accurate to ~1e-12.
    """
    if x == 0:
        return 0.5
    z = df / (df + x * x)
    tail = _betainc(df / 2.0, 0.5, z)  # P(|T| > |x|)
    return 1.0 - tail / 2.0 if x > 0 else tail / 2.0


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta ``I_x(a, b)`` for ``0 <= x <= 1``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def student_t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df >= 1`` degrees of freedom (bisection on the CDF).

    ``student_t_quantile(0.975, 4)`` is 2.776..., the factor of a 95 % interval over 5 seeds.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie in (0, 1), got {p!r}")
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"df must be an integer >= 1, got {df!r}")
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while _student_t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        mid = (low + high) / 2.0
        if _student_t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2.0


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``n - 1``; 0 for a single value)."""
    if len(values) == 0:
        raise ValueError("mean_std needs at least one value")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def mean_interval(values: Sequence[float], level: float = 0.95) -> dict[str, object]:
    """The mean of ``values`` over seeds with its Student-t interval: ``{"mean", "std", "ci": [low, high], "n"}``
    (``[nan, nan]`` for one value)."""
    mean, std = mean_std(values)
    n = len(values)
    if n > 1 and math.isfinite(std):
        half = student_t_quantile(0.5 + level / 2.0, n - 1) * std / math.sqrt(n)
        return {"mean": mean, "std": std, "ci": [mean - half, mean + half], "n": n}
    return {"mean": mean, "std": std, "ci": [math.nan, math.nan], "n": n}


def paired_difference(arm: Sequence[float], baseline: Sequence[float], level: float = 0.95) -> dict[str, object]:
    """Per-seed differences ``arm - baseline`` summarised: mean, std, Student-t interval and wins.

    Args:
        arm: the arm's accuracy per seed.
        baseline: the baseline's accuracy per seed, in the same seed order (paired).
        level: the interval's confidence level.

    Returns:
        ``{"mean", "std", "ci": [low, high], "wins", "n"}``; with one seed the interval is
        ``[nan, nan]`` (no spread can be estimated). ``wins`` counts seeds where the arm is strictly
        better.
    """
    if len(arm) != len(baseline):
        raise ValueError(f"paired values need the same seeds: {len(arm)} against {len(baseline)}")
    diffs = [a - b for a, b in zip(arm, baseline)]
    return {**mean_interval(diffs, level), "wins": sum(d > 0 for d in diffs)}


def verdict_word(ci: Sequence[float], above: str = "better", below: str = "worse") -> str:
    """``above`` (``"better"``) if the interval lies above zero, ``below`` (``"worse"``) if below it, else
    ``"no difference resolved"``."""
    low, high = ci
    if math.isnan(low) or math.isnan(high):
        return "no interval (one seed)"
    if low > 0:
        return above
    if high < 0:
        return below
    return "no difference resolved"

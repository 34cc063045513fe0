"""Confidence intervals used by every metric: Wilson, bootstrap, and t over seeds.

Pure functions of numbers: no I/O, no models. Bootstrap intervals are percentile
intervals and are deterministic for a seed, so a rerun reproduces a result file exactly.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy import stats as _scipy_stats


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion successes / n.

    Unlike the normal ("Wald") interval it stays inside [0, 1] and is sensible at
    0/n and n/n. With n = 0 nothing is known, so the interval is the whole (0.0, 1.0).
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # At 0/n and n/n the exact bound is 0 or 1; set it so rounding cannot move it.
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def bootstrap_indices(n: int, seed: int, n_boot: int = 1000) -> np.ndarray:
    """Resampled example indices, shape [n_boot, n], drawn with replacement.

    Exposed so that several statistics can share the very same resamples (a paired
    bootstrap): every caller with the same (n, seed, n_boot) gets the same matrix.
    """
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_boot, n)) if n > 0 else np.zeros((n_boot, 0), int)


def bootstrap_statistics(
    n: int,
    statistic: Callable[[np.ndarray], np.ndarray],
    seed: int,
    n_boot: int = 1000,
    alpha: float = 0.05,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paired bootstrap of a vector-valued statistic of n examples.

    `statistic(indices)` receives an index array into the n examples and returns a 1-d
    array (e.g. one selectivity per layer). It is called once on all examples in order
    (the point value) and once per resample. Because every component is recomputed on the
    same resampled indices, differences and maxima of paired quantities get the right,
    correlated uncertainty. Returns (value, lo, hi), each an array; a component whose
    resampled values are nan (e.g. undefined) gets nan bounds.
    """
    if n <= 0:
        raise ValueError("bootstrap needs at least one example")
    value = np.atleast_1d(np.asarray(statistic(np.arange(n)), dtype=float))
    draws = np.empty((n_boot, value.size))
    for b, idx in enumerate(bootstrap_indices(n, seed, n_boot)):
        draws[b] = np.atleast_1d(np.asarray(statistic(idx), dtype=float))
    lo, hi = np.percentile(draws, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return value, lo, hi


def bootstrap_statistic(
    n: int,
    statistic: Callable[[np.ndarray], float],
    seed: int,
    n_boot: int = 1000,
    alpha: float = 0.05,
) -> tuple[float, float, float]:
    """Scalar form of `bootstrap_statistics`: (value, lo, hi) of statistic(indices).

    Example, a paired difference of two per-example correctness vectors a and b:
    `bootstrap_statistic(len(a), lambda i: a[i].mean() - b[i].mean(), seed=0)`.
    """
    value, lo, hi = bootstrap_statistics(n, lambda idx: [statistic(idx)], seed, n_boot, alpha)
    return float(value[0]), float(lo[0]), float(hi[0])


def bootstrap_mean(
    values: np.ndarray, seed: int, n_boot: int = 1000, alpha: float = 0.05
) -> tuple[float, float, float]:
    """(mean, lo, hi) with a percentile bootstrap interval; deterministic for the seed.

    An empty input has no mean: (nan, nan, nan). One value gives (v, v, v).
    """
    values = np.asarray(values, dtype=float).ravel()
    if values.size == 0:
        return math.nan, math.nan, math.nan
    return bootstrap_statistic(values.size, lambda idx: values[idx].mean(), seed, n_boot, alpha)


def mean_interval_over_seeds(
    values: list[float], alpha: float = 0.05
) -> tuple[float, float, float]:
    """(mean, lo, hi) with a Student-t interval, for a handful (2-5) of training seeds.

    The t interval is wide for few seeds, which is the honest answer. With one value
    there is no spread to estimate, so the bounds are nan: (v, nan, nan), never a
    misleadingly zero-width interval. An empty list gives (nan, nan, nan).
    """
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size == 1:
        return mean, math.nan, math.nan
    half = _scipy_stats.t.ppf(1 - alpha / 2, df=x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return mean, float(mean - half), float(mean + half)


def welch_interval(
    a: list[float], b: list[float], alpha: float = 0.05
) -> tuple[float, float, float]:
    """(mean(a) − mean(b), lo, hi): Welch's t interval for a difference of means, for two
    small groups of training seeds whose spreads may differ (a stunted variant against
    the unstunted reference).

    Degrees of freedom by Welch–Satterthwaite. A group of fewer than two values has no
    spread to estimate: the bounds are nan. When both groups have no spread at all (every
    seed gave the same number) the difference is exact: (d, d, d).
    """
    x, y = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if x.size == 0 or y.size == 0:
        return math.nan, math.nan, math.nan
    diff = float(x.mean() - y.mean())
    if x.size < 2 or y.size < 2:
        return diff, math.nan, math.nan
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    half = _scipy_stats.t.ppf(1 - alpha / 2, df=df) * se
    return diff, diff - half, diff + half

"""Tests for benchmark.stats: Wilson, bootstrap (plain and paired), t over seeds."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.stats import (
    bootstrap_indices,
    bootstrap_mean,
    bootstrap_statistic,
    bootstrap_statistics,
    mean_interval_over_seeds,
    wilson_interval,
)


# --- Wilson ------------------------------------------------------------------------------


def test_wilson_known_value():
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.490, abs=1e-3)
    assert hi == pytest.approx(0.943, abs=1e-3)


def test_wilson_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and 0.2 < hi < 0.35  # 0/10 still leaves room up to ~0.28
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and 0.65 < lo < 0.8


def test_wilson_rejects_impossible_counts():
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
    with pytest.raises(ValueError):
        wilson_interval(-1, 10)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_contains_the_proportion(case):
    successes, n = case
    lo, hi = wilson_interval(successes, n)
    assert 0.0 <= lo <= successes / n <= hi <= 1.0


# --- bootstrap ---------------------------------------------------------------------------


def test_bootstrap_mean_is_deterministic_for_a_seed():
    values = np.random.default_rng(1).normal(size=100)
    assert bootstrap_mean(values, seed=7) == bootstrap_mean(values, seed=7)
    assert bootstrap_mean(values, seed=7) != bootstrap_mean(values, seed=8)


def test_bootstrap_mean_covers_the_mean_with_the_expected_width():
    values = np.random.default_rng(2).normal(loc=3.0, scale=2.0, size=400)
    mean, lo, hi = bootstrap_mean(values, seed=0, n_boot=2000)
    assert mean == pytest.approx(values.mean())
    assert lo < mean < hi
    normal_width = 2 * 1.96 * values.std(ddof=1) / math.sqrt(values.size)
    assert (hi - lo) == pytest.approx(normal_width, rel=0.15)


def test_bootstrap_mean_degenerate_inputs():
    assert all(math.isnan(v) for v in bootstrap_mean(np.array([]), seed=0))
    assert bootstrap_mean(np.array([5.0]), seed=0) == (5.0, 5.0, 5.0)
    assert bootstrap_mean(np.full(20, 0.25), seed=0) == pytest.approx((0.25, 0.25, 0.25))


def test_bootstrap_statistic_is_paired():
    # b is a shifted by exactly 1: on the same resampled indices the difference never
    # varies, so a paired interval has zero width. An unpaired one would not.
    a = np.random.default_rng(3).normal(size=50)
    b = a + 1.0
    value, lo, hi = bootstrap_statistic(a.size, lambda i: a[i].mean() - b[i].mean(), seed=0)
    assert (value, lo, hi) == pytest.approx((-1.0, -1.0, -1.0))


def test_bootstrap_statistic_point_value_uses_all_examples():
    values = np.arange(10.0)
    value, lo, hi = bootstrap_statistic(10, lambda i: values[i].max(), seed=0, n_boot=200)
    assert value == 9.0 and lo <= hi <= 9.0


def test_bootstrap_statistics_vector_shapes_and_order():
    x = np.random.default_rng(4).random((3, 80))
    value, lo, hi = bootstrap_statistics(80, lambda i: x[:, i].mean(axis=1), seed=0, n_boot=300)
    assert value.shape == lo.shape == hi.shape == (3,)
    assert np.allclose(value, x.mean(axis=1))
    assert np.all(lo <= value) and np.all(value <= hi)


def test_bootstrap_needs_examples():
    with pytest.raises(ValueError):
        bootstrap_statistic(0, lambda i: 0.0, seed=0)


def test_bootstrap_indices_reproducible():
    assert np.array_equal(bootstrap_indices(30, seed=5, n_boot=10), bootstrap_indices(30, 5, 10))
    assert bootstrap_indices(30, seed=5, n_boot=10).shape == (10, 30)


# --- t interval over seeds ---------------------------------------------------------------


def test_mean_interval_over_seeds_known_value():
    mean, lo, hi = mean_interval_over_seeds([1.0, 2.0, 3.0])
    half = 4.302653 * 1.0 / math.sqrt(3)  # t(0.975, df=2) * sd / sqrt(n)
    assert (mean, lo, hi) == pytest.approx((2.0, 2.0 - half, 2.0 + half))


def test_mean_interval_over_seeds_degenerate():
    mean, lo, hi = mean_interval_over_seeds([0.7])
    assert mean == 0.7 and math.isnan(lo) and math.isnan(hi)
    assert all(math.isnan(v) for v in mean_interval_over_seeds([]))
    assert mean_interval_over_seeds([0.5, 0.5]) == pytest.approx((0.5, 0.5, 0.5))


# --- Welch t interval for a difference of seed means ---------------------------------------


def test_welch_interval_matches_scipy_and_a_hand_computed_case():
    from scipy import stats as scipy_stats

    from benchmark.stats import welch_interval

    a, b = [0.0, 0.01, -0.01], [0.10, 0.12, 0.14]
    diff, lo, hi = welch_interval(a, b)
    ci = scipy_stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (diff, lo, hi) == pytest.approx((-0.12, ci.low, ci.high))
    # By hand: se^2 = 0.0001/3 + 0.0004/3; df = se^4 / ((0.0001/3)^2/2 + (0.0004/3)^2/2) = 2.941.
    se = math.sqrt(0.0005 / 3)
    df = (0.0005 / 3) ** 2 / ((0.0001 / 3) ** 2 / 2 + (0.0004 / 3) ** 2 / 2)
    assert df == pytest.approx(2.941, abs=1e-3)
    assert hi - diff == pytest.approx(scipy_stats.t.ppf(0.975, df) * se)
    assert hi < 0  # excludes 0: a significant difference


def test_welch_interval_degenerate():
    from benchmark.stats import welch_interval

    diff, lo, hi = welch_interval([1.0], [0.5, 0.7])
    assert diff == pytest.approx(0.4) and math.isnan(lo) and math.isnan(hi)  # one seed: no spread
    assert welch_interval([0.3, 0.3], [0.1, 0.1]) == pytest.approx((0.2, 0.2, 0.2))
    assert all(math.isnan(v) for v in welch_interval([], [1.0, 2.0]))

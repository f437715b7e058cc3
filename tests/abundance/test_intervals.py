"""Binomial intervals against closed-form and exact answers."""

import numpy as np
import pytest
from scipy import stats

from foramflow.abundance.intervals import proportion_interval, ratio_interval


@pytest.mark.parametrize("method", ["wilson", "clopper-pearson"])
@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (15, 300), (150, 300)])
def test_matches_scipy_binomtest(method, k, n):
    scipy_name = {"wilson": "wilson", "clopper-pearson": "exact"}[method]
    expected = stats.binomtest(k, n).proportion_ci(0.95, method=scipy_name)
    low, high = proportion_interval(k, n, method=method)
    assert low == pytest.approx(expected.low, abs=1e-9)
    assert high == pytest.approx(expected.high, abs=1e-9)


def test_zero_count_closed_forms():
    # Clopper–Pearson upper bound for 0/n is 1 − (α/2)^(1/n); Wilson's is z²/(n + z²).
    z = stats.norm.ppf(0.975)
    _, cp_high = proportion_interval(0, 10, method="clopper-pearson")
    w_low, w_high = proportion_interval(0, 10, method="wilson")
    assert cp_high == pytest.approx(1 - 0.025 ** (1 / 10))
    assert w_low == 0.0
    assert w_high == pytest.approx(z**2 / (10 + z**2))


def test_human_count_interval_wider_than_classifier_count():
    human = np.subtract(*proportion_interval(30, 300)[::-1])
    classifier = np.subtract(*proportion_interval(1000, 10_000)[::-1])
    assert human > 2.5 * classifier  # width ~ 1/sqrt(n): sqrt(10_000 / 300) ≈ 5.8


def test_clopper_pearson_never_undercovers():
    n, p = 40, np.linspace(0.01, 0.99, 99)
    k = np.arange(n + 1)
    low, high = proportion_interval(k, n, method="clopper-pearson", level=0.9)
    inside = (low[None, :] <= p[:, None]) & (p[:, None] <= high[None, :])
    coverage = (stats.binom.pmf(k[None, :], n, p[:, None]) * inside).sum(axis=1)
    assert coverage.min() >= 0.9 - 1e-9


def test_empty_sample_and_invalid_counts():
    low, high = proportion_interval([0, 2], [0, 4])
    assert np.isnan(low[0]) and np.isnan(high[0])
    assert 0 < low[1] < 0.5 < high[1] < 1
    with pytest.raises(ValueError):
        proportion_interval(5, 4)


def test_ratio_interval_maps_the_proportion_interval():
    low, high = ratio_interval(20, 80)  # a / b = 0.25, p = a / (a + b) = 0.2
    p_low, p_high = proportion_interval(20, 100)
    assert low == pytest.approx(p_low / (1 - p_low))
    assert high == pytest.approx(p_high / (1 - p_high))
    assert low < 0.25 < high

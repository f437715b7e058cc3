"""Confidence intervals for relative abundances computed from counts.

A relative abundance is ``k`` specimens of a taxon out of ``n`` counted. Treating the ``n`` as
a random sample of the sediment's assemblage, ``k`` is binomial and its uncertainty shrinks as
1/sqrt(n): a human count of about 300 specimens gives intervals several times wider than a
classifier's thousands of images, and the figures should show it.

Two standard intervals are offered (Brown, Cai & DasGupta 2001, *Interval estimation for a
binomial proportion*, Statistical Science 16, 101–133):

- ``"wilson"`` (default): the Wilson score interval. Coverage close to nominal on average, even
  for proportions near 0 and 1 where the textbook Wald interval collapses to zero width; it never
  leaves [0, 1]. Recommended by Brown et al. for n of a few tens and above.
- ``"clopper-pearson"``: the exact (beta-quantile) interval; guaranteed coverage of at least the
  nominal level, hence conservative (wider). Use it when an interval must never under-cover.

Both are computed in closed form from :mod:`scipy.stats` distributions and are vectorised over
arrays of counts.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from foramflow.errors import InvalidInput

INTERVAL_METHODS = ("wilson", "clopper-pearson")


def proportion_interval(
    successes, totals, *, level: float = 0.95, method: str = "wilson"
) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided confidence interval for binomial proportions ``successes / totals``.

    Parameters
    ----------
    successes, totals
        Counts (array-like, broadcast together). Where ``totals`` is 0 the interval is NaN.
    level
        Confidence level, e.g. 0.95.
    method
        ``"wilson"`` or ``"clopper-pearson"`` (see the module docstring).

    Returns
    -------
    low, high
        Arrays of proportions in [0, 1].
    """
    k, n = np.broadcast_arrays(np.asarray(successes, float), np.asarray(totals, float))
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("counts must satisfy 0 <= successes <= totals")  # callers count them
    alpha = 1.0 - level
    with np.errstate(invalid="ignore", divide="ignore"):
        if method == "wilson":
            z = stats.norm.ppf(1.0 - alpha / 2.0)
            p = k / n
            centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
            half = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
            low, high = centre - half, centre + half
        elif method == "clopper-pearson":
            low = np.where(k > 0, stats.beta.ppf(alpha / 2, k, n - k + 1), 0.0)
            high = np.where(k < n, stats.beta.ppf(1 - alpha / 2, k + 1, n - k), 1.0)
        else:
            raise InvalidInput(f"unknown interval method {method!r}; use one of {INTERVAL_METHODS}")
    empty = n == 0
    low = np.where(empty, np.nan, np.clip(low, 0.0, 1.0))
    high = np.where(empty, np.nan, np.clip(high, 0.0, 1.0))
    return low, high


def ratio_interval(
    numerator, denominator_rest, *, level: float = 0.95, method: str = "wilson"
) -> tuple[np.ndarray, np.ndarray]:
    """Interval for an odds-type ratio ``a / b`` of two disjoint counts.

    ``a / b = p / (1 - p)`` with ``p = a / (a + b)``, a monotone map, so the interval of ``p``
    maps onto an interval of the ratio (the standard conditional binomial interval for a
    ratio of Poisson counts).
    """
    a = np.asarray(numerator, float)
    b = np.asarray(denominator_rest, float)
    low, high = proportion_interval(a, a + b, level=level, method=method)
    with np.errstate(divide="ignore", invalid="ignore"):
        return low / (1 - low), high / (1 - high)

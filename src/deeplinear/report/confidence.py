"""Percentile-bootstrap confidence intervals of a median over seeds.

For values x₁…xₙ (one per seed) draw B = 2000 resamples of size n with replacement from
``numpy.random.default_rng(0)`` (fixed: the same report twice gives the same interval), take each
resample's median m*_b, and report [q_{α/2}, q_{1−α/2}] of the m*_b (α = 0.05) with the lower
bound rounded down and the upper one up to an observed m*_b (NumPy's ``method="lower"`` and
``"higher"``: no interpolation, so runs that never reach a target (``inf``) stay ``inf`` instead of
turning into NaN). Efron & Tibshirani (1993), ch. 13.
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95
SEED = 0
DESCRIPTION = (
    f"{LEVEL:.0%} percentile-bootstrap interval of the median over seeds "
    f"({RESAMPLES} resamples, NumPy default_rng({SEED}))"
)


def median_interval(values) -> tuple[float, float, float]:
    """(median, low, high) of ``values`` (NaN counts as ``inf``: a run that never got there)."""
    values = np.asarray(values, dtype=float).ravel()
    if values.size == 0:
        return np.nan, np.nan, np.nan
    values = np.where(np.isnan(values), np.inf, values)
    rng = np.random.default_rng(SEED)
    resamples = values[rng.integers(0, values.size, size=(RESAMPLES, values.size))]
    medians = np.sort(np.median(resamples, axis=1))
    tail = (1 - LEVEL) / 2
    low = np.quantile(medians, tail, method="lower")
    high = np.quantile(medians, 1 - tail, method="higher")
    return float(np.median(values)), float(low), float(high)


def median_bands(values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of ``values`` (seeds × steps, NaN counting as ``inf``): the median over seeds
    and a percentile-bootstrap interval of it, as ``median_interval`` but for every column at
    once (the loss curves' bands).

    Each column is sorted once; a resample draws n positions of the sorted column (a draw of
    n values with replacement, the same ``RESAMPLES`` position draws for every column), so its
    median is the middle order statistic(s) of the drawn positions: B gathers per column
    instead of B medians."""
    values = np.asarray(values, dtype=float)
    ordered = np.sort(np.where(np.isnan(values), np.inf, values), axis=0)
    n = ordered.shape[0]
    rng = np.random.default_rng(SEED)
    drawn = np.sort(rng.integers(0, n, size=(RESAMPLES, n)), axis=1)
    upper = ordered[drawn[:, n // 2]]
    lower = ordered[drawn[:, (n - 1) // 2]]
    with np.errstate(invalid="ignore"):
        medians = np.where(upper == lower, upper, 0.5 * (lower + upper))
    tail = (1 - LEVEL) / 2
    low = np.quantile(medians, tail, axis=0, method="lower")
    high = np.quantile(medians, 1 - tail, axis=0, method="higher")
    middle = np.where(
        ordered[n // 2] == ordered[(n - 1) // 2],
        ordered[n // 2],
        0.5 * (ordered[n // 2] + ordered[(n - 1) // 2]),
    )
    return middle, low, high

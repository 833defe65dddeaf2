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

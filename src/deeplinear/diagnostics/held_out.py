"""Held-out error of a ratings fit, measured inside the compiled loop at every record.

For entries (u_k, i_k) with ratings y_k and a baseline b_k (μ + user bias + item bias, or 0) the
prediction is ŷ_k = clip(b_k + W[u_k, i_k], lo, hi) with W = left · W_L never formed (a gather
of O(m d)); each split's RMSE = √(Σ_k w_k (ŷ_k − y_k)² / Σ w_k) and MAE = Σ_k w_k |ŷ_k − y_k| /
Σ w_k (w_k = 0 pads a split). The
training split is the entries the loss sums over, so ``train_rmse`` is the fit and
``validation_rmse``, ``test_rmse`` are what it generalizes to (NaN for an empty split).
Predictions are clipped to the rating scale for scoring only: the loss fits the raw values.
"""

from __future__ import annotations

from functools import reduce
from types import MappingProxyType
from typing import NamedTuple

import pyarrow as pa

from deeplinear.core.backend import jax, jnp
from deeplinear.objectives.measurement import entries

SPLITS = ("train", "validation", "test")
RMSE_COLUMNS = tuple(f"{split}_rmse" for split in SPLITS)  # what sweeps select and report by


class Entries(NamedTuple):
    """One split's entries: indices, ratings, baselines and weights (1; 0 pads a split to a
    size fixed by the fractions, so the splits of several seeds stack)."""

    rows: jax.Array  # (m,) int32
    cols: jax.Array  # (m,) int32
    ratings: jax.Array  # (m,) the ratings as given
    baseline: jax.Array  # (m,) μ + b_u + c_i at each entry (0 without biases)
    weights: jax.Array  # (m,) 1 = a held-out rating, 0 = padding


class HeldOutProbe(NamedTuple):
    """RMSE and MAE of the clipped predictions on the training, validation and test entries."""

    train: Entries
    validation: Entries
    test: Entries
    low: jax.Array  # the rating scale's ends (scalars)
    high: jax.Array

    columns = MappingProxyType(
        {f"{split}_{measure}": pa.float64() for split in SPLITS for measure in ("rmse", "mae")}
    )

    def measure(self, weights) -> dict:
        left, right = reduce(jnp.matmul, weights[:-1]), weights[-1]
        out = {}
        for split in SPLITS:
            part = getattr(self, split)
            rmse, mae = _errors(left, right, part, self.low, self.high)
            out[f"{split}_rmse"], out[f"{split}_mae"] = rmse, mae
        return out


def _errors(left, right, part: Entries, low, high):
    """(RMSE, MAE) of the clipped predictions on ``part`` (NaN when it is empty)."""
    if part.rows.shape[-1] == 0:
        nan = jnp.asarray(jnp.nan, dtype=left.dtype)
        return nan, nan
    predicted = part.baseline + entries(left, right, part.rows, part.cols, dense=False)
    error = jnp.clip(predicted, low, high) - part.ratings
    count = jnp.sum(part.weights)  # 0 (all padding): NaN
    return jnp.sqrt(jnp.sum(part.weights * error**2) / count), jnp.sum(
        part.weights * jnp.abs(error)
    ) / count

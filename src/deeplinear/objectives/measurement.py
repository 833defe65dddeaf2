"""Objectives that see a target only through measurements: matrix completion and sensing.

For the end-to-end map W = W1 ⋯ WL (n1 × n2) and m measurements y_k of an unknown M,

    f(W) = Σ_k w_k (⟨A_k, W⟩ − y_k)² + r0        (a sum of squares, no ½, as ``Objective``)

- ``Completion``: A_k = e_{i_k} e_{j_k}ᵀ, so ⟨A_k, W⟩ = W[i_k, j_k]. W is not formed (unless
  ≥ 1/16 of its entries are observed, ``entries``): with left = W1 ⋯ W_{L−1} (n1 × d) and
  right = W_L (d × n2), W[i, j] = left[i] · right[:, j], a gather of O(m d) per evaluation; the
  adjoint 𝒜*(r) = Σ_k r_k e_{i_k} e_{j_k}ᵀ is applied to a tall matrix by segment sums,
  O(m k).
- ``Sensing``: A_k dense (row k of ``operators`` is A_k flattened row-major), O(m n1 n2).

``weights`` w_k are 1 for a measurement and 0 for padding: problems drawn with a random count
(Bernoulli sampling) are padded to a capacity fixed by the run file, so several seeds stack into
one batch. Both are pytrees of arrays (``vmap`` batches them), like ``objective.Objective``.
"""

from __future__ import annotations

from functools import reduce
from typing import NamedTuple

import numpy as np

from deeplinear.core.backend import jax, jnp


def _left_right(weights):
    """(W1 ⋯ W_{L−1}, W_L): the end-to-end map as a product of two factors."""
    return reduce(jnp.matmul, weights[:-1]), weights[-1]


DENSE_FRACTION = 1 / 16  # ``entries``: W is formed when m ≥ this × n1 n2


def entries(left, right, rows, cols, dense: bool | None = None) -> jax.Array:
    """(left · right)[rows_k, cols_k] for every k. Gathered, O(m d) without forming the product,
    unless ``dense`` (default: m ≥ ``DENSE_FRACTION`` · n1 n2, decided on the static shapes):
    then the n1 × n2 product is formed and indexed. The gather's gradient is a scatter-add of
    m × d values, which XLA's CPU backend runs element by element: measured on 2 cores, 10×
    slower than the dense product for 100 × 100 (m = 2000, d = 100) and 4× for 1000 × 1000
    (m = 2·10⁵, d = 10); at scale (1 % observed) the dense W is never formed. The dense product
    is indexed flat (one index i·n2 + j per entry: its gradient 1.4× faster than the 2-d
    index's at 1000 × 1000, p = 0.2, on 2 cores)."""
    n1, n2 = left.shape[0], right.shape[1]
    if dense is None:
        dense = rows.shape[-1] >= DENSE_FRACTION * n1 * n2
    if dense:
        wide = jnp.int64 if n1 * n2 >= 2**31 else jnp.int32
        flat = rows.astype(wide) * n2 + cols.astype(wide)
        return (left @ right).reshape(-1)[flat]
    return jnp.einsum("ka,ak->k", left[rows], right[:, cols])


def _residual(objective, weights) -> jax.Array:
    """√w_k (⟨A_k, W⟩ − y_k), shape (m,)."""
    return jnp.sqrt(objective.weights) * (objective.predict(weights) - objective.values)


def _loss(objective, weights) -> jax.Array:
    """Σ_k w_k (⟨A_k, W⟩ − y_k)² + r0, without ½."""
    error = objective.predict(weights) - objective.values
    return jnp.sum(objective.weights * error**2) + objective.floor


def _notebook_loss(objective, weights) -> jax.Array:
    """Not defined for measurements (the loop records NaN)."""
    return jnp.asarray(jnp.nan, dtype=objective.values.dtype)


class Completion(NamedTuple):
    """Observed entries (rows[k], cols[k]) of M with values y_k: f(W) = Σ w_k (W_ij − y_k)² + r0."""

    rows: jax.Array  # (m,) int32
    cols: jax.Array  # (m,) int32
    values: jax.Array  # (m,)
    weights: jax.Array  # (m,) 1 = measurement, 0 = padding
    floor: jax.Array  # r0, scalar (0: nothing irreducible is known)

    def predict(self, weights) -> jax.Array:
        """W[rows_k, cols_k] for every k: gathered from the two factors (no dense W), or from W
        formed densely when at least ``DENSE_FRACTION`` of its entries are observed."""
        left, right = _left_right(weights)
        return entries(left, right, self.rows, self.cols)

    residual = _residual
    loss = _loss
    notebook_loss = _notebook_loss

    def adjoint_product(self, r, B, n1: int) -> jax.Array:
        """𝒜*(r) B (n1 × k) for r (m,) and B (n2 × k), by segment sums over the rows: O(m k)."""
        return jax.ops.segment_sum(r[:, None] * B[self.cols], self.rows, num_segments=n1)

    def adjoint_t_product(self, r, C, n2: int) -> jax.Array:
        """𝒜*(r)ᵀ C (n2 × k) for r (m,) and C (n1 × k), by segment sums over the columns."""
        return jax.ops.segment_sum(r[:, None] * C[self.rows], self.cols, num_segments=n2)


class Sensing(NamedTuple):
    """Linear measurements y_k = ⟨A_k, M⟩: f(W) = Σ_k w_k (⟨A_k, W⟩ − y_k)² + r0."""

    operators: jax.Array  # (m, n1·n2): row k is A_k flattened row-major
    values: jax.Array  # (m,)
    weights: jax.Array  # (m,) 1 = measurement, 0 = padding
    floor: jax.Array  # r0, scalar

    def predict(self, weights) -> jax.Array:
        """⟨A_k, W⟩ for every k (W formed: a sensing operator is dense anyway)."""
        left, right = _left_right(weights)
        return self.operators @ (left @ right).reshape(-1)

    residual = _residual
    loss = _loss
    notebook_loss = _notebook_loss

    def adjoint(self, r, n1: int, n2: int) -> jax.Array:
        """𝒜*(r) = Σ_k r_k A_k (n1 × n2)."""
        return (r @ self.operators).reshape(n1, n2)

    def adjoint_product(self, r, B, n1: int) -> jax.Array:
        """𝒜*(r) B (n1 × k) for r (m,) and B (n2 × k)."""
        return self.adjoint(r, n1, B.shape[0]) @ B

    def adjoint_t_product(self, r, C, n2: int) -> jax.Array:
        """𝒜*(r)ᵀ C (n2 × k) for r (m,) and C (n1 × k)."""
        return self.adjoint(r, C.shape[0], n2).T @ C


Measured = (Completion, Sensing)  # ``isinstance(objective, Measured)``: not fully observed


def is_measured(objective) -> bool:
    """True for a completion or sensing objective (no ``factor``, ``target``, ``covariance``)."""
    return isinstance(objective, Measured)


def count(objective) -> int:
    """The number of real measurements m (padding excluded); on host arrays."""
    return int(np.sum(np.asarray(objective.weights) > 0))


def sampling_scale(objective, shape: tuple[int, int]) -> float | jax.Array:
    """E‖𝒜(E)‖² / ‖E‖² for a generic E of ``shape``: m / (n1 n2) for completion (the sampling
    rate p), Σ_k ‖A_k‖² / (n1 n2) for sensing (≈ 1 for N(0, 1/m) entries). It stands for the
    input second moment's mean eigenvalue tr S / d of a fully observed loss."""
    n = shape[0] * shape[1]
    if isinstance(objective, Completion):
        return jnp.sum(objective.weights) / n
    return jnp.sum(objective.weights[:, None] * objective.operators**2) / n

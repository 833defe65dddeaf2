"""Objectives that see a target only through measurements: matrix completion and sensing.

For the end-to-end map W = W1 ⋯ WL (n1 × n2) and m measurements y_k of an unknown M,

    f(W) = Σ_k w_k (⟨A_k, W⟩ − y_k)² + r0        (a sum of squares, no ½, as ``Objective``)

- ``Completion``: A_k = e_{i_k} e_{j_k}ᵀ, so ⟨A_k, W⟩ = W[i_k, j_k]. W is not formed (unless
  ≥ 1/16 of its entries are observed, ``entries``): with left = W1 ⋯ W_{L−1} (n1 × d) and
  right = W_L (d × n2), W[i, j] = left[i] · right[:, j], a gather of O(m d) per evaluation; the
  adjoint 𝒜*(r) = Σ_k r_k e_{i_k} e_{j_k}ᵀ is applied to a tall matrix by segment sums,
  O(m k).
  ``Lines`` lays Ω out by the lines of W (``by_row``, ``by_col``: built once, on the host, by
  ``completion``) so that per-line sums — ALS's Grams, the preconditioner's blocks — are
  batched products instead of a scatter-add of m values per output.
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
    """Σ_k w_k (⟨A_k, W⟩ − y_k)² + r0 (+ the penalty, where the objective has one), no ½."""
    error = objective.predict(weights) - objective.values
    total = jnp.sum(objective.weights * error**2) + objective.floor
    penalty = getattr(objective, "penalty", None)
    return total if penalty is None else total + penalty.value(weights)


class Penalty(NamedTuple):
    """λ (Σ_i n_i ‖left_i‖² + Σ_j n_j ‖right_{:, j}‖²), left = W1 ⋯ W_{L−1}, right = W_L: a
    ridge on the two factors weighted by each line's observed count n_i (ALS-WR, Zhou,
    Wilkinson, Schreiber & Pan 2008), so a user with many ratings is not shrunk more than one
    with few relative to their data term."""

    lam: jax.Array  # λ ≥ 0, scalar
    row_counts: jax.Array  # (n1,) n_i: observed entries in row i
    col_counts: jax.Array  # (n2,) n_j

    def value(self, weights) -> jax.Array:
        left, right = _left_right(weights)
        rows = jnp.sum(self.row_counts * jnp.sum(left**2, axis=1))
        cols = jnp.sum(self.col_counts * jnp.sum(right**2, axis=0))
        return self.lam * (rows + cols)


def _notebook_loss(objective, weights) -> jax.Array:
    """Not defined for measurements (the loop records NaN)."""
    return jnp.asarray(jnp.nan, dtype=objective.values.dtype)


class Lines(NamedTuple):
    """Ω laid out by the lines (rows, or columns) of W: slot s holds up to K observed entries of
    line ``segments[s]``, with the other index of each (its column, for a row), √w_k and
    √w_k y_k; padding has scale 0. A line with c entries has ⌈c/K⌉ slots: slot i < n is line
    i's first, the rest follow. So Σ_{k in line i} w_k f_k f_kᵀ is a batched F_sᵀF_s over the
    slots (F_s = √w ⊙ features[others_s], K × d) and a segment sum of S d² values, not of m d².
    The shapes depend only on (n, m) (``line_shape``), so problems of one shape stack."""

    segments: jax.Array  # (S,) int32, the line of each slot
    others: jax.Array  # (S, K) int32, the other index of each entry (0: padding)
    scale: jax.Array  # (S, K) √w_k (0: padding)
    values: jax.Array  # (S, K) √w_k y_k


def line_shape(n: int, m: int) -> tuple[int, int]:
    """(S, K) of the ``Lines`` of m entries over n lines: K = ⌈m/4n⌉ (≈ a quarter of a line's
    mean count: padding ≤ n K ≈ m/4), S = n + ⌈m/K⌉ (every line's first slot, and room for
    ⌈c_i/K⌉ − 1 ≤ c_i/K more of each). Measured on 2 cores (3000 × 2500, m = 4.4·10⁵, r = 8):
    24 ms a side against 28 ms for K = ⌈m/n⌉ and 110 ms for the scatter-add."""
    k = max(1, -(-m // (4 * n)))
    return n + -(-m // k), k


def lay_out(lines, others, values, weights, n: int) -> Lines:
    """The ``Lines`` of the entries with weight > 0 (host arrays; padding is left out):
    ``lines`` the index each is grouped by (rows, for ``by_row``), over n lines."""
    lines, others = np.asarray(lines, np.int64), np.asarray(others)
    values, weights = np.asarray(values, np.float64), np.asarray(weights, np.float64)
    S, K = line_shape(n, lines.size)
    keep = np.flatnonzero(weights > 0)
    order = keep[np.argsort(lines[keep], kind="stable")]
    line = lines[order]
    counts = np.bincount(line, minlength=n)
    position = np.arange(order.size) - (np.cumsum(counts) - counts)[line]
    extra = np.maximum(-(-counts // K) - 1, 0)  # slots beyond each line's first
    first_extra = n + np.cumsum(extra) - extra
    chunk = position // K
    slot = np.where(chunk == 0, line, first_extra[line] + chunk - 1)
    segments = np.zeros(S, np.int32)
    segments[:n] = np.arange(n)
    segments[n : n + extra.sum()] = np.repeat(np.arange(n), extra)
    grid = lambda dtype: np.zeros((S, K), dtype)
    other, scale, value = grid(np.int32), grid(np.float64), grid(np.float64)
    root = np.sqrt(weights[order])
    other[slot, position % K] = others[order]
    scale[slot, position % K] = root
    value[slot, position % K] = root * values[order]
    return Lines(segments, other, scale, value)


def lines_values(shape: tuple[int, int], m: int) -> float:
    """Float64-sized values the two ``Lines`` of m entries of an n1 × n2 matrix hold (an int32
    index is half a value): ≈ 6 m."""
    total = 0.0
    for n in shape:
        S, K = line_shape(n, m)
        total += S * K * 2.5 + S * 0.5
    return total


def abstract_lines(n: int, m: int) -> Lines:
    """The ``Lines`` of m entries over n lines as ``jax.ShapeDtypeStruct`` (for tracing)."""
    S, K = line_shape(n, m)
    spec = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype)
    return Lines(
        spec((S,), jnp.int32), spec((S, K), jnp.int32), spec((S, K), jnp.float64),
        spec((S, K), jnp.float64),
    )  # fmt: skip


def line_sums(lines: Lines, features, count: int, with_rhs: bool = True):
    """For each line i of ``lines``: G_i = Σ_k w_k f_k f_kᵀ and b_i = Σ_k w_k y_k f_k over its
    entries, f_k = features[other_k] (features: (·, d)); (count, d, d) and (count, d)."""
    F = features[lines.others] * lines.scale[..., None]  # (S, K, d)
    G = jax.lax.dot_general(F, F, (((1,), (1,)), ((0,), (0,))))
    G = jax.ops.segment_sum(G, lines.segments, count)
    if not with_rhs:
        return G
    b = jax.ops.segment_sum(jnp.einsum("ska,sk->sa", F, lines.values), lines.segments, count)
    return G, b


class Completion(NamedTuple):
    """Observed entries (rows[k], cols[k]) of M with values y_k: f(W) = Σ w_k (W_ij − y_k)² + r0
    (+ ``penalty``), with Ω laid out by row and by column (``Lines``; built by
    ``completion``)."""

    rows: jax.Array  # (m,) int32
    cols: jax.Array  # (m,) int32
    values: jax.Array  # (m,)
    weights: jax.Array  # (m,) 1 = measurement, 0 = padding
    floor: jax.Array  # r0, scalar (0: nothing irreducible is known)
    by_row: Lines | None = None
    by_col: Lines | None = None
    penalty: Penalty | None = None  # a ridge on the factors (ratings: ``regularization``)

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


def completion(rows, cols, values, shape, weights=None, floor=0.0) -> Completion:
    """The ``Completion`` of entries (rows[k], cols[k]) = values[k] of an n1 × n2 matrix
    (``shape``), weights 1 unless given (0: padding), with its ``Lines``; host arrays."""
    rows, cols = np.asarray(rows).astype(np.int32), np.asarray(cols).astype(np.int32)
    values = np.asarray(values, np.float64)
    weights = np.ones(values.shape) if weights is None else np.asarray(weights, np.float64)
    n1, n2 = shape
    return Completion(
        rows, cols, values, weights, np.float64(floor),
        lay_out(rows, cols, values, weights, n1), lay_out(cols, rows, values, weights, n2),
    )  # fmt: skip


def laid_out(objective, shape):
    """``objective`` with its ``Lines`` when it is a completion built without them (a user's own
    ``Completion(rows, cols, values, weights, floor)``); anything else as it is."""
    if not isinstance(objective, Completion) or objective.by_row is not None:
        return objective
    o = objective
    out = completion(o.rows, o.cols, o.values, shape, o.weights, float(np.asarray(o.floor)))
    return out._replace(penalty=o.penalty)


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

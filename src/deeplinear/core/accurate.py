"""Losses evaluated in double-double arithmetic, to tell round-off from progress.

A float64 evaluation of ``‖W X − Y‖²`` near its minimum is dominated by rounding: each residual
entry ``Σ_k W_ik X_kj − Y_ij`` carries an error of about ``u·Σ_k |W_ik X_kj|`` (u = 2⁻⁵³), which
at the notebook's size is ~1e-27 in the loss, far above the true minimum (~5e-29). Here products
and sums are carried as unevaluated pairs ``hi + lo`` (Dekker's split and ``two_prod``, Knuth's
``two_sum``), so every residual entry is exact to about ``(k + 2)·u²·Σ_k |W_ik X_kj|`` and the
loss to a relative error of a few u, plus ``ERROR_FACTOR·u²·‖ |W| |X| ‖²``-sized terms that
:func:`loss_error_bound` states. Costs ~30 float64 operations per multiply-add: use at
checkpoints, not inside the loop.
"""

from __future__ import annotations

from functools import reduce

import numpy as np

U = 2.0**-53  # unit round-off of float64
_SPLITTER = 2.0**27 + 1.0


def two_sum(a, b):
    """a + b = s + e exactly (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _split(a):
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


def two_prod(a, b):
    """a · b = p + e exactly (Dekker; barring overflow)."""
    p = a * b
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    return p, ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo


def matmul(a_hi, a_lo, b) -> tuple[np.ndarray, np.ndarray]:
    """(a_hi + a_lo) @ b for a float64 ``b``, as a double-double pair (hi, lo)."""
    a_hi, a_lo, b = (np.asarray(x, dtype=np.float64) for x in (a_hi, a_lo, b))
    hi = np.zeros((a_hi.shape[0], b.shape[1]))
    lo = np.zeros_like(hi)
    for k in range(a_hi.shape[1]):
        p, e = two_prod(a_hi[:, k : k + 1], b[k : k + 1, :])
        hi, error = two_sum(hi, p)
        lo = lo + (error + e)
    lo = lo + a_lo @ b  # second order: its own rounding is ~u² relative
    return two_sum(hi, lo)


def product(matrices) -> tuple[np.ndarray, np.ndarray]:
    """M1 M2 ⋯ Mk as a double-double pair."""
    first, *rest = [np.asarray(m, dtype=np.float64) for m in matrices]
    return reduce(lambda acc, m: matmul(*acc, m), rest, (first, np.zeros_like(first)))


def residual(weights, X, Y) -> np.ndarray:
    """W1 ⋯ WL X − Y, each entry exact to ~u² of its terms (X None: W1 ⋯ WL − Y)."""
    hi, lo = product([*weights, X] if X is not None else weights)
    d, e = two_sum(hi, -np.asarray(Y, dtype=np.float64))
    return d + (e + lo)


def loss(weights, X, Y) -> float:
    """‖W1 ⋯ WL X − Y‖² (population: X None, Y = A), in double-double arithmetic."""
    r = residual(weights, X, Y)
    return float(np.sum(r * r))  # terms ≥ 0: relative error ≤ log₂(size)·u


def loss_error_bound(weights, X, Y) -> float:
    """A bound on |loss(weights, X, Y) − exact| : 2‖r‖·δ + δ² + 4u·loss, δ = ‖(k+2)²u² |W||X|‖."""
    magnitudes = reduce(lambda a, b: a @ b, [np.abs(np.asarray(w)) for w in weights])
    if X is not None:
        magnitudes = magnitudes @ np.abs(np.asarray(X))
    magnitudes = magnitudes + np.abs(np.asarray(Y))
    k = max(np.asarray(w).shape[1] for w in weights) + len(weights)
    delta = float(np.linalg.norm((k + 2) ** 2 * U**2 * magnitudes))
    value = loss(weights, X, Y)
    return 2 * np.sqrt(value) * delta + delta**2 + 4 * U * value


MAX_ACCURATE_TERMS = 30_000_000  # multiply-adds above which r is computed in float64 only


def final_loss(weights, X, Y) -> tuple[float, float] | None:
    """The loss of ``weights`` in double-double and its error bound (X None: the population loss,
    Y = A), or None where it would take more than ``MAX_ACCURATE_TERMS`` multiply-adds."""
    terms = sum(np.size(w) for w in weights) * (1 if X is None else np.shape(X)[1])
    if terms * max(np.shape(w)[1] for w in weights) > MAX_ACCURATE_TERMS:
        return None
    return loss(weights, X, Y), loss_error_bound(weights, X, Y)


def numerical_rank(values: np.ndarray, shape) -> int:
    if values.size == 0 or values[0] == 0:
        return 0
    return int(np.sum(values > max(shape) * np.finfo(np.float64).eps * values[0]))


def range_basis(X: np.ndarray) -> np.ndarray:
    """An orthonormal basis P (n × ρ) of range(Xᵀ), ρ the numerical rank of X."""
    P, s, _ = np.linalg.svd(np.asarray(X, dtype=np.float64).T, full_matrices=False)
    return P[:, : numerical_rank(s, X.shape)]


def irreducible_loss(X: np.ndarray, Y: np.ndarray) -> tuple[float, str]:
    """min_W ‖W X − Y‖², and how it was evaluated (double-double where affordable)."""
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    P = range_basis(X)
    if P.shape[1] == 0:
        return float(np.sum(Y**2)), how_irreducible(X, Y)
    W0 = np.linalg.lstsq(X.T, Y.T, rcond=None)[0].T
    r = residual((W0,), X, Y) if affordable(X, Y) else Y - W0 @ X
    return float(np.sum((r - (r @ P) @ P.T) ** 2)), how_irreducible(X, Y)


def affordable(X, Y) -> bool:
    """Is the double-double residual Y − W₀X within ``MAX_ACCURATE_TERMS`` multiply-adds?"""
    return np.shape(Y)[0] * np.size(X) <= MAX_ACCURATE_TERMS


def how_irreducible(X, Y) -> str:
    if not np.any(X):
        return "X = 0: nothing of Y is reachable"
    if affordable(X, Y):
        return "‖r − r P Pᵀ‖², r = Y − W₀X in double-double at the least-squares W₀"
    return "‖r − r P Pᵀ‖², r = Y − W₀X in float64 (too large for double-double)"

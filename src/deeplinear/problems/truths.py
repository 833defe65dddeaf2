"""A measured problem's truth M, given densely or as factors, reduced to its modes without a full
SVD: M = U diag(s) Vᵀ with orthonormal U (n1 × r), V (n2 × r) and s > 0, largest first.

- **Factors** ``U`` (n1 × k), ``s`` (k), ``V`` (n2 × k), not necessarily orthonormal: two thin
  QRs, U = Q_U R_U and V = Q_V R_V, and the SVD of the k × k core R_U diag(s) R_Vᵀ (O((n1+n2)k²)).
- **A dense truth** (n1 × n2): a randomized range finder (Halko, Martinsson & Tropp 2011, alg.
  4.1 with a fixed seed) of k + 8 columns, k doubling from 16, accepted once the SVD of QᵀM
  shows a numerical rank below k *and* the residual ‖M − QQᵀM‖_F is below the rank cut-off
  (a low-rank truth is exact to round-off: O(n1 n2 k) work); a truth that is not low rank
  (k would pass min(n1, n2)/4) takes the full SVD it needs.
The numerical rank counts singular values above max(n1, n2)·ε·σ₁, as ``numpy.linalg.matrix_rank``.
"""

from __future__ import annotations

import numpy as np

from deeplinear.errors import UsageError

OVERSAMPLING = 8
FIRST_COLUMNS = 16


def _cut(sv: np.ndarray, shape: tuple[int, int]) -> float:
    return max(shape) * np.finfo(np.float64).eps * (sv[0] if sv.size else 0.0)


def _signed(U, s, V):
    """Signs fixed (each left vector's largest entry positive): the same modes every time."""
    flip = np.where(U[np.abs(U).argmax(axis=0), np.arange(U.shape[1])] < 0, -1.0, 1.0)
    return U * flip, s, V * flip


def factor_modes(U: np.ndarray, s: np.ndarray, V: np.ndarray, field: str):
    """(U, s, V) of M = U diag(s) Vᵀ, orthonormal and ordered, from any factors of it."""
    shape = (U.shape[0], V.shape[0])
    Q_U, R_U = np.linalg.qr(U)
    Q_V, R_V = np.linalg.qr(V)
    a, sv, bt = np.linalg.svd((R_U * s) @ R_V.T)
    r = int(np.sum(sv > _cut(sv, shape)))
    if r == 0:
        raise UsageError(f"{field}: U diag(s) Vᵀ is zero: give the factors of the matrix measured")
    return _signed(Q_U @ a[:, :r], sv[:r], Q_V @ bt[:r].T)


def dense_modes(M: np.ndarray, field: str):
    """(U, s, V) of a dense truth: the range finder while it is low rank, else a full SVD."""
    n1, n2 = M.shape
    rng = np.random.default_rng(0)
    k = FIRST_COLUMNS
    while k + OVERSAMPLING <= min(n1, n2) // 4:
        Q, _ = np.linalg.qr(M @ rng.standard_normal((n2, k + OVERSAMPLING)))
        B = Q.T @ M
        a, sv, bt = np.linalg.svd(B, full_matrices=False)
        cut = _cut(sv, (n1, n2))
        r = int(np.sum(sv > cut))
        if r < k and np.linalg.norm(M - Q @ B) <= cut:
            return _modes_or_zero(Q @ a[:, :r], sv[:r], bt[:r].T, field)
        k *= 2
    u, sv, vt = np.linalg.svd(M, full_matrices=False)
    r = int(np.sum(sv > _cut(sv, (n1, n2))))
    return _modes_or_zero(u[:, :r], sv[:r], vt[:r].T, field)


def _modes_or_zero(U, s, V, field):
    if s.size == 0:
        raise UsageError(f"{field}: truth is zero: give the matrix the values measure")
    return _signed(U, s, V)


def check_explains(predicted: np.ndarray, values: np.ndarray, field: str, given: str) -> None:
    """Refuse a truth that predicts the observed ``values`` no better than zero does
    (‖𝒜(M) − y‖ ≥ ‖y‖): label noise never does that; factors of another matrix, transposed or
    shuffled ones do (≈ √2 ‖y‖)."""
    misfit, size = float(np.linalg.norm(predicted - values)), float(np.linalg.norm(values))
    if misfit >= size and size > 0:
        raise UsageError(
            f"{field}: {given} does not match the observed values (‖𝒜(M) − y‖ = {misfit:.3g} ≥ "
            f"‖y‖ = {size:.3g}): give the truth of these measurements, or leave it out"
        )

"""The reachable minimum: the smallest loss any iterate of this architecture can have.

For the end-to-end map W = W1 ⋯ WL, whose rank is at most the narrowest width k, and the sample
loss ``‖W X − Y‖²``: let P be an orthonormal basis of range(Xᵀ) (rank ρ). Then

    ‖W X − Y‖² = ‖W X P − Y P‖² + ‖Y − Y P Pᵀ‖²,

the second term (``irreducible``) no linear map reaches — label noise, or the rounding of
Y = A·X — and the first is a rank-k approximation problem in W X P, which is onto every
output × ρ matrix of rank ≤ k; by Eckart–Young its minimum is ``Σ_{i>k} σ_i(Y P)²`` (``rank``),
the reduced-rank-regression residual. For the population loss ‖W − A‖², irreducible = 0 and
rank = Σ_{i>k} σ_i(A)². Deep linear nets have no spurious local minima (Baldi & Hornik 1989;
Kawaguchi 2016): any stall above this value is a saddle, a plateau, or the method's own floor.

**Round-off.** ``irreducible`` is evaluated as ``‖r − r P Pᵀ‖²`` with r = Y − W₀X computed in
double-double arithmetic (``accurate``) at the float64 least-squares W₀; it agrees with exact
rational arithmetic to ~1e-40 at the notebook's size (5.25e-29 for seed 0; the plain float64
``‖Y − Y Q Qᵀ‖²`` gives 7.2e-27, its own rounding error). The loop's loss ``‖W Lᵀ − T‖² + r0``
is float64: near the minimum it cannot resolve an excess below ``resolution``, measured on the
problem itself (see :func:`reachable_minimum`). A run is *converged* when its excess is within it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import accurate

MAX_ACCURATE_TERMS = 30_000_000  # multiply-adds above which r is computed in float64 only
KINDS = ("round-off", "noise", "rank")


@dataclass(frozen=True)
class Floor:
    """The reachable minimum of a problem at an architecture, and what makes it up."""

    value: float  # irreducible + rank: the best loss any iterate can have
    kinds: tuple[str, ...]  # which of "noise", "rank" exceed the resolution; else "round-off"
    irreducible: float  # ‖Y − Y P Pᵀ‖²: what no linear map reaches
    rank_part: float  # Σ_{i>k} σ_i²: what no map of rank ≤ width reaches
    width: int  # k, the narrowest width
    target_rank: int  # rank of the reduced target Y P (or of A)
    resolution: float  # round-off of the loop's float64 loss near the minimum
    how: str  # how ``irreducible`` and ``resolution`` were computed

    def excess(self, loss):
        """The loss above the reachable minimum."""
        return np.asarray(loss, dtype=np.float64) - self.value

    def reached(self, loss):
        """True where the excess is within the loop's round-off."""
        return self.excess(loss) <= self.resolution

    def reachable(self, goal: float) -> bool:
        """Can some iterate have a loss ≤ ``goal``? (Not when it lies within the resolution.)"""
        return bool(goal > self.value + self.resolution)

    def why(self) -> str:
        parts = []
        if "rank" in self.kinds:
            parts.append(
                f"rank: width {self.width} < rank {self.target_rank} of the target leaves "
                f"{self.rank_part:.3g} (Eckart–Young)"
            )
        if "noise" in self.kinds:
            parts.append(f"noise: {self.irreducible:.3g} of Y no linear map reaches")
        if not parts:
            parts.append(f"round-off: {self.irreducible:.2e} of Y = A·X no linear map reaches")
        return "; ".join(parts)

    def as_dict(self) -> dict:
        return {
            "value": self.value,
            "kinds": list(self.kinds),
            "irreducible": self.irreducible,
            "rank": self.rank_part,
            "width": self.width,
            "target_rank": self.target_rank,
            "resolution": self.resolution,
            "how": self.how,
        }


def widths_of(weights) -> list[int]:
    """(output, hidden…, input) of weights (W1, …, WL)."""
    return [np.shape(weights[0])[0], *(np.shape(w)[1] for w in weights)]


def _numerical_rank(values: np.ndarray, shape) -> int:
    if values.size == 0 or values[0] == 0:
        return 0
    return int(np.sum(values > max(shape) * np.finfo(np.float64).eps * values[0]))


def range_basis(X: np.ndarray) -> np.ndarray:
    """An orthonormal basis P (n × ρ) of range(Xᵀ), ρ the numerical rank of X."""
    P, s, _ = np.linalg.svd(np.asarray(X, dtype=np.float64).T, full_matrices=False)
    return P[:, : _numerical_rank(s, X.shape)]


def irreducible_loss(X: np.ndarray, Y: np.ndarray) -> tuple[float, str]:
    """min_W ‖W X − Y‖², and how it was evaluated (double-double where affordable)."""
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    P = range_basis(X)
    if P.shape[1] == 0:
        return float(np.sum(Y**2)), _how(X, Y)
    W0 = np.linalg.lstsq(X.T, Y.T, rcond=None)[0].T
    r = accurate.residual((W0,), X, Y) if _affordable(X, Y) else Y - W0 @ X
    return float(np.sum((r - (r @ P) @ P.T) ** 2)), _how(X, Y)


def _affordable(X, Y) -> bool:
    """Is the double-double residual Y − W₀X within ``MAX_ACCURATE_TERMS`` multiply-adds?"""
    return np.shape(Y)[0] * np.size(X) <= MAX_ACCURATE_TERMS


def _how(X, Y) -> str:
    if not np.any(X):
        return "X = 0: nothing of Y is reachable"
    if _affordable(X, Y):
        return "‖r − r P Pᵀ‖², r = Y − W₀X in double-double at the least-squares W₀"
    return "‖r − r P Pᵀ‖², r = Y − W₀X in float64 (too large for double-double)"


def reachable_minimum(problem, widths, objective=None) -> Floor:
    """The :class:`Floor` of ``problem`` for a net of these ``widths`` (output, …, input).

    ``resolution`` is measured, not assumed: at W_k, the best rank-k map computed in float64
    from the loop's own reduced data (L, T), it is the larger of (a) the loop's float64 loss
    minus its double-double value and (b) that value minus the floor — what representing the
    problem in float64 costs — times 2, and at least ``k·u²·‖T‖²`` (the rounding of the residual
    entries) and ``32·u·floor`` (of the sum itself).
    """
    objective = problem.objective() if objective is None else objective
    k = int(min(widths))
    if problem.X is None or problem.Y is None:
        irreducible, how = 0.0, "population loss: nothing is irreducible"
        reduced = np.asarray(problem.A, dtype=np.float64)
    else:
        # the objective already holds min_W ‖WX − Y‖² (``irreducible_loss``): not computed twice
        irreducible, how = float(objective.floor), _how(problem.X, problem.Y)
        reduced = np.asarray(problem.Y, dtype=np.float64) @ range_basis(problem.X)
    sigma = np.linalg.svd(reduced, compute_uv=False) if reduced.size else np.zeros(0)
    target_rank = _numerical_rank(sigma, reduced.shape)
    rank_part = float(np.sum(sigma[k:target_rank] ** 2)) if target_rank > k else 0.0
    value = irreducible + rank_part
    resolution = _resolution(problem, objective, k, value)
    kinds = tuple(
        name for name, part in (("noise", irreducible), ("rank", rank_part)) if part > resolution
    ) or ("round-off",)
    return Floor(value, kinds, irreducible, rank_part, k, target_rank, resolution, how)


def _best_map(objective, k: int) -> np.ndarray:
    """The rank-≤k minimiser of ‖W Lᵀ − T‖² in float64: T_k (Lᵀ)⁺."""
    T = np.asarray(objective.target, dtype=np.float64)
    U, s, Vt = np.linalg.svd(T, full_matrices=False)
    T_k = (U[:, :k] * s[:k]) @ Vt[:k]
    if objective.factor is None:
        return T_k
    return np.linalg.lstsq(np.asarray(objective.factor, dtype=np.float64), T_k.T, rcond=None)[0].T


def _resolution(problem, objective, k: int, value: float) -> float:
    T = np.asarray(objective.target, dtype=np.float64)
    columns = T.shape[1] if T.ndim == 2 else 1
    statistical = columns * accurate.U**2 * float(np.sum(T**2))
    floor = 32 * accurate.U * value
    if not T.size or not np.any(T):
        return max(statistical, floor, np.finfo(np.float64).tiny)
    W = _best_map(objective, k)
    in_loop = float(objective.loss((W,)))
    X = problem.X if problem.Y is not None else None
    Y = problem.Y if problem.Y is not None else problem.A
    if X is not None and not _affordable(X, Y):
        return max(statistical, floor)
    exact = accurate.loss((W,), X, Y)
    measured = 2 * max(abs(in_loop - exact), exact - value)
    return max(measured, statistical, floor)

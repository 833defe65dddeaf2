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

**Measured problems** (completion, sensing: :func:`measured_minimum`). The reachable minimum
min_{rank W ≤ k} Σ_k w_k (⟨A_k, W⟩ − y_k)² has no closed form in general (rank-constrained
completion is NP-hard). What is known: (a) noise-free with a truth M of rank ≤ k whose loss is
rounding: 0, attained by M; (b) completion with k ≥ min(#observed rows, #observed columns), or
≥ the rank of the zero-filled interpolant P_Ω(y): 0, attained by an interpolant; sensing with
k ≥ min(n1, n2): the least-squares residual of the operator (small problems); (c) otherwise
(noise, or a width below the truth's rank) the floor is **unknown** (kind ``unknown``,
``known = False``): 0 is a lower bound and the excess is measured against it; the truth's own
loss f(M) (rank ≤ k) is an upper bound, and m·σ² (label noise σ) what the noise is expected to
leave at M — an estimate, not a bound (a rank-k fit absorbs part of the noise). A verdict never
says "converged to the floor" of an unknown floor unless the loss is at 0 itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

import numpy as np

from deeplinear.core import accurate
from deeplinear.objectives.measurement import Completion

KINDS = ("round-off", "noise", "rank", "interpolation", "unknown")


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
    known: bool = True  # False: ``value`` is only a lower bound (kind "unknown")
    upper: float | None = None  # a loss some iterate attains (the truth's), when known
    estimate: float | None = None  # m·σ²: what label noise leaves at the truth (not a bound)
    note: str = ""  # what is known of an unknown floor, or how a measured one was found
    # ``rounding_sensitivity`` of the balanced factors of the best map the resolution was
    # measured at (None: a measured problem, no gauge to compare)
    sensitivity: float | None = None

    def excess(self, loss):
        """The loss above the reachable minimum."""
        return np.asarray(loss, dtype=np.float64) - self.value

    def reached(self, loss):
        """True where the excess is within the loop's round-off."""
        return self.excess(loss) <= self.resolution

    def resolution_at(self, weights, right=None) -> float:
        """The round-off of these weights' loss: ``resolution``, measured at the balanced best
        map, times how much worse their gauge rounds (``rounding_sensitivity`` against the best
        map's), never less. Weights W1 G, G⁻¹W2 with a mixing, ill-conditioned G have the
        product of the balanced ones, but rounding each factor moves it up to κ(G)² further
        (an upper estimate: 1–150× the double-double excess of such rounded factors, measured
        in tests/test_gauge_round_off.py)."""
        if not self.sensitivity or weights is None:
            return self.resolution
        ratio = rounding_sensitivity(weights, right) / self.sensitivity
        return self.resolution * max(1.0, float(ratio)) if np.isfinite(ratio) else self.resolution

    def reachable(self, goal: float) -> bool:
        """Can some iterate have a loss ≤ ``goal``? (Not when it lies within the resolution.)"""
        return bool(goal > self.value + self.resolution)

    def why(self) -> str:
        if not self.known or "interpolation" in self.kinds:
            return self.note
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
            "known": self.known,
            "upper": self.upper,
            "estimate": self.estimate,
            "why": self.why(),
        }


def reported_loss(floor: Floor, loss: float, weights, X, Y) -> tuple[float, float | None]:
    """A run's reported final loss from its float64 ``loss`` and its final ``weights``: near
    convergence (the excess within ``floor.resolution``, where the float64 digits are rounding)
    the weights' double-double loss and its error bound (``accurate.final_loss``), elsewhere, or
    where that is unaffordable or unavailable (``X`` and ``Y`` None: a measured problem), the
    float64 loss with bound None. Every table, summary and finding reports this value."""
    loss = float(loss)
    if not np.isfinite(loss) or Y is None or not bool(floor.reached(loss)):
        return loss, None
    exact = accurate.final_loss(tuple(np.asarray(w) for w in weights), X, Y)
    return (loss, None) if exact is None else exact


def rounding_sensitivity(weights, right=None) -> float:
    """E‖δ(W1 ⋯ WL R)‖_F² / u² when every entry of every layer is rounded by an independent
    relative error of size u (first order; R = ``right``, the identity if None):
    Σ_j Σ_ab (W_j)_ab² ‖column a of W_{<j}‖² ‖row b of W_{>j} R‖². Invariant to diagonal gauges
    (W_j D, D⁻¹W_{j+1}: each entry's rounding is relative); it grows with a gauge that mixes."""
    layers = [np.asarray(w, dtype=np.float64) for w in weights]
    after = [] if right is None else [np.asarray(right, dtype=np.float64)]
    total = 0.0
    for j, layer in enumerate(layers):
        left = reduce(np.matmul, layers[:j]) if j else np.eye(layer.shape[0])
        rest = [*layers[j + 1 :], *after]
        tail = reduce(np.matmul, rest) if rest else np.eye(layer.shape[1])
        total += float(np.sum(left**2, axis=0) @ (layer**2) @ np.sum(tail**2, axis=1))
    return total


def balanced_factors(W: np.ndarray, depth: int) -> list[np.ndarray]:
    """W = U S Vᵀ as ``depth`` balanced factors U S^{1/L}, S^{1/L}, …, S^{1/L} Vᵀ (its rank)."""
    U, s, Vt = np.linalg.svd(np.asarray(W, dtype=np.float64), full_matrices=False)
    r = max(accurate.numerical_rank(s, W.shape), 1)
    root = s[:r] ** (1.0 / depth)
    if depth == 1:
        return [W]
    middle = [np.diag(root) for _ in range(depth - 2)]
    return [U[:, :r] * root, *middle, root[:, None] * Vt[:r]]


def widths_of(weights) -> list[int]:
    """(output, hidden…, input) of weights (W1, …, WL)."""
    return [np.shape(weights[0])[0], *(np.shape(w)[1] for w in weights)]


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
        irreducible, how = float(objective.floor), accurate.how_irreducible(problem.X, problem.Y)
        reduced = np.asarray(problem.Y, dtype=np.float64) @ accurate.range_basis(problem.X)
    sigma = np.linalg.svd(reduced, compute_uv=False) if reduced.size else np.zeros(0)
    target_rank = accurate.numerical_rank(sigma, reduced.shape)
    rank_part = float(np.sum(sigma[k:target_rank] ** 2)) if target_rank > k else 0.0
    value = irreducible + rank_part
    resolution = _resolution(problem, objective, k, value)
    kinds = tuple(
        name for name, part in (("noise", irreducible), ("rank", rank_part)) if part > resolution
    ) or ("round-off",)
    right = None if objective.factor is None else np.asarray(objective.factor).T
    best = balanced_factors(_best_map(objective, k), len(widths) - 1)
    sensitivity = rounding_sensitivity(best, right)
    return Floor(
        value, kinds, irreducible, rank_part, k, target_rank, resolution, how,
        sensitivity=sensitivity if sensitivity > 0 else None,
    )  # fmt: skip


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
    if X is not None and not accurate.affordable(X, Y):
        return max(statistical, floor)
    exact = accurate.loss((W,), X, Y)
    measured = 2 * max(abs(in_loop - exact), exact - value)
    return max(measured, statistical, floor)


MAX_DENSE_INTERPOLANT = 4_000_000  # n1·n2 up to which P_Ω(y)'s rank is computed densely
MAX_DENSE_LSTSQ = 20_000_000  # m·n1·n2 up to which a sensing least squares is solved densely
ROUNDING_SLACK = 1024  # f(M) within this × k·u²·Σy² is rounding: the truth attains 0


def measured_minimum(problem, k: int, objective=None) -> Floor:
    """The :class:`Floor` of a completion or sensing problem (``measured_problem``) at width k
    (see the module docstring: 0 where the truth or an interpolant attains it, else unknown)."""
    objective = problem.objective() if objective is None else objective
    obs = problem.measurements
    keep = np.asarray(obs.weights) > 0
    y = np.asarray(obs.values, dtype=np.float64)[keep]
    energy = float(np.sum(y**2))
    tiny = np.finfo(np.float64).tiny
    statistical = max(k * accurate.U**2 * energy, tiny)
    m, r = int(keep.sum()), problem.rank
    upper = None
    if problem.has_truth and r <= k:
        U, s, V = problem.modes()
        root = np.sqrt(np.asarray(s, dtype=np.float64))
        upper = float(objective.loss((U * root, (V * root).T)))  # the loop's own float64 loss
        if upper <= ROUNDING_SLACK * statistical:
            # an iterate holds M in some other gauge (left G, G⁻¹ right): its rounding too
            G = np.random.default_rng(0).standard_normal((r, r)) + 2 * np.eye(r)
            gauged = float(objective.loss((U * root @ G, np.linalg.solve(G, (V * root).T))))
            resolution = max(2 * max(upper, gauged), statistical)
            how = (
                f"noise-free with a truth of rank {r} ≤ width {k}: the truth attains 0; "
                f"resolution: twice the loop's float64 loss at the truth's factors, balanced "
                f"({upper:.2g}) and in a generic gauge ({gauged:.2g}), at least k·u²·Σy²"
            )
            return Floor(0.0, ("round-off",), 0.0, 0.0, k, r, resolution, how)
    interpolant = _interpolant(problem, k, y, keep, statistical)
    if interpolant is not None:
        return interpolant
    estimate = m * problem.noise**2 if problem.noise else None
    parts = ["0 is a lower bound"]
    if problem.noise:
        noise = f"label noise σ = {problem.noise:.3g}"
        parts.append(f"{noise} leaves m·σ² = {estimate:.3g} at the truth (an estimate)")
    if upper is not None:
        parts.append(f"the truth attains {upper:.4g} (an upper bound)")
    elif problem.has_truth:
        parts.append(f"width {k} < rank {r} of the truth: no Eckart–Young through the sampling")
    lead = (
        f"unknown: no closed form for a rank-constrained {problem.kind} fit (NP-hard in general); "
    )
    note = lead + "; ".join(parts)
    how = "no closed form: the excess is measured against the lower bound 0"
    return Floor(
        0.0, ("unknown",), 0.0, 0.0, k, r, statistical, how, known=False, upper=upper,
        estimate=estimate, note=note,
    )  # fmt: skip


def _interpolant(problem, k: int, y, keep, statistical) -> Floor | None:
    """The floor where an iterate of rank ≤ k fits every measurement (completion), or the
    operator's least-squares residual is the floor (sensing, k ≥ min(n1, n2)); else None."""
    n1, n2 = problem.shape
    obs = problem.measurements
    if isinstance(obs, Completion):  # observed entries
        rows = np.asarray(obs.rows)[keep]
        cols = np.asarray(obs.cols)[keep]
        bound = min(np.unique(rows).size, np.unique(cols).size)
        how = f"width {k} ≥ min(observed rows, observed columns) = {bound}"
        if bound > k and n1 * n2 <= MAX_DENSE_INTERPOLANT:
            dense = np.zeros((n1, n2))
            dense[rows, cols] = y
            bound = int(np.linalg.matrix_rank(dense))
            how = f"width {k} ≥ rank {bound} of the zero-filled interpolant P_Ω(y)"
        if bound > k:
            return None
        note = f"interpolation: {how}: an iterate fits every observation, loss 0"
        return Floor(0.0, ("interpolation",), 0.0, 0.0, k, problem.rank, statistical, how,
                     note=note)  # fmt: skip
    m = y.size
    if k < min(n1, n2) or m * n1 * n2 > MAX_DENSE_LSTSQ:
        return None
    A = np.asarray(obs.operators, dtype=np.float64)[keep]
    solution = np.linalg.lstsq(A, y, rcond=None)[0]
    residual = float(np.sum((A @ solution - y) ** 2))
    resolution = max(statistical, 2 * abs(residual) * 1e-12)
    value = residual if residual > resolution else 0.0
    how = f"width {k} ≥ min(n1, n2): every W is reachable; the operator's least squares"
    note = f"interpolation: {how} leaves {value:.3g}"
    return Floor(value, ("interpolation",), value, 0.0, k, problem.rank, resolution, how,
                 note=note)  # fmt: skip


def recovery_resolution(problem, floor: Floor) -> float:
    """The recovery error ‖W − M‖_F/‖M‖_F below which the loop cannot resolve it: the loss's
    resolution as an error, √(resolution / Σ y²) (the loss is ≈ Σy² e² for a sampling that sees
    W − M as it sees M), and at least 8u (the probe's own rounding)."""
    obs = problem.measurements
    keep = np.asarray(obs.weights) > 0
    energy = float(np.sum(np.asarray(obs.values, dtype=np.float64)[keep] ** 2))
    scale = np.sqrt(floor.resolution / energy) if energy > 0 else 0.0
    return float(max(scale, 8 * accurate.U))

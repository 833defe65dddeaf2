"""Levenberg-Marquardt with adaptive damping, solved through the product structure.

Each iteration solves the damped Gauss-Newton system for the reduced residual r = W Lᵀ − T,

    (JᵀJ + λ I) δ = −Jᵀ r,

tries w + η δ, and keeps it if the loss fell. With the gain ratio ρ = actual / predicted
reduction (predicted: ‖r‖² − ‖r + Jδ‖²), an accepted step sets λ ← λ·max(1/3, 1 − (2ρ − 1)³)
and ν ← 2, a rejected one λ ← λν, ν ← 2ν (Nielsen 1999; Madsen, Nielsen & Tingleff 2004). A
solve that fails or produces no decrease is a rejected step: the run never crashes, and the table
counts both (``rejected_steps``, ``failed_solves``). As in optimistix, a step is a descent
(``AbstractDampedGaussNewton.descend``: the damped step for the current λ, by each method's
``solve``) followed by a search (``NielsenDamping``: accept or reject, and the next λ).
The damping also fixes the gauge: the minimum-norm solution of the undamped system is the limit.

``lm``, depth 2, solves the system **exactly** without forming JᵀJ: eliminating δ1 by a Schur
complement (M = W2 S W2ᵀ + λI, S = LᵀL) leaves A δ2 K + λ δ2 = B with A = W1ᵀW1 and
K = S − S W2ᵀ M⁻¹ W2 S, solved in the eigenbases of A and K. K is built without cancellation from
the SVD of Z = W2 Lᵀ: K = Lᵀ[(I − VVᵀ) + V diag(λ/(σ² + λ)) Vᵀ]L. For the population loss
(L = I) K is never formed: the solve costs O(d h²). Depth ≥ 3 uses the CG solver of ``gn-cg``
with a tight tolerance. Where CG solves the system, the factors are rebalanced after each
accepted step (W_iᵀW_i = W_{i+1}W_{i+1}ᵀ, same product; ``rebalance`` overrides): a gauge move
that keeps the structured preconditioner of ``gn-cg`` exact.

``gn-cg`` solves the same system matrix-free for any depth by preconditioned conjugate gradients
(lineax) on v ↦ Jᵀ(Jv) + λv built from ``jvp``/``vjp``. The preconditioner inverts each layer's
exact Gauss-Newton block approximately, as a Kronecker product with split damping:
(P_iᵀP_i + π√λ I)⁻¹ V (Q_i S Q_iᵀ + √λ/π I)⁻¹.

On a measured objective (completion, sensing) both ``lm`` (any depth) and ``gn-cg`` solve the
system in parameter space by CG through ``jax.linearize``/``vjp`` of the measured residual, with
a block-diagonal preconditioner (for completion the exact per-row and per-column blocks of W1
and W_L): ``_measured.cg_solve``. λ₀ = τ·s·max diag of the fully observed JᵀJ, s the sampling
scale (its expectation).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar, NamedTuple

import pyarrow as pa

from deeplinear.core import linalg
from deeplinear.core.backend import jax, jnp
from deeplinear.core.model import partial_products, tree_add
from deeplinear.methods import _measured as measured
from deeplinear.methods._base import AbstractMethod, flag, integer, number
from deeplinear.methods._gauge import gauge_flops, remove_gauge
from deeplinear.methods.cost import (
    EIGH,
    QR,
    SVD,
    Measurements,
    loss_flops,
    parameters,
    residual_rows,
)


class LMState(NamedTuple):
    learning_rate: jax.Array
    damping: jax.Array  # λ
    nu: jax.Array
    rejected: jax.Array  # steps rejected so far (including failed solves)
    failed: jax.Array  # linear solves that failed so far
    cg_steps: jax.Array  # CG iterations so far


def jacobian_product(weights, objective, delta):
    """J δ for the reduced residual: (Σ_i P_i δ_i Q_i) Lᵀ."""
    return jax.jvp(objective.residual, (weights,), (delta,))[1]


def initial_damping(weights, objective, tau: float):
    """τ · max diag(JᵀJ): the largest diagonal entry of any layer's block (Q S Qᵀ) ⊗ (PᵀP)."""
    if measured.is_measured(objective):
        return measured.initial_damping(weights, objective, tau)
    S = objective.covariance()
    lefts, rights = partial_products(weights)
    biggest = jnp.asarray(0.0)
    for p, q in zip(lefts, rights):
        left = 1.0 if p is None else jnp.max(jnp.sum(p * p, axis=0))
        if q is None:
            right = 1.0 if S is None else jnp.max(jnp.diag(S))
        else:
            qs = q if S is None else q @ S
            right = jnp.max(jnp.sum(qs * q, axis=1))
        biggest = jnp.maximum(biggest, left * right)
    return tau * biggest


def schur_solve(weights, objective, lam):
    """The exact solution of (JᵀJ + λI) δ = −Jᵀr for depth 2 (see the module docstring)."""
    W1, W2 = weights
    R = objective.residual(weights)
    RL = R if objective.factor is None else R @ objective.factor  # ½ ∇_W f
    G1, G2 = RL @ W2.T, W1.T @ RL
    Z = objective.apply_factor(W2)  # W2 Lᵀ, h × k
    M = Z @ Z.T + lam * jnp.eye(Z.shape[0])
    ZL = Z if objective.factor is None else Z @ objective.factor  # W2 S
    B = -G2 + W1.T @ linalg.solve(M, G1.T).T @ ZL
    a, P = linalg.eigh(W1.T @ W1)
    _, sigma, Vt = linalg.svd(Z, full_matrices=True)  # Vt: k × k, rows past h span ker Z
    sigma = jnp.zeros(Vt.shape[0]).at[: sigma.size].set(sigma)
    shrink = lam / (sigma**2 + lam)  # eigenvalues of K̃ = I − Zᵀ(ZZᵀ + λ)⁻¹Z, never by subtraction
    Bp = P.T @ B  # rows in A's eigenbasis
    if objective.factor is None:  # K = K̃: diagonal in Vt's basis
        delta2 = ((Bp @ Vt.T) / (a[:, None] * shrink[None, :] + lam)) @ Vt
    else:  # K = CᵀC with C = diag(√shrink) Vt L, diagonalised by the SVD of C
        _, c, Qt = linalg.svd(
            jnp.sqrt(shrink)[:, None] * (Vt @ objective.factor), full_matrices=True
        )
        k = jnp.zeros(Qt.shape[0]).at[: c.size].set(c**2)
        delta2 = ((Bp @ Qt.T) / (a[:, None] * k[None, :] + lam)) @ Qt
    delta2 = P @ delta2
    delta1 = -linalg.solve(M, (G1 + W1 @ objective.apply_factor(delta2) @ Z.T).T).T
    # the exact solution has no gauge component; remove the round-off amplified there by 1/λ
    return remove_gauge(weights, (delta1, delta2)), jnp.asarray(True), jnp.asarray(0)


def _mode_preconditioner(weights, objective, lam):
    """An approximate inverse of JJᵀ + λI on residuals, diagonal in two orthonormal bases.

    JJᵀ y = Σ_i (P_i P_iᵀ) y (Q̃_iᵀ Q̃_i) with Q̃_i = Q_i Lᵀ. In the bases U of range(W1 ⋯ W_{L−1})
    and V of range(Q̃_1ᵀ), completed by their orthogonal complements, each term is replaced by its
    diagonal (averaged over each complement). For depth 2 on the population loss this is JJᵀ
    exactly; for balanced deeper factors on the population loss, too. The U⊥ × V⊥ block is where
    JJᵀ is zero (range(J) does not reach it when the layers have full rank and equal ranges): Jᵀ
    maps it to zero, so it is left out of the solve, rather than divided by λ and amplified.
    Returns the preconditioner and the projection onto that block.
    """
    import lineax as lx  # imported when used: it costs a fifth of a second at start-up

    lefts, rights = partial_products(weights)
    U = linalg.svd(lefts[-1], full_matrices=False)[0]  # d_out × h_{L−1}
    V = linalg.svd(objective.apply_factor(rights[0]), full_matrices=False)[2].T  # k × h_1
    d_out, k = U.shape[0], V.shape[0]

    def left_diag(p):  # diag of P Pᵀ on U, and its mean on U⊥
        if p is None:
            return jnp.ones(U.shape[1]), jnp.asarray(1.0)
        on = jnp.sum((U.T @ p) ** 2, axis=1)
        return on, (jnp.sum(p * p) - jnp.sum(on)) / max(d_out - U.shape[1], 1)

    def right_diag(q):  # diag of Q̃ᵀQ̃ on V, and its mean on V⊥
        if q is None and objective.factor is None:
            return jnp.ones(V.shape[1]), jnp.asarray(1.0)
        qt = objective.factor.T if q is None else objective.apply_factor(q)
        on = jnp.sum((qt @ V) ** 2, axis=0)
        return on, (jnp.sum(qt * qt) - jnp.sum(on)) / max(k - V.shape[1], 1)

    d_uv = d_u_vperp = d_uperp_v = lam
    for p, q in zip(lefts, rights):
        (lu, lperp), (rv, rperp) = left_diag(p), right_diag(q)
        d_uv = d_uv + lu[:, None] * rv[None, :]
        d_u_vperp = d_u_vperp + lu * rperp
        d_uperp_v = d_uperp_v + lperp * rv

    def apply(y):
        uy = U.T @ y  # h × k
        a = uy @ V  # the U, V block
        b = uy - a @ V.T  # the U, V⊥ block, in U coordinates
        c = y @ V - U @ a  # the U⊥, V block, in V coordinates
        inside = U @ ((a / d_uv) @ V.T + b / d_u_vperp[:, None])
        return inside + (c / d_uperp_v[None, :]) @ V.T

    def outside(y):  # the U⊥, V⊥ block, which range(J) does not reach
        uy, yv = U.T @ y, y @ V
        return y - U @ uy - yv @ V.T + U @ (uy @ V) @ V.T

    structure = jax.ShapeDtypeStruct((d_out, k), U.dtype)
    return lx.FunctionLinearOperator(apply, structure, lx.positive_semidefinite_tag), outside


def cg_solve(weights, objective, lam, rtol: float, max_steps: int, precondition: bool = True):
    """(JᵀJ + λI) δ = −Jᵀr, solved as δ = Jᵀy with (JJᵀ + λI) y = −r by preconditioned CG.

    The residual-space form has no gauge null space to wander in; returns (δ, success, steps).
    """
    import lineax as lx  # imported when used: it costs a fifth of a second at start-up

    r, pullback = jax.vjp(objective.residual, weights)

    def normal(y):
        return jacobian_product(weights, objective, pullback(y)[0]) + lam * y

    structure = jax.ShapeDtypeStruct(r.shape, r.dtype)
    operator = lx.FunctionLinearOperator(normal, structure, lx.positive_semidefinite_tag)
    preconditioner, outside = _mode_preconditioner(weights, objective, lam)
    options = {"preconditioner": preconditioner} if precondition else {}
    solver = lx.CG(rtol=rtol, atol=0.0, max_steps=max_steps)
    rhs = -(r - outside(r))
    solution = lx.linear_solve(operator, rhs, solver, options=options, throw=False)
    ok = solution.result == lx.RESULTS.successful
    delta = pullback(solution.value)[0]
    return remove_gauge(weights, delta), ok, solution.stats["num_steps"]


def rebalance(weights):
    """The same product W1 ⋯ WL, refactored balanced: W_iᵀW_i = W_{i+1}W_{i+1}ᵀ.

    With W1 = Q1 R1 and W_Lᵀ = Q_L R_L, the core R1 W2 ⋯ W_{L−1} R_Lᵀ = U Σ Vᵀ (rank at most
    k = min width) gives W1 = Q1 U Σ^{1/L} Eᵀ, W_i = E Σ^{1/L} Eᵀ, W_L = E Σ^{1/L} Vᵀ Q_Lᵀ, with E
    the first k columns of the identity. It is a gauge move: the loss does not change.
    """
    depth = len(weights)
    Q1, R1 = linalg.qr(weights[0])
    QL, RL = linalg.qr(weights[-1].T)
    core = R1
    for w in weights[1:-1]:
        core = core @ w
    U, s, Vt = linalg.svd(core @ RL.T, full_matrices=False)
    k = s.size
    root = s ** (1.0 / depth)

    def embed(h):  # E, h × k
        return jnp.eye(h, k)

    out = [Q1 @ (U * root) @ embed(weights[0].shape[1]).T]
    for w in weights[1:-1]:
        out.append(embed(w.shape[0]) @ (root[:, None] * embed(w.shape[1]).T))
    out.append(embed(weights[-1].shape[0]) @ (root[:, None] * Vt) @ QL.T)
    return tuple(out)


class Trial(NamedTuple):
    """The descent's proposal for one λ: the trial point w + η δ and what the model predicts."""

    weights: tuple  # w + η δ
    predicted: jax.Array  # ‖r‖² − ‖r + Jδ‖², the reduction the linear model predicts
    solved: jax.Array  # the linear solve succeeded
    cg_steps: jax.Array  # CG iterations it took (0 for a direct solve)


class Damping(NamedTuple):
    """The search's state: the damping λ and its growth factor ν."""

    damping: jax.Array
    nu: jax.Array


@dataclasses.dataclass(frozen=True)
class NielsenDamping:
    """The search: accept or reject a trial by its gain ratio and update λ (Nielsen 1999).

    With ρ = actual / predicted reduction, a trial is accepted when both are positive and it is
    finite; then λ ← λ·max(1/3, 1 − (2ρ − 1)³), ν ← 2; else λ ← λν, ν ← 2ν. It knows nothing of
    how the step was solved (optimistix's ``AbstractSearch`` to the descent's
    ``AbstractDescent``).
    """

    def init(self, damping) -> Damping:
        return Damping(damping, jnp.asarray(2.0))

    def step(self, state: Damping, loss, trial_loss, predicted, finite):
        """(accept, the new state) after a trial with loss ``trial_loss`` from ``loss``."""
        actual = loss - trial_loss
        rho = actual / predicted
        finite = finite & jnp.isfinite(rho)
        # the gain ratio is the safeguard: an unconverged CG solve that still lowers the loss
        # as predicted is a good step (the table counts it among failed_solves all the same)
        accept = finite & (predicted > 0) & (actual > 0)
        lam = state.damping
        shrink = jnp.maximum(1 / 3, 1 - (2 * jnp.where(accept, rho, 0.5) - 1) ** 3)
        return accept, Damping(
            jnp.where(accept, lam * shrink, lam * state.nu),
            jnp.where(accept, 2.0, 2 * state.nu),
        )


@dataclasses.dataclass(frozen=True)
class AbstractDampedGaussNewton(AbstractMethod):
    """Levenberg-Marquardt's damping loop around a solver of (JᵀJ + λI) δ = −Jᵀr.

    Each step is a descent (``descend``: the damped Gauss-Newton step for the current λ, by the
    subclass's ``solve``) followed by a search (``NielsenDamping``: accept or reject, new λ).
    """

    damping: float = number(1e-3, 0, low_open=True)  # τ: λ₀ = τ · max diag(JᵀJ)
    # after each accepted step, refactor balanced (same product); None: only when CG solves the
    # system (its preconditioner is exact at balance). Rebalancing the exact depth-2 solve made
    # it faster on most seeds but slower on a few (90 instead of 11 iterations on seed 6).
    rebalance: bool | None = flag(None, optional=True)

    columns: ClassVar[dict[str, pa.DataType]] = {
        "damping": pa.float64(),  # λ after the step
        "rejected_steps": pa.float64(),  # so far, failed solves included
        "failed_solves": pa.float64(),  # so far
        "cg_steps": pa.float64(),  # CG iterations so far (× the per-CG FLOPs in ``flops``)
    }
    search: ClassVar[NielsenDamping] = NielsenDamping()

    @abc.abstractmethod
    def solve(self, weights, objective, lam) -> tuple[tuple, jax.Array, jax.Array]:
        """(δ, success, CG iterations) for (JᵀJ + λI) δ = −Jᵀr at ``weights``."""

    @abc.abstractmethod
    def uses_cg(self, depth: int) -> bool:
        """Whether ``solve`` runs conjugate gradients at this depth."""

    def accepted(self, weights):
        wanted = self.uses_cg(len(weights)) if self.rebalance is None else self.rebalance
        return rebalance(weights) if wanted else weights

    def memory_values(self, shapes, k):
        # the CG solve's vectors, the preconditioner's partial products and Grams, the gauge
        out, into = shapes[0][0], shapes[-1][1]
        p = sum(a * b for a, b in shapes)
        if not isinstance(k, Measurements):
            partial = sum(out * a + b * into for a, b in shapes)
            return 24 * p + 4 * partial + 6 * sum(a * a for a, _ in shapes)
        # measured: the partial products n1 × h and h × n2 (none n1 × n1), the gauge's h × h
        # Grams, the linearization's gathers, the blocks' factors and Grams
        partial = sum(out * a for a, _ in shapes[1:]) + sum(b * into for _, b in shapes[:-1])
        values = 24 * p + 4 * partial + 6 * sum(a * a for a, _ in shapes[1:])
        (n1, d0), (dL, n2) = shapes[0], shapes[-1]
        values += 4 * k.count * (d0 + dL + 2) + 2 * (n1 * d0 * d0 + n2 * dL * dL)
        return values + measured.gram_values(shapes, k.count)

    def passes(self, depth):
        cg = min(getattr(self, "cg_max_steps", 0), 20) if self.uses_cg(depth) else 0
        return 4.0 + cg

    def flops(self, shapes, k):
        # the gradient, the trial loss and J δ, the gauge removal and the rebalancing; then
        # the SVDs of the preconditioner once per step and two products through J per CG step
        F, widths = loss_flops(shapes, k), [shapes[0][0], *(b for _, b in shapes)]
        hidden = widths[1:-1]
        per_step = 3 * F + 3 * F + gauge_flops(shapes) + _rebalance_flops(shapes)
        if isinstance(k, Measurements):  # the block preconditioner (``_measured``)
            setup, per_cg = measured.flops_setup(shapes, k.count, not k.dense)
            return per_step + setup, 4 * F + per_cg
        kk = widths[-1] if k is None else k
        setup = SVD(shapes[0][0], hidden[-1]) + SVD(hidden[0], kk)
        per_cg = 4 * F + 8 * residual_rows(shapes, k) * max(hidden)
        return per_step + setup, per_cg

    def init(self, weights, objective, learning_rate):
        zero = jnp.asarray(0)
        search = self.search.init(initial_damping(weights, objective, self.damping))
        return LMState(jnp.asarray(learning_rate, dtype=jnp.float64), *search, zero, zero, zero)

    def descend(self, weights, objective, lam, learning_rate) -> Trial:
        """The descent: δ for damping λ, the trial point w + η δ and the predicted reduction."""
        delta, solved, cg_steps = self.solve(weights, objective, lam)
        r = objective.residual(weights)
        Jd = jacobian_product(weights, objective, delta)
        predicted = -(2 * jnp.vdot(r, Jd) + jnp.vdot(Jd, Jd))
        return Trial(tree_add(weights, delta, learning_rate), predicted, solved, cg_steps)

    def step(self, weights, state, objective, loss, grads):
        trial = self.descend(weights, objective, state.damping, state.learning_rate)
        finite = jnp.all(
            jnp.asarray(
                [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(trial.weights)]
            )
        )
        accept, search = self.search.step(
            Damping(state.damping, state.nu),
            loss,
            objective.loss(trial.weights),
            trial.predicted,
            finite,
        )
        new = jax.tree_util.tree_map(
            lambda t, w: jnp.where(accept, t, w), self.accepted(trial.weights), weights
        )
        state = LMState(
            state.learning_rate,
            *search,
            state.rejected + (~accept).astype(state.rejected.dtype),
            state.failed + (~trial.solved).astype(state.failed.dtype),
            state.cg_steps + trial.cg_steps,
        )
        return new, state

    def record(self, state) -> dict:
        return {
            "damping": state.damping,
            "rejected_steps": state.rejected,
            "failed_solves": state.failed,
            "cg_steps": state.cg_steps,
        }


def _rebalance_flops(shapes) -> float:
    """``rebalance``: QRs of the outer layers, the SVD of the core and the products."""
    hidden = [b for _, b in shapes[:-1]]
    outer = sum(QR(a, b) for a, b in (shapes[0], shapes[-1][::-1]))
    return outer + SVD(hidden[0], hidden[-1]) + 2 * parameters(shapes) * max(hidden)


@dataclasses.dataclass(frozen=True)
class LevenbergMarquardt(AbstractDampedGaussNewton):
    cg_rtol: float = number(1e-8, 0, 1, low_open=True)  # depth ≥ 3 only
    cg_max_steps: int = integer(200, 1, 100_000)

    name = "lm"
    penalized = False  # a residual model or closed form: no ratings penalty
    label = "LM-struct"
    description = (
        "Levenberg-Marquardt, adaptive damping; exact O(d³) Schur solve at depth 2, CG beyond"
    )
    reference = "Levenberg 1944; Marquardt 1963; Nielsen 1999"

    def uses_cg(self, depth: int) -> bool:
        return depth > 2  # and on every measured objective

    def flops(self, shapes, k):
        if len(shapes) > 2 or isinstance(k, Measurements):
            return super().flops(shapes, k)
        # the exact Schur solve: the SVD of Z = W2 Lᵀ, K's eigenbasis, A's eigendecomposition
        # and the products; the SVD of C = diag(√shrink) Vᵀ L for the sample loss
        F, (out, h), (_, into) = loss_flops(shapes, k), *shapes
        kk = into if k is None else k
        schur = SVD(kk, h) + 4 * h * kk * kk + EIGH(h) + 8 * out * h * kk
        if k is not None:
            schur += SVD(kk, into) + 4 * into**2 * h
        per_step = 3 * F + 3 * F + schur + gauge_flops(shapes) + _rebalance_flops(shapes)
        return per_step, 0.0

    def memory_values(self, shapes, k):
        if len(shapes) > 2 or isinstance(k, Measurements):
            return super().memory_values(shapes, k)
        (out, h), (_, into) = shapes
        kk = into if k is None else k  # the exact Schur solve: full SVD bases of k × k
        return 6 * (kk * kk + into * into + h * h + h * kk + out * h) + 8 * (out + into) * h

    def solve(self, weights, objective, lam):
        if measured.is_measured(objective):
            return measured.cg_solve(weights, objective, lam, self.cg_rtol, self.cg_max_steps)
        if len(weights) == 2:
            return schur_solve(weights, objective, lam)
        return cg_solve(weights, objective, lam, self.cg_rtol, self.cg_max_steps)


@dataclasses.dataclass(frozen=True)
class GaussNewtonCG(AbstractDampedGaussNewton):
    cg_rtol: float = number(1e-4, 0, 1, low_open=True)
    cg_max_steps: int = integer(100, 1, 100_000)
    precondition: bool = flag(True)

    name = "gn-cg"
    penalized = False  # a residual model or closed form: no ratings penalty
    label = "GN-CG"
    description = "matrix-free Levenberg-Marquardt: preconditioned CG (lineax) on JᵀJ + λI"
    reference = "Martens 2010 (Hessian-free); lineax.CG"

    def uses_cg(self, depth: int) -> bool:
        return True

    def solve(self, weights, objective, lam):
        args = (weights, objective, lam, self.cg_rtol, self.cg_max_steps, self.precondition)
        return (measured.cg_solve if measured.is_measured(objective) else cg_solve)(*args)

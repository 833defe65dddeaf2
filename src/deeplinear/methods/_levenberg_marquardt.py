"""Levenberg-Marquardt with adaptive damping, solved through the product structure.

Each iteration solves the damped Gauss-Newton system for the reduced residual r = W Lᵀ − T,

    (JᵀJ + λ I) δ = −Jᵀ r,

tries w + η δ, and keeps it if the loss fell. With the gain ratio ρ = actual / predicted
reduction (predicted: ‖r‖² − ‖r + Jδ‖²), an accepted step sets λ ← λ·max(1/3, 1 − (2ρ − 1)³)
and ν ← 2, a rejected one λ ← λν, ν ← 2ν (Nielsen 1999; Madsen, Nielsen & Tingleff 2004). A
failed or ill-posed solve is a rejected step: the run never crashes, and the table counts it.
The damping also fixes the gauge: the minimum-norm solution of the undamped system is the limit.

``lm``, depth 2, solves the system **exactly** without forming JᵀJ: eliminating δ1 by a Schur
complement (M = W2 S W2ᵀ + λI, S = LᵀL) leaves A δ2 K + λ δ2 = B with A = W1ᵀW1 and
K = S − S W2ᵀ M⁻¹ W2 S, solved in the eigenbases of A and K. K is built without cancellation from
the SVD of Z = W2 Lᵀ: K = Lᵀ[(I − VVᵀ) + V diag(λ/(σ² + λ)) Vᵀ]L. For the population loss
(L = I) K is never formed: the solve costs O(d h²). Depth ≥ 3 uses the CG solver of ``gn-cg``
with a tight tolerance. After each accepted depth-2 step the factors are rebalanced
(W1ᵀW1 = W2W2ᵀ, same product) unless ``rebalance = false``.

``gn-cg`` solves the same system matrix-free for any depth by preconditioned conjugate gradients
(lineax) on v ↦ Jᵀ(Jv) + λv built from ``jvp``/``vjp``. The preconditioner inverts each layer's
exact Gauss-Newton block approximately, as a Kronecker product with split damping:
(P_iᵀP_i + π√λ I)⁻¹ V (Q_i S Q_iᵀ + √λ/π I)⁻¹.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import lineax as lx

from .._backend import jax, jnp
from ..errors import UsageError
from ..model import partial_products
from ._base import AbstractMethod, check_range


class LMState(NamedTuple):
    learning_rate: jax.Array
    damping: jax.Array  # λ
    nu: jax.Array
    rejected: jax.Array  # steps rejected so far (including failed solves)
    failed: jax.Array  # linear solves that failed so far
    cg_steps: jax.Array  # CG iterations so far


def _tree_add(a, b, scale=1.0):
    return jax.tree_util.tree_map(lambda x, y: x + scale * y, a, b)


def jacobian_product(weights, objective, delta):
    """J δ for the reduced residual: (Σ_i P_i δ_i Q_i) Lᵀ."""
    return jax.jvp(objective.residual, (weights,), (delta,))[1]


def initial_damping(weights, objective, tau: float):
    """τ · max diag(JᵀJ): the largest diagonal entry of any layer's block (Q S Qᵀ) ⊗ (PᵀP)."""
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
    B = -G2 + W1.T @ jnp.linalg.solve(M, G1.T).T @ ZL
    a, P = jnp.linalg.eigh(W1.T @ W1)
    _, sigma, Vt = jnp.linalg.svd(Z, full_matrices=True)  # Vt: k × k, rows past h span ker Z
    sigma = jnp.zeros(Vt.shape[0]).at[: sigma.size].set(sigma)
    shrink = lam / (sigma**2 + lam)  # eigenvalues of K̃ = I − Zᵀ(ZZᵀ + λ)⁻¹Z, never by subtraction
    Bp = P.T @ B  # rows in A's eigenbasis
    if objective.factor is None:  # K = K̃: diagonal in Vt's basis
        delta2 = ((Bp @ Vt.T) / (a[:, None] * shrink[None, :] + lam)) @ Vt
    else:  # K = CᵀC with C = diag(√shrink) Vt L, diagonalised by the SVD of C
        _, c, Qt = jnp.linalg.svd(
            jnp.sqrt(shrink)[:, None] * (Vt @ objective.factor), full_matrices=True
        )
        k = jnp.zeros(Qt.shape[0]).at[: c.size].set(c**2)
        delta2 = ((Bp @ Qt.T) / (a[:, None] * k[None, :] + lam)) @ Qt
    delta2 = P @ delta2
    delta1 = -jnp.linalg.solve(M, (G1 + W1 @ objective.apply_factor(delta2) @ Z.T).T).T
    # the exact solution has no gauge component; remove the round-off amplified there by 1/λ
    return remove_gauge(weights, (delta1, delta2)), jnp.asarray(True), jnp.asarray(0)


def _gauge_map(weights, G):
    """The gauge direction T(G): δW_j += W_j G_j, δW_{j+1} −= G_j W_{j+1} at each junction j."""
    delta = [jnp.zeros_like(w) for w in weights]
    for j, g in enumerate(G):
        delta[j] = delta[j] + weights[j] @ g
        delta[j + 1] = delta[j + 1] - g @ weights[j + 1]
    return tuple(delta)


def _gauge_adjoint(weights, delta):
    """Tᵀ δ: W_jᵀ δ_j − δ_{j+1} W_{j+1}ᵀ at each junction."""
    return tuple(
        weights[j].T @ delta[j] - delta[j + 1] @ weights[j + 1].T for j in range(len(weights) - 1)
    )


def remove_gauge(weights, delta):
    """δ minus its orthogonal projection on the gauge directions {T(G)}.

    Solves TᵀT G = Tᵀδ: for depth 2 the Sylvester equation W1ᵀW1 G + G W2W2ᵀ = Tᵀδ in the
    eigenbases of the two Grams; deeper, by CG (lineax) on the block-tridiagonal TᵀT.
    """
    rhs = _gauge_adjoint(weights, delta)
    if len(weights) == 2:
        W1, W2 = weights
        a, P = jnp.linalg.eigh(W1.T @ W1)
        b, Q = jnp.linalg.eigh(W2 @ W2.T)
        G = (P @ ((P.T @ rhs[0] @ Q) / (a[:, None] + b[None, :])) @ Q.T,)
    else:
        structure = jax.eval_shape(lambda: rhs)
        normal = lx.FunctionLinearOperator(
            lambda g: _gauge_adjoint(weights, _gauge_map(weights, g)),
            structure,
            lx.positive_semidefinite_tag,
        )
        G = lx.linear_solve(
            normal, rhs, lx.CG(rtol=1e-12, atol=0.0, max_steps=200), throw=False
        ).value
    return _tree_add(delta, _gauge_map(weights, G), -1.0)


def _kronecker_preconditioner(weights, objective, lam, structure):
    """Approximate inverse of each layer's damped Gauss-Newton block, projected off the gauge."""
    S = objective.covariance()
    lefts, rights = partial_products(weights)
    factors = []
    for p, q, w in zip(lefts, rights, weights):
        left = jnp.eye(w.shape[0]) if p is None else p.T @ p
        if q is None:
            right = jnp.eye(w.shape[1]) if S is None else S
        else:
            right = (q if S is None else q @ S) @ q.T
        mean_l = jnp.trace(left) / left.shape[0]
        mean_r = jnp.trace(right) / right.shape[0]
        pi = jnp.sqrt(mean_r / mean_l)
        root = jnp.sqrt(lam)
        factors.append(
            (left + pi * root * jnp.eye(left.shape[0]), right + root / pi * jnp.eye(right.shape[0]))
        )

    def blocks(v):
        return tuple(
            jnp.linalg.solve(lf, jnp.linalg.solve(rf, x.T).T) for x, (lf, rf) in zip(v, factors)
        )

    def apply(v):  # Π M Π: keeps CG off the gauge, where JᵀJ + λI is only λ
        return remove_gauge(weights, blocks(remove_gauge(weights, v)))

    return lx.FunctionLinearOperator(apply, structure, lx.positive_semidefinite_tag)


def cg_solve(weights, objective, lam, rtol: float, max_steps: int, precondition: bool = True):
    """(JᵀJ + λI) δ = −Jᵀr by preconditioned CG (lineax); returns (δ, success, CG steps)."""
    structure = jax.eval_shape(lambda: weights)
    _, pullback = jax.vjp(objective.residual, weights)
    r = objective.residual(weights)
    rhs = jax.tree_util.tree_map(jnp.negative, pullback(r)[0])

    def normal(v):
        return _tree_add(pullback(jacobian_product(weights, objective, v))[0], v, lam)

    operator = lx.FunctionLinearOperator(normal, structure, lx.positive_semidefinite_tag)
    options = {}
    if precondition:
        options["preconditioner"] = _kronecker_preconditioner(weights, objective, lam, structure)
    solution = lx.linear_solve(
        operator, rhs, lx.CG(rtol=rtol, atol=0.0, max_steps=max_steps), options=options, throw=False
    )
    ok = solution.result == lx.RESULTS.successful
    return solution.value, ok, solution.stats["num_steps"]


def rebalance(weights):
    """Same product W1 W2, balanced factors: W1 = Q1 U √Σ, W2 = √Σ Vᵀ Q2ᵀ."""
    W1, W2 = weights
    Q1, R1 = jnp.linalg.qr(W1)
    Q2, R2 = jnp.linalg.qr(W2.T)
    U, s, Vt = jnp.linalg.svd(R1 @ R2.T)
    root = jnp.sqrt(s)
    return (Q1 @ (U * root), (root[:, None] * Vt) @ Q2.T)


@dataclasses.dataclass(frozen=True)
class AbstractDampedGaussNewton(AbstractMethod):
    """Levenberg-Marquardt's damping loop around a solver of (JᵀJ + λI) δ = −Jᵀr."""

    damping: float = 1e-3  # τ: λ₀ = τ · max diag(JᵀJ)

    def solve(self, weights, objective, lam):
        raise NotImplementedError

    def accepted(self, weights):
        return weights

    def check(self):
        check_range(self.name, "damping", self.damping, 0, low_open=True)

    def __post_init__(self):
        self.check()

    def init(self, weights, objective, learning_rate):
        zero = jnp.asarray(0)
        return LMState(
            jnp.asarray(learning_rate, dtype=jnp.float64),
            initial_damping(weights, objective, self.damping),
            jnp.asarray(2.0),
            zero,
            zero,
            zero,
        )

    def step(self, weights, state, objective, loss, grads):
        lam = state.damping
        delta, ok, cg_steps = self.solve(weights, objective, lam)
        r = objective.residual(weights)
        Jd = jacobian_product(weights, objective, delta)
        predicted = -(2 * jnp.vdot(r, Jd) + jnp.vdot(Jd, Jd))
        trial = _tree_add(weights, delta, state.learning_rate)
        actual = loss - objective.loss(trial)
        rho = actual / predicted
        finite = jnp.isfinite(rho) & jnp.all(
            jnp.asarray([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(trial)])
        )
        accept = ok & finite & (predicted > 0) & (actual > 0)
        new = jax.tree_util.tree_map(
            lambda t, w: jnp.where(accept, t, w), self.accepted(trial), weights
        )
        shrink = jnp.maximum(1 / 3, 1 - (2 * jnp.where(accept, rho, 0.5) - 1) ** 3)
        state = LMState(
            state.learning_rate,
            jnp.where(accept, lam * shrink, lam * state.nu),
            jnp.where(accept, 2.0, 2 * state.nu),
            state.rejected + (~accept).astype(state.rejected.dtype),
            state.failed + (~ok).astype(state.failed.dtype),
            state.cg_steps + cg_steps,
        )
        return new, state

    def record(self, state) -> dict:
        return {
            "damping": state.damping,
            "rejected_steps": state.rejected,
            "failed_solves": state.failed,
            "cg_steps": state.cg_steps,
        }


@dataclasses.dataclass(frozen=True)
class LevenbergMarquardt(AbstractDampedGaussNewton):
    rebalance: bool = True
    cg_rtol: float = 1e-12  # depth ≥ 3 only
    cg_max_steps: int = 500

    name = "lm"
    label = "LM"
    description = (
        "Levenberg-Marquardt, adaptive damping; exact O(d³) Schur solve at depth 2, CG beyond"
    )
    reference = "Levenberg 1944; Marquardt 1963; Nielsen 1999"

    def check(self):
        super().check()
        if not isinstance(self.rebalance, bool):
            raise UsageError(f"lm.rebalance must be true or false, got {self.rebalance!r}")
        check_range(self.name, "cg_rtol", self.cg_rtol, 0, low_open=True)

    def solve(self, weights, objective, lam):
        if len(weights) == 2:
            return schur_solve(weights, objective, lam)
        return cg_solve(weights, objective, lam, self.cg_rtol, self.cg_max_steps)

    def accepted(self, weights):
        return rebalance(weights) if self.rebalance and len(weights) == 2 else weights


@dataclasses.dataclass(frozen=True)
class GaussNewtonCG(AbstractDampedGaussNewton):
    cg_rtol: float = 1e-4
    cg_max_steps: int = 100
    precondition: bool = True

    name = "gn-cg"
    label = "GN-CG"
    description = "matrix-free Levenberg-Marquardt: preconditioned CG (lineax) on JᵀJ + λI"
    reference = "Martens 2010 (Hessian-free); lineax.CG"

    def check(self):
        super().check()
        check_range(self.name, "cg_rtol", self.cg_rtol, 0, low_open=True)
        if (
            isinstance(self.cg_max_steps, bool)
            or not isinstance(self.cg_max_steps, int)
            or (self.cg_max_steps < 1)
        ):
            raise UsageError("gn-cg.cg_max_steps must be a positive integer")

    def solve(self, weights, objective, lam):
        return cg_solve(weights, objective, lam, self.cg_rtol, self.cg_max_steps, self.precondition)

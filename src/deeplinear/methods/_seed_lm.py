"""The notebook's "Levenberg-Marquardt": a fixed fraction of the minimum-norm Gauss-Newton step.

Each step solves ``min ‖δ‖ subject to δ minimising ‖J δ + r‖`` and moves ``w ← w + η δ``, where
r is the residual and J its Jacobian with respect to all layers. The notebook formed J over all
n samples, ``[kron((W2 X)ᵀ, I), kron(Xᵀ, W1)]`` ((n·output) × p, 10000 × 96 at its size). Here J
is the Jacobian of the QR-reduced residual ``W Lᵀ − T`` of ``Objective`` ((k·output) × p with
k = input), whose singular values and minimum-norm solution are the same, so the step costs the
same for any n and never squares κ(J) as the normal equations would.

The Jacobian is rank deficient by the gauge (W1 G, G⁻¹ W2). The default solver appends the
gauge-orthogonality equations and solves the resulting full-rank problem by QR (exact, ~4× faster
than an SVD here); the ``svd`` solver drops singular values below ``rcond · σ_max`` (NumPy ≥ 2's
default cut-off, ``eps · max(shape)``, when ``rcond`` is None) and handles any null space. The
notebook's 2017 setting (``rcond=-1``) lives in ``deeplinear.notebook2017.notebook``.
"""

from __future__ import annotations

import dataclasses

from jax.flatten_util import ravel_pytree

from deeplinear.core import linalg
from deeplinear.core.backend import jax, jnp
from deeplinear.methods._base import AbstractMethod, choice, number
from deeplinear.methods.cost import QR, loss_flops, parameters, residual_rows


def gauge_residual(weights, delta) -> jax.Array:
    """``W_iᵀ δW_i − δW_{i+1} W_{i+1}ᵀ`` for each junction: zero iff δ ⊥ the gauge directions.

    The gauge (W_i G, G⁻¹ W_{i+1}) leaves W1 ⋯ WL unchanged; its tangent directions
    (W_i G, −G W_{i+1}) span the Jacobian's null space when ``gauge_is_null_space``.
    """
    return jnp.concatenate(
        [
            (w.T @ d - d_next @ w_next.T).ravel()
            for w, d, w_next, d_next in zip(weights, delta, weights[1:], delta[1:])
        ]
    )


def gauge_is_null_space(weights) -> bool:
    """True when, at generic full-rank layers, the Jacobian's null space is the gauge alone.

    With widths d_out = h_0, h_1, …, h_L = d_in and r = min h_i, the product map has rank
    r (d_out + d_in − r); its null space has the gauge's dimension Σ_{0<i<L} h_i² exactly when
    Σ h_i h_{i+1} − r (d_out + d_in − r) equals it (e.g. depth 2 with h ≤ min(d_in, d_out)).
    """
    widths = [weights[0].shape[0], *(w.shape[1] for w in weights)]
    r = min(widths)
    params = sum(a * b for a, b in zip(widths, widths[1:]))
    null = params - r * (widths[0] + widths[-1] - r)
    return null == sum(h * h for h in widths[1:-1])


def min_norm_gauss_newton_step(weights, objective, solver: str = "auto", rcond=None):
    """The minimum-norm solution δ of ``min ‖J δ + r‖`` for the reduced residual, as a pytree.

    ``solver="qr"``: stack J with the gauge-orthogonality rows and solve that full-rank least
    squares problem by QR — the unique solution ⊥ the gauge, which is the minimum-norm one
    whenever the gauge is the whole null space. ``solver="svd"``: ``lstsq`` with the cut-off
    ``rcond``, for any null space. ``"auto"`` picks QR where it applies.
    """
    flat, unravel = ravel_pytree(weights)

    def residual(w):
        return objective.residual(unravel(w)).ravel()

    r = residual(flat)
    J = jax.jacfwd(residual)(flat)
    if solver == "auto":
        solver = "qr" if gauge_is_null_space(weights) else "svd"
    if solver == "svd":
        delta = linalg.lstsq(J, -r, rcond=rcond)[0]
    else:
        gauge = jax.jacfwd(lambda d: gauge_residual(weights, unravel(d)))(jnp.zeros_like(flat))
        q, upper = linalg.qr(jnp.concatenate([J, gauge]))
        rhs = q[: r.size].T @ -r
        delta = linalg.solve_triangular(upper, rhs, lower=False)
    return unravel(delta)


@dataclasses.dataclass(frozen=True)
class SeedLM(AbstractMethod):
    """w ← w + η · argmin-norm ‖J δ + r‖ (undamped, fixed step; the notebook's method)."""

    solver: str = choice("auto", "auto", "qr", "svd")
    rcond: float | None = number(None, 0, 1, optional=True)

    name = "seed-lm"
    penalized = False  # a residual model or closed form: no ratings penalty
    label = "LM"
    description = "the notebook's method: a fixed fraction η of the minimum-norm Gauss-Newton step"
    reference = "seed notebook (2017); Levenberg 1944, Marquardt 1963"

    def memory_values(self, shapes, k):
        # the dense Jacobian stacked with the gauge rows, and its QR (or SVD) factors
        p = sum(a * b for a, b in shapes)
        rows = residual_rows(shapes, k) + sum(a * a for a, _ in shapes[1:])
        return 4 * rows * p + 8 * p

    def passes(self, depth):
        return 3.0

    def flops(self, shapes, k):
        # a dense Jacobian (p JVPs) and a QR of the system stacked with the gauge rows
        F, p = loss_flops(shapes, k), parameters(shapes)
        rows = residual_rows(shapes, k) + sum(b * b for _, b in shapes[:-1])
        return 3 * F + 2 * p * F + QR(p, rows) + 2 * p * rows, 0.0

    def init(self, weights, objective, learning_rate):
        return jnp.asarray(learning_rate, dtype=jnp.float64)

    def step(self, weights, state, objective, loss, grads):
        delta = min_norm_gauss_newton_step(weights, objective, self.solver, self.rcond)
        weights = jax.tree_util.tree_map(lambda w, d: w + state * d, weights, delta)
        return weights, state

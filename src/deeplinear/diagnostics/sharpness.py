"""Sharpness along a run: the largest Hessian eigenvalue of the training loss, inside the loop.

The **sharpness** of f at W is λ_max(∇²f(W)) (Cohen, Kaur, Li, Kolter & Talwalkar, ICLR 2021).
GD with step η on a quadratic is stable only while it is ≤ 2/η; their "edge of stability" is
GD's sharpness rising to 2/η and hovering there while the loss keeps falling, non-monotonically.
f is the loss GD differentiates (``objective.loss``: a sum of squares without ½), so the
sharpness is compared with 2/η for the η GD uses on that same f.

``SharpnessProbe.measure`` runs ``iterations`` = k steps of Lanczos on Hessian-vector products
``H v = jvp(∇f)(W; v)`` (forward over reverse, on the parameters flattened by
``ravel_pytree``) from a fixed unit start vector q₁, with full reorthogonalisation (Gram–Schmidt
against every earlier Lanczos vector, twice: "twice is enough"). With Q = [q₁ … q_k] and the
tridiagonal T_k = Qᵀ H Q (diagonal α, off-diagonal β), the Ritz value θ = λ_max(T_k) and its
unit Ritz vector y = Q s satisfy

    θ ≤ λ_max(H)                    (θ is a Rayleigh quotient of H)
    ‖H y − θ y‖ = β_k |s_k| =: r    (so H has an eigenvalue in [θ − r, θ + r])

and, if that eigenvalue is λ_max and the rest of the spectrum lies below λ_max − δ, then
λ_max − θ ≤ r²/δ. ``measure`` records θ as ``sharpness`` and r as ``sharpness_residual``: a
recorded, per-row accuracy statement. θ converges fastest for a well separated λ_max
(Kaniel–Paige); k ≥ p gives λ_max exactly (up to rounding).

A Lanczos vector whose new direction has norm ≤ 1e-10 · max(|α|, |β|) (an invariant subspace:
a degenerate H, or k ≥ p) ends the recursion: the later rows are left out of T_k (their α set
to α₁, a Rayleigh quotient, so they can never give the maximum), and the neglected norm moves θ
by at most 1e-10 relative (Weyl). Shapes are fixed (k static), so the probe is ``jit``- and
``vmap``-able: batches of learning rates share one compiled program.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import numpy as np
import pyarrow as pa
from jax.flatten_util import ravel_pytree

from deeplinear.core import linalg as _linalg
from deeplinear.core.backend import jax, jnp
from deeplinear.errors import UsageError

DEFAULT_ITERATIONS = 20  # Lanczos steps (Hessian-vector products) per measurement
START_SEED = 0  # the start vector: N(0, I) from jax.random.key(START_SEED), normalised
BREAKDOWN = 1e-10  # relative size of a new Lanczos direction below which the recursion ends


def lanczos_top(hvp, start, iterations: int):
    """(θ, r): the largest Ritz value of ``hvp`` (v ↦ H v, H symmetric) after ``iterations``
    Lanczos steps from ``start`` with full reorthogonalisation, and its residual ‖H y − θ y‖
    (module docstring)."""
    k = int(iterations)
    p = start.shape[0]
    q = start / jnp.linalg.norm(start)
    Q = jnp.zeros((k + 1, p), start.dtype).at[0].set(q)
    alpha = jnp.zeros(k, start.dtype)
    beta = jnp.zeros(k, start.dtype)
    live = jnp.zeros(k, bool)

    def step(j, carry):
        Q, alpha, beta, live, scale, going = carry
        v = Q[j]
        w = hvp(v)
        a = v @ w
        w = w - a * v - jnp.where(j > 0, beta[j - 1], 0.0) * Q[j - 1]
        w = w - Q.T @ (Q @ w)  # against every earlier vector (rows past j are zero) ...
        w = w - Q.T @ (Q @ w)  # ... twice
        b = jnp.linalg.norm(w)
        scale = jnp.maximum(scale, jnp.maximum(jnp.abs(a), b))
        alive = going
        going = going & (b > BREAKDOWN * scale)
        nxt = jnp.where(going, w / jnp.where(going, b, 1.0), 0.0)
        Q = Q.at[j + 1].set(nxt)
        alpha = alpha.at[j].set(jnp.where(alive, a, 0.0))
        beta = beta.at[j].set(jnp.where(going, b, 0.0))
        return Q, alpha, beta, live.at[j].set(alive), scale, going

    zero = jnp.zeros((), start.dtype)
    Q, alpha, beta, live, _, _ = jax.lax.fori_loop(
        0, k, step, (Q, alpha, beta, live, zero, jnp.array(True))
    )
    alpha = jnp.where(live, alpha, alpha[0])  # rows past a breakdown: never the maximum
    T = jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1)
    values, vectors = _linalg.eigh(T)
    return values[-1], jnp.abs(beta[-1] * vectors[-1, -1])


def start_vector(parameters: int) -> jax.Array:
    """The fixed unit start vector: N(0, I) from ``jax.random.key(START_SEED)``, normalised."""
    v = jax.random.normal(jax.random.key(START_SEED), (parameters,), dtype=jnp.float64)
    return v / jnp.linalg.norm(v)


def hessian_vector_product(objective, weights, vector):
    """H v for H = ∇²(objective.loss) at ``weights``, v flat (``ravel_pytree`` order)."""
    flat, unravel = ravel_pytree(tuple(weights))
    grad = jax.grad(lambda x: objective.loss(unravel(x)))
    return jax.jvp(grad, (flat,), (vector,))[1]


@dataclasses.dataclass(frozen=True)
class SharpnessProbe:
    """Measures λ_max(∇² objective.loss) at each record (a pytree: ``objective`` and ``start``
    are its arrays, ``iterations`` is static)."""

    objective: object  # anything with loss(weights); a pytree of arrays (vmap batches it)
    start: jax.Array  # the fixed unit start vector, one entry per parameter
    iterations: int = DEFAULT_ITERATIONS

    columns = MappingProxyType({"sharpness": pa.float64(), "sharpness_residual": pa.float64()})

    @classmethod
    def for_objective(
        cls, objective, weights, iterations: int = DEFAULT_ITERATIONS
    ) -> SharpnessProbe:
        """The probe for ``objective`` at weights shaped like ``weights`` (one run's)."""
        if isinstance(iterations, bool) or not isinstance(iterations, int | np.integer):
            raise UsageError(f"sharpness iterations must be an integer ≥ 1, got {iterations!r}")
        if iterations < 1:
            raise UsageError(f"sharpness iterations must be ≥ 1, got {iterations}")
        parameters = sum(int(np.size(w)) for w in weights)
        return cls(objective, start_vector(parameters), int(iterations))

    def measure(self, weights) -> dict:
        """{"sharpness": θ, "sharpness_residual": r} at ``weights`` (module docstring)."""
        weights = tuple(weights)

        def hvp(v):
            return hessian_vector_product(self.objective, weights, v)

        theta, residual = lanczos_top(hvp, self.start, self.iterations)
        return {"sharpness": theta, "sharpness_residual": residual}


jax.tree_util.register_dataclass(
    SharpnessProbe, data_fields=["objective", "start"], meta_fields=["iterations"]
)

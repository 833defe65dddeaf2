"""Critical points: the gradient norm and the extreme eigenvalues of the Hessian of the loss,
matrix-free.

A point W = (W1, …, WL) is a strict saddle when ``∇f = 0`` and ``λ_min(∇²f) < 0``. Two routes to
the Hessian's extreme eigenvalues, on the flattened parameter vector (``ravel_pytree``):

- **dense** (p ≤ 2000 parameters): ``jax.hessian`` of ``Objective.loss`` and ``numpy.linalg.eigh``;
  it also counts the negative eigenvalues, those below ``−tol·max|λ|``.
- **lanczos**: ARPACK's implicitly restarted Lanczos (``scipy.sparse.linalg.eigsh``) on Hessian-
  vector products ``H v = jvp(∇f)(W; v)`` (forward over reverse), jitted once per shape. For
  these products the loss is written in Gram form, ``f = tr(W S Wᵀ) − 2⟨W, C⟩ + const`` with
  S = LᵀL and C = T L formed once, and contracted from the narrow side (``W_L S W_Lᵀ``,
  ``C W_Lᵀ``): the loss less a constant, so the same Hessian, but a product costs O(o·i·h)
  with no output × input intermediate beyond C (the textbook HVP forms W Lᵀ − T and its
  derivative: about 2.5× slower at 1024 × 32 × 1024). The gradient itself comes from the
  residual form, which stays exact near a minimum. A measured objective (completion, sensing:
  no ``target``/``factor``) takes the generic product, forward over reverse of its own loss.

λ_max ≥ 0 always (each layer's diagonal block ``∇²_{W_i} f`` is positive semi-definite, f being
a convex quadratic in one layer), and λ_max = 0 only if H = 0. So λ_max is found first (largest
algebraic, converged relative to λ_max), then λ_min as the smallest eigenvalue of ``H − λ_max I``:
its magnitude is the spread λ_max − λ_min, so ARPACK's relative stopping test is relative to the
spectrum's width even where λ_min ≈ 0 (a minimum with its gauge null space). H = 0 (W = 0 at
depth ≥ 3) is told by ``H v0 = 0`` for the random start v0 (otherwise a probability-zero event).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jax.flatten_util import ravel_pytree

from deeplinear.core.backend import jax, jnp
from deeplinear.core.model import gradient_norm
from deeplinear.errors import UsageError
from deeplinear.objectives.measurement import is_measured

DENSE_LIMIT = 2000  # method="auto" builds the dense Hessian up to this many parameters
_START_SEED = 0  # the Lanczos start vector: fixed, so results are deterministic
_METHODS = ("auto", "dense", "lanczos")


@dataclass(frozen=True, eq=False)
class CriticalPoint:
    """First- and second-order information at one point W."""

    grad_norm: float  # ‖∇f‖ over all layers
    hessian_min: float  # λ_min(∇²f)
    hessian_max: float  # λ_max(∇²f)
    parameters: int
    negative_directions: int | None  # #{λ < −tol·max|λ|}; dense only, else None
    method: str  # "dense" or "lanczos"
    direction: tuple  # unit eigenvector of λ_min, shaped like the weights
    hessian_vector_products: int = 0  # Lanczos only, all ARPACK's and one probe H v0

    @property
    def is_strict_saddle(self) -> bool:
        """λ_min < 0: some direction decreases f to second order."""
        return self.hessian_min < 0

    def row(self) -> dict:
        """The scalars, for a results table (the direction is left out)."""
        return {
            "grad_norm": self.grad_norm,
            "hessian_min": self.hessian_min,
            "hessian_max": self.hessian_max,
            "parameters": self.parameters,
            "negative_directions": self.negative_directions,
            "method": self.method,
            "hessian_vector_products": self.hessian_vector_products,
        }


def critical_point(
    objective,
    weights,
    *,
    tol: float = 1e-8,
    max_iterations: int = 200,
    method: str = "auto",
) -> CriticalPoint:
    """‖∇f‖ and the extreme Hessian eigenvalues of ``objective.loss`` at ``weights``.

    ``method``: "dense" (exact, O(p²) memory), "lanczos" (matrix-free) or "auto" (dense for
    p ≤ ``DENSE_LIMIT``). ``tol``: ARPACK's relative tolerance (residuals ≤ tol·λ_max and
    ≤ tol·(λ_max − λ_min)), and the threshold −tol·max|λ| below which a dense eigenvalue counts
    as negative. ``max_iterations``: ARPACK restarts per
    eigenvalue (each costs at most 20 Hessian-vector products); past it, an error says what to
    change instead of a hang.
    """
    weights = _checked_weights(objective, weights)
    if method not in _METHODS:
        raise UsageError(f"method must be one of {', '.join(map(repr, _METHODS))}, got {method!r}")
    if not (np.isfinite(tol) and 0 < tol < 1):
        raise UsageError(f"tol must be in (0, 1), e.g. 1e-8, got {tol!r}")
    if not isinstance(max_iterations, int | np.integer) or max_iterations < 1:
        raise UsageError(f"max_iterations must be a positive integer, got {max_iterations!r}")
    flat, unravel = ravel_pytree(weights)
    p = flat.size
    if method == "auto":
        method = "dense" if p <= DENSE_LIMIT else "lanczos"
    if method == "lanczos" and p < 3:
        raise UsageError(f"method='lanczos' needs at least 3 parameters, got {p}: use 'dense'")
    grad_norm = float(gradient_norm(_gradient(objective, weights)))
    if method == "dense":
        lo, hi, vector, negative = _dense(objective, weights, tol)
        hvps = 0
    else:
        lo, hi, vector, hvps = _lanczos(objective, weights, tol, max_iterations)
        negative = None
    vector = vector * np.sign(vector[np.argmax(np.abs(vector))])  # a fixed sign
    direction = tuple(np.asarray(x) for x in unravel(jnp.asarray(vector)))
    return CriticalPoint(grad_norm, lo, hi, p, negative, method, direction, hvps)


def saddle_escape_prediction(
    hessian_min: float, learning_rate: float, delta: float, escape_size: float
) -> float:
    """GD steps to grow a perturbation of size δ along λ_min's direction to ``escape_size``.

    Near a strict saddle W*, GD is ``x ← x − η H x`` for x = W − W* (to first order), so the
    component along λ_min's eigenvector grows by ``1 − ηλ_min = 1 + η|λ_min|`` each step:
    ``|x_t| = δ (1 + η|λ_min|)^t``, which reaches ``escape_size`` after

        t = log(escape_size / δ) / log(1 + η|λ_min|)

    steps (the first integer at or past t, for a whole count). ``inf`` when λ_min ≥ 0: no
    direction grows; 0 when escape_size ≤ δ.
    """
    for name, value in (("learning_rate", learning_rate), ("delta", delta)):
        if not (np.isfinite(value) and value > 0):
            raise UsageError(f"{name} must be a finite number > 0, got {value!r}")
    if not (np.isfinite(escape_size) and escape_size >= 0):
        raise UsageError(f"escape_size must be a finite number ≥ 0, got {escape_size!r}")
    if not np.isfinite(hessian_min):
        raise UsageError(f"hessian_min must be finite, got {hessian_min!r}")
    if hessian_min >= 0:
        return float("inf")
    if escape_size <= delta:
        return 0.0
    return float(np.log(escape_size / delta) / np.log1p(learning_rate * -hessian_min))


def _checked_weights(objective, weights) -> tuple:
    """The weights as a tuple of float64 arrays whose shapes chain and match the objective."""
    if not isinstance(weights, tuple | list) or not weights:
        raise UsageError(
            f"weights must be a tuple (W1, …, WL) of 2-d arrays, got {type(weights).__name__}"
        )
    weights = tuple(jnp.asarray(w, dtype=jnp.float64) for w in weights)
    for i, w in enumerate(weights, start=1):
        if w.ndim != 2:
            raise UsageError(f"weights[{i - 1}] (W{i}) must be 2-d, got shape {w.shape}")
        if not bool(jnp.all(jnp.isfinite(w))):
            raise UsageError(f"W{i} has NaN or inf entries: curvature needs a finite point")
    for i, (a, b) in enumerate(zip(weights[:-1], weights[1:]), start=1):
        if a.shape[1] != b.shape[0]:
            raise UsageError(
                f"W{i} is {a.shape} and W{i + 1} is {b.shape}: W{i}'s columns must equal "
                f"W{i + 1}'s rows"
            )
    if is_measured(objective):  # completion, sensing: the shape is the weights' own
        return weights
    output = objective.target.shape[0]
    inputs = objective.target.shape[1] if objective.factor is None else objective.factor.shape[1]
    shape = (weights[0].shape[0], weights[-1].shape[1])
    if shape != (output, inputs):
        raise UsageError(
            f"W1 ⋯ WL is {shape} but the objective maps {inputs} inputs to {output} outputs: "
            f"W1 needs {output} rows and WL {inputs} columns"
        )
    return weights


@jax.jit
def _gradient(objective, weights):
    return jax.grad(objective.loss)(weights)


@jax.jit
def _dense_hessian(objective, weights):
    flat, unravel = ravel_pytree(weights)
    return jax.hessian(lambda x: objective.loss(unravel(x)))(flat)


def _dense(objective, weights, tol):
    H = np.asarray(_dense_hessian(objective, weights))
    eigenvalues, vectors = np.linalg.eigh((H + H.T) / 2)
    scale = np.max(np.abs(eigenvalues))
    negative = int(np.sum(eigenvalues < -tol * scale))
    return float(eigenvalues[0]), float(eigenvalues[-1]), vectors[:, 0], negative


@jax.jit
def _moments(objective):
    """S = LᵀL (None for the identity) and C = T L, for the Gram form of the loss."""
    if objective.factor is None:
        return None, objective.target
    return objective.factor.T @ objective.factor, objective.target @ objective.factor


def _gram_loss(moments, weights):
    """``tr(W S Wᵀ) − 2⟨W, C⟩``, the loss less a constant, contracted from the narrow side."""
    S, C = moments
    gram, cross = S, C  # → W2 ⋯ WL S (W2 ⋯ WL)ᵀ and C (W2 ⋯ WL)ᵀ
    for w in reversed(weights[1:]):
        gram = w @ w.T if gram is None else w @ gram @ w.T
        cross = cross @ w.T
    W1 = weights[0]
    quadratic = jnp.sum(W1**2) if gram is None else jnp.sum((W1.T @ W1) * gram)
    return quadratic - 2 * jnp.sum(W1 * cross)


@jax.jit
def _hvp(moments, weights, vector):
    """H v by forward-over-reverse differentiation of the Gram form."""
    flat, unravel = ravel_pytree(weights)
    grad = jax.grad(lambda x: _gram_loss(moments, unravel(x)))
    return jax.jvp(grad, (flat,), (vector,))[1]


@jax.jit
def _loss_hvp(objective, weights, vector):
    """H v of ``objective.loss`` itself (measured objectives: no Gram form)."""
    flat, unravel = ravel_pytree(weights)
    grad = jax.grad(lambda x: objective.loss(unravel(x)))
    return jax.jvp(grad, (flat,), (vector,))[1]


def _lanczos(objective, weights, tol, max_iterations):
    p = sum(w.size for w in weights)
    count = 0
    if is_measured(objective):  # the generic product on the measured loss

        def product(v):
            return _loss_hvp(objective, weights, v)

    else:
        moments = _moments(objective)

        def product(v):
            return _hvp(moments, weights, v)

    def hvp(v):
        nonlocal count
        count += 1
        return np.asarray(product(jnp.asarray(v.ravel())))

    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh  # used here only

    v0 = np.random.default_rng(_START_SEED).standard_normal(p)
    if not np.any(hvp(v0)):  # H v0 = 0 for a random v0: H = 0
        return 0.0, 0.0, v0 / np.linalg.norm(v0), count

    def extreme(shift, which):
        operator = LinearOperator(
            (p, p), matvec=lambda v: hvp(v) - shift * v.ravel(), dtype=np.float64
        )
        try:
            values, vectors = eigsh(
                operator, k=1, which=which, v0=v0, tol=tol, maxiter=max_iterations
            )
        except ArpackNoConvergence:
            end = "largest" if which == "LA" else "smallest"
            raise UsageError(
                f"Lanczos (ARPACK) did not find the {end} Hessian eigenvalue within "
                f"max_iterations={max_iterations} restarts ({count} Hessian-vector products): "
                f"raise max_iterations, loosen tol (now {tol:g}), or use method='dense' "
                f"(p = {p})"
            ) from None
        return float(values[0]) + shift, vectors[:, 0]

    hi, _ = extreme(0.0, "LA")
    lo, vector = extreme(hi, "SA")
    return min(lo, hi), hi, vector, count

"""Preconditioned first-order methods and alternating least squares, exploiting the product
structure W = W1 ⋯ WL. With P_i = W1 ⋯ W_{i−1}, Q_i = W_{i+1} ⋯ WL and S = Lᵀ L the input second
moment (I for the population loss), the Gauss-Newton block of layer i is (Q_i S Q_iᵀ) ⊗ (P_iᵀ P_i).

- ``scaled-gd`` (Tong, Ma & Chi 2021): W_i ← W_i − η (P_iᵀP_i)⁻¹ ∇_i (Q_iQ_iᵀ)⁻¹; for depth 2,
  W1 ← W1 − η ∇₁ (W2W2ᵀ)⁻¹ and W2 ← W2 − η (W1ᵀW1)⁻¹ ∇₂. Its rate does not depend on κ(A).
  With ``projection`` = c > 0 (depth 2) every iterate, the start included, goes through the
  paper's scaled projection for completion (``scaled_projection``), bound B = c·√r·σ₁(W₀).
- ``precgd`` (Zhang, Fattahi & Zhang 2021): ScaledGD with the Grams damped by λ = c·sqrt(f/s̄)
  (s̄ = tr S / d_in; on a measured problem s̄ = ``measurement.sampling_scale``, the sampling
  rate p for completion), which keeps it linear when the rank is over-specified.
- ``natural-gradient``: the exact per-layer Gauss-Newton blocks, W_i ← W_i − (η/2)
  (P_iᵀP_i)⁻¹ ∇_i (Q_i S Q_iᵀ)⁻¹ (the ½ because f has no ½); η = 1 is the exact Gauss-Newton step
  of each layer with the others fixed. It equals ScaledGD only when S ∝ I.
- ``als``: one sweep of exact least squares per layer, W_i ← P_i⁺ T (Q_i Lᵀ)⁺ (minimum norm), in
  order; η < 1 moves only part of the way. On a completion, W1 row by row and W_L column by
  column (d × d normal equations from segment sums, O(m d²)), inner layers and every layer of
  sensing in vec form (``_measured``); ``natural-gradient`` needs S and refuses measured problems.

Identity factors (P_1, Q_L and S for the population loss) are never formed.
"""

from __future__ import annotations

import abc
import dataclasses

from deeplinear.core import linalg
from deeplinear.core.backend import jnp
from deeplinear.core.model import partial_products
from deeplinear.diagnostics.probes import product_singular_values
from deeplinear.methods import _measured as measured
from deeplinear.methods._base import AbstractMethod, number
from deeplinear.methods.cost import SOLVE, SVD, Measurements, loss_flops, parameters


def _damped(M, absolute=0.0, relative=0.0):
    """M + (absolute + relative · mean eigenvalue) I."""
    n = M.shape[0]
    return M + (absolute + relative * jnp.trace(M) / n) * jnp.eye(n, dtype=M.dtype)


def _gram_values(shapes) -> float:
    """The partial products P_i, Q_i and the two Grams per layer, with solver copies."""
    out, into = shapes[0][0], shapes[-1][1]
    partial = sum(out * a + b * into for a, b in shapes)
    return 2 * partial + 4 * sum(a * a + b * b for a, b in shapes)


MANY_RIGHT_HAND_SIDES = 256  # ``_solve`` goes through a⁻¹ from this many on (and > 4× the order)


def _solve(a, b):
    """a⁻¹ b. With many right-hand sides (``MANY_RIGHT_HAND_SIDES``, and over 4× the order) as
    a⁻¹ (one solve with the identity) times b: XLA's CPU solve with 1000 right-hand sides of
    order 10 took 2.5 ms a step against 0.1 ms for the product (ScaledGD on 1000 × 1000
    completion, p = 0.2: 4.2 → 1.8 ms per step on 2 cores). Fewer keep the solve: its
    round-off near convergence is the one the floors' resolution was measured against."""
    n = a.shape[-1]
    if b.shape[-1] >= MANY_RIGHT_HAND_SIDES and b.shape[-1] > 4 * n:
        return linalg.solve(a, jnp.eye(n, dtype=a.dtype)) @ b
    return linalg.solve(a, b)


def _precondition(g, left, right):
    """left⁻¹ g right⁻¹ for symmetric positive definite left and right (None = identity)."""
    if left is not None:
        g = _solve(left, g)
    if right is not None:
        g = _solve(right, g.T).T
    return g


@dataclasses.dataclass(frozen=True)
class AbstractLayerPreconditioned(AbstractMethod):
    """W_i ← W_i − η · scale · left_i⁻¹ ∇_i right_i⁻¹ with per-layer Gram preconditioners."""

    scale = 1.0

    @abc.abstractmethod
    def grams(self, weights, objective, loss) -> list[tuple]:
        """(left_i, right_i) per layer: symmetric positive definite, or None for the identity."""

    def flops(self, shapes, k):
        # the gradient, another chain product for the partial products, two Grams per layer
        # and two solves with them
        F = loss_flops(shapes, k)
        grams = sum(2 * a * b * min(a, b) for a, b in shapes) * 2
        solves = sum(SOLVE(b, a) for a, b in shapes) + sum(SOLVE(a, b) for a, b in shapes)
        return 3 * F + F + grams + solves, 0.0

    def init(self, weights, objective, learning_rate):
        return jnp.asarray(learning_rate, dtype=jnp.float64)

    def memory_values(self, shapes, k):
        return _gram_values(shapes) + 8 * sum(a * b for a, b in shapes)

    def passes(self, depth):
        return 3.0

    def step(self, weights, state, objective, loss, grads):
        new = tuple(
            w - state * self.scale * _precondition(g, left, right)
            for w, g, (left, right) in zip(weights, grads, self.grams(weights, objective, loss))
        )
        return new, state


def scaled_projection(weights, bound):
    """Tong, Ma & Chi's scaled projection P_B for (W1, W2) = (L, Rᵀ), L: n1 × r, R: n2 × r:
    L_i ← L_i · min(1, B / (√n1 ‖L_i Rᵀ‖)), R_j ← R_j · min(1, B / (√n2 ‖R_j Lᵀ‖)), both from
    the old (L, R); ‖L_i Rᵀ‖² = L_i (RᵀR) L_iᵀ. It keeps the iterates incoherent: every row of
    L Rᵀ within B/√n1, every column within B/√n2."""
    left, right = weights
    (n1, _), (_, n2) = left.shape, right.shape
    tiny = jnp.finfo(left.dtype).tiny
    rows = jnp.sqrt(n1 * jnp.sum((left @ (right @ right.T)) * left, axis=1))
    cols = jnp.sqrt(n2 * jnp.sum((left.T @ left @ right) * right, axis=0))
    return (
        left * jnp.minimum(1.0, bound / jnp.maximum(rows, tiny))[:, None],
        right * jnp.minimum(1.0, bound / jnp.maximum(cols, tiny))[None, :],
    )


@dataclasses.dataclass(frozen=True)
class ScaledGD(AbstractLayerPreconditioned):
    damping: float = number(0.0, 0)  # relative to the mean eigenvalue of each Gram
    projection: float = number(0.0, 0)  # c in the scaled projection's B = c·√r·σ₁(W₀); 0: none

    name = "scaled-gd"
    label = "ScaledGD"
    description = "ScaledGD: gradients preconditioned by the other factors' Grams"
    reference = "Tong, Ma & Chi, JMLR 2021 (arXiv:2005.08898)"

    def supports(self, objective, shapes=None):
        if self.projection and shapes is not None and len(shapes) != 2:
            return (
                f"scaled-gd.projection is defined for two factors, not {len(shapes)}: use one "
                "hidden layer or set projection = 0"
            )
        return None

    def init(self, weights, objective, learning_rate):
        rate = super().init(weights, objective, learning_rate)
        if not self.projection:
            return rate
        # the paper's B = C_B √(μr) σ₁(M), with σ₁(M) estimated by the start's (the spectral
        # estimate's top singular value) and C_B √μ = projection
        rank = weights[0].shape[1]
        sigma1 = product_singular_values(*weights)[0]
        return rate, self.projection * jnp.sqrt(rank) * sigma1

    def start(self, weights, state, objective):
        return scaled_projection(weights, state[1]) if self.projection else weights

    def step(self, weights, state, objective, loss, grads):
        if not self.projection:
            return super().step(weights, state, objective, loss, grads)
        rate, bound = state
        new, _ = super().step(weights, rate, objective, loss, grads)
        return scaled_projection(new, bound), state

    def grams(self, weights, objective, loss):
        lefts, rights = partial_products(weights)
        return [
            (None if p is None else _damped(p.T @ p, relative=self.damping),
             None if q is None else _damped(q @ q.T, relative=self.damping))
            for p, q in zip(lefts, rights)
        ]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class PrecGD(AbstractLayerPreconditioned):
    damping: float = number(1.0, 0, low_open=True)  # c in λ = c·sqrt(f / s̄)

    name = "precgd"
    label = "PrecGD"
    description = "PrecGD: ScaledGD with Grams damped by sqrt(loss)"
    reference = "Zhang, Fattahi & Zhang, NeurIPS 2021 (arXiv:2104.10790)"

    def grams(self, weights, objective, loss):
        if measured.is_measured(objective):
            mean_variance = measured.sampling_scale(objective, weights)
        else:
            S = objective.covariance()
            mean_variance = 1.0 if S is None else jnp.trace(S) / S.shape[0]
        lam = self.damping * jnp.sqrt(jnp.maximum(loss - objective.floor, 0.0) / mean_variance)
        lefts, rights = partial_products(weights)
        return [
            (None if p is None else _damped(p.T @ p, absolute=lam),
             None if q is None else _damped(q @ q.T, absolute=lam))
            for p, q in zip(lefts, rights)
        ]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class NaturalGradient(AbstractLayerPreconditioned):
    damping: float = number(0.0, 0)  # relative to the mean eigenvalue of each Kronecker factor

    name = "natural-gradient"
    label = "NG"
    description = "natural gradient with the exact Kronecker-factored Gauss-Newton block per layer"
    reference = "Amari 1998; Martens & Grosse 2015; Bernacchia, Lengyel & Hennequin 2018"
    scale = 0.5

    def supports(self, objective, shapes=None):
        if measured.is_measured(objective):
            return (
                "it needs the input covariance S of a fully observed least-squares loss, which a "
                "completion or sensing problem does not have (use scaled-gd or precgd)"
            )
        return None

    def grams(self, weights, objective, loss):
        S = objective.covariance()
        lefts, rights = partial_products(weights)
        out = []
        for p, q in zip(lefts, rights):
            if q is None:
                right = None if S is None else _damped(S, relative=self.damping)
            else:
                qs = q if S is None else q @ S
                right = _damped(qs @ q.T, relative=self.damping)
            out.append((None if p is None else _damped(p.T @ p, relative=self.damping), right))
        return out


@dataclasses.dataclass(frozen=True)
class ALS(AbstractMethod):
    """A sweep of exact (minimum-norm) least-squares solves, one layer at a time."""

    name = "als"
    label = "ALS"
    description = "alternating least squares: each layer solved exactly in turn (one sweep/step)"
    reference = "Golub & Van Loan; Jain, Netrapalli & Sanghavi 2013"

    def init(self, weights, objective, learning_rate):
        return jnp.asarray(learning_rate, dtype=jnp.float64)

    def supports(self, objective, shapes=None):
        penalty = getattr(objective, "penalty", None)
        if penalty is not None and shapes is not None and len(shapes) != 2:
            return "with problem.regularization it solves two layers only (ALS-WR): one hidden"
        if measured.is_measured(objective):
            return measured.dense_layer_reason(objective, shapes)
        return None

    def memory_values(self, shapes, k):
        values = 8 * sum(a * b for a, b in shapes)
        if not isinstance(k, Measurements):
            return values + _gram_values(shapes)
        # the partial products; the Grams per row/column (no n × n Gram of a layer is formed),
        # a chunk and the vec-form systems of the inner layers
        (n1, d0), (dL, n2) = shapes[0], shapes[-1]
        values += 2 * sum(n1 * a for a, _ in shapes[1:]) + 2 * sum(b * n2 for _, b in shapes[:-1])
        values += 2 * (n1 * d0 * d0 + n2 * dL * dL) + measured.CHUNK_VALUES + 4 * k.count
        values += 0 if k.dense else measured.gram_values(shapes, k.count)
        dense = shapes if k.dense else shapes[1:-1]
        return values + (3 * max((a * b) ** 2 for a, b in dense) if dense else 0)

    def passes(self, depth):
        return float(depth)  # the partial products again for every layer

    def flops(self, shapes, k):
        if isinstance(k, Measurements):
            return _measured_als_flops(shapes, k), 0.0
        # per layer a minimum-norm least-squares solve (an SVD) and two chain products
        F = loss_flops(shapes, k)
        return 3 * F + sum(SVD(max(a, b), min(a, b)) + 2 * F for a, b in shapes), 0.0

    def step(self, weights, state, objective, loss, grads):
        if measured.is_measured(objective):
            return measured.als_sweep(weights, objective, state), state
        weights = list(weights)
        for i in range(len(weights)):
            lefts, rights = partial_products(weights)
            best = layer_least_squares(lefts[i], rights[i], objective)
            weights[i] = weights[i] + state * (best - weights[i])
        return tuple(weights), state


def _measured_als_flops(shapes, k: Measurements) -> float:
    """One sweep on a measured objective: per layer the partial products, then either the
    row/column Grams (2md² + 2md), Cholesky and solves (completion's outer layers), or the vec
    design z_k and its normal matrix 2m(ab)² plus a dense solve."""
    (n1, _), (_, n2) = shapes[0], shapes[-1]
    m, depth = k.count, len(shapes)
    total = 3 * loss_flops(shapes, k)
    for i, (a, b) in enumerate(shapes):
        total += 2 * parameters(shapes) * max(a, b)  # the partial products
        if not k.dense and i in (0, depth - 1):
            d, n = (b, n1) if i == 0 else (a, n2)
            total += 2 * m * d * (d + 1) + n * (d**3 / 3 + 2 * d * d)
        else:
            design = 2 * m * a * b if not k.dense else 2 * m * n1 * n2 * (a + b)
            total += design + 2 * m * (a * b) ** 2 + SOLVE(a * b, 1)
    return total


def layer_least_squares(left, right, objective):
    """argmin_W ‖P W Q Lᵀ − T‖ of minimum norm, P⁺ T (Q Lᵀ)⁺ (P, Q None = identity)."""
    # the system z · (Q Lᵀ) = T, transposed: (L Qᵀ) zᵀ = Tᵀ; for the last layer Q = I
    system = objective.factor if right is None else objective.apply_factor(right).T
    z = objective.target if system is None else linalg.lstsq(system, objective.target.T)[0].T
    return z if left is None else linalg.lstsq(left, z)[0]

"""The least-squares objective in residual form, independent of the number of samples.

Every loss here is ``f(W) = ‖W Lᵀ − T‖²_F + r0`` for the end-to-end map W = W1 W2 ⋯ WL:

- sample loss ``‖W X − Y‖²_F`` (sum over samples and outputs, no ½): with the thin QR
  factorisation Xᵀ = Q R, ``L = R``, ``T = Y Q`` and ``r0 = min_W ‖W X − Y‖²``, the part of Y no
  linear map reaches (``accurate.irreducible_loss``, evaluated in double-double: for Y = A X
  computed in floating point it is the rounding of Y, 5.25e-29 at the notebook's seed 0).
- population loss ``‖W − A‖²_F``: ``L = I`` (stored as ``None``, so no product with an identity
  is ever formed), ``T = A``, ``r0 = 0``.

This form is exact and free of the cancellation that ``tr(W S Wᵀ) − 2 tr(W Cᵀ) + ‖Y‖²`` suffers
near zero loss, and its Gauss-Newton matrices equal those of the full sample residual.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from deeplinear.core.accurate import irreducible_loss
from deeplinear.core.backend import jax, jnp
from deeplinear.core.model import end_to_end


class Objective(NamedTuple):
    """``f(W) = ‖W Lᵀ − T‖²_F + r0``; a pytree of arrays, so it can be batched with ``vmap``."""

    factor: jax.Array | None  # L, k × input; None means the identity (population loss)
    target: jax.Array  # T, output × k
    floor: jax.Array  # r0, scalar
    input_sum: jax.Array  # X 1 (NaN for a population loss)
    output_total: jax.Array  # 1ᵀ Y 1 (NaN for a population loss)

    @classmethod
    def from_samples(cls, X: np.ndarray, Y: np.ndarray) -> Objective:
        """The sample loss ‖W X − Y‖²_F, reduced through the thin QR factorisation of Xᵀ."""
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64)
        Q, R = np.linalg.qr(X.T)
        target = Y @ Q
        floor = irreducible_loss(X, Y)[0]
        return cls(
            jnp.asarray(R),
            jnp.asarray(target),
            jnp.asarray(floor),
            jnp.asarray(X.sum(axis=1)),
            jnp.asarray(Y.sum()),
        )

    @classmethod
    def population(cls, A: np.ndarray) -> Objective:
        """The population loss ‖W − A‖²_F (inputs x ~ N(0, I))."""
        A = np.asarray(A, dtype=np.float64)
        nan = jnp.asarray(np.nan)
        return cls(None, jnp.asarray(A), jnp.asarray(0.0), jnp.full(A.shape[1], nan), nan)

    def apply_factor(self, M) -> jax.Array:
        """M Lᵀ (M itself for the population loss)."""
        return M if self.factor is None else M @ self.factor.T

    def covariance(self) -> jax.Array | None:
        """S = Lᵀ L, the input second moment (X Xᵀ for samples); None for the identity."""
        return None if self.factor is None else self.factor.T @ self.factor

    def residual(self, weights) -> jax.Array:
        """The reduced residual W Lᵀ − T (output × k)."""
        return self.apply_factor(end_to_end(weights)) - self.target

    def loss(self, weights) -> jax.Array:
        """The sum of squared errors, without ½."""
        return jnp.sum(self.residual(weights) ** 2) + self.floor

    def notebook_loss(self, weights) -> jax.Array:
        """What the notebook's LM reported: ``np.sum(Yhat - Y)**2``, the square of the sum."""
        return (jnp.sum(end_to_end(weights) @ self.input_sum) - self.output_total) ** 2

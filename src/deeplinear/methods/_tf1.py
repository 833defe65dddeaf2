"""The notebook's optimizers exactly as TensorFlow 1 ran them.

TF1 keeps hyperparameters as float32 constants cast to float64 (``lr = float(np.float32(lr))``)
and accumulates Adam's β-powers in float32. Its Adam update is::

    m ← m + (g − m)(1 − β1);   v ← v + (g² − v)(1 − β2)
    w ← w − lr · sqrt(1 − β2ᵗ)/(1 − β1ᵗ) · m / (sqrt(v) + ε)

i.e. ε is added to sqrt(v), not to the bias-corrected sqrt(v̂) as in optax. Without these details
the curves drift from TF's by 4e-9 to 8e-5 relative over 3000 steps.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import optax

from deeplinear.core.backend import jax, jnp
from deeplinear.errors import UsageError
from deeplinear.methods._optax import AbstractAdam, AbstractGD


def float32_rounded(value):
    """``value`` rounded through float32 and back, as TF1 casts its Python-float constants.

    ``lax.reduce_precision`` rather than two casts: XLA on a GPU may drop a cast pair inside a
    compiled program (``xla_allow_excess_precision``), and the rounding with it. The two agree
    everywhere except float32's subnormals (below 1.2e-38), which become 0.
    """
    value = jnp.asarray(value, dtype=jnp.float64)
    return jax.lax.reduce_precision(value, exponent_bits=8, mantissa_bits=23)


class ScaleByTF1AdamState(NamedTuple):
    mu: optax.Updates
    nu: optax.Updates
    beta1_power: jax.Array  # float32, β1ᵗ
    beta2_power: jax.Array  # float32, β2ᵗ


def scale_by_tf1_adam(b1: float, b2: float, eps: float) -> optax.GradientTransformation:
    """TF1's Adam direction ``sqrt(1 − β2ᵗ)/(1 − β1ᵗ) · m / (sqrt(v) + ε)`` (float32 constants)."""
    b1_32, b2_32 = np.float32(b1), np.float32(b2)
    b1_64, b2_64, eps_64 = float(b1_32), float(b2_32), float(np.float32(eps))

    def init_fn(params):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return ScaleByTF1AdamState(zeros, zeros, jnp.float32(b1_32), jnp.float32(b2_32))

    def update_fn(updates, state, params=None):
        del params
        mu = jax.tree_util.tree_map(lambda m, g: m + (g - m) * (1 - b1_64), state.mu, updates)
        nu = jax.tree_util.tree_map(lambda v, g: v + (g * g - v) * (1 - b2_64), state.nu, updates)
        p1 = state.beta1_power.astype(jnp.float64)
        p2 = state.beta2_power.astype(jnp.float64)
        correction = jnp.sqrt(1 - p2) / (1 - p1)
        direction = jax.tree_util.tree_map(
            lambda m, v: (m * correction) / (jnp.sqrt(v) + eps_64), mu, nu
        )
        powers = (state.beta1_power * b1_32, state.beta2_power * b2_32)
        return direction, ScaleByTF1AdamState(mu, nu, *powers)

    return optax.GradientTransformation(init_fn, update_fn)


@dataclasses.dataclass(frozen=True)
class TF1GD(AbstractGD):
    """TF1's ``GradientDescentOptimizer``: W ← W − fl32(η) ∇f(W)."""

    name = "tf1-gd"
    penalized = False  # a residual model or closed form: no ratings penalty
    label = "GD"
    description = "gradient descent as TF1 ran it (float32 learning rate)"
    reference = "tf.compat.v1.train.GradientDescentOptimizer"

    def learning_rate_used(self, learning_rate):
        return float32_rounded(learning_rate)


@dataclasses.dataclass(frozen=True)
class TF1Adam(AbstractAdam):
    """TF1's ``AdamOptimizer`` (ε outside the bias correction, float32 hyperparameters)."""

    name = "tf1-adam"
    penalized = False  # a residual model or closed form: no ratings penalty
    label = "ADAM"
    description = "Adam as TF1 ran it (ε convention, float32 hyperparameters and β-powers)"
    reference = "tf.compat.v1.train.AdamOptimizer; Kingma & Ba 2015"

    def check(self):
        # TF1 holds them as float32 constants: b1, b2 must stay below 1 and eps finite there
        for field in ("b1", "b2"):
            if np.float32(getattr(self, field)) >= 1:
                raise UsageError(
                    f"{self.name}.{field} rounds to 1 in float32 (TF1's constants), got "
                    f"{getattr(self, field)!r}: use at most {float(np.nextafter(np.float32(1), 0))}"
                )
        if self.eps > float(np.finfo(np.float32).max):
            raise UsageError(
                f"{self.name}.eps overflows float32 (TF1's constants), got {self.eps!r}: "
                f"use at most {float(np.finfo(np.float32).max):.4g}"
            )

    def learning_rate_used(self, learning_rate):
        return float32_rounded(learning_rate)

    def transformation(self, learning_rate):
        return optax.chain(
            scale_by_tf1_adam(self.b1, self.b2, self.eps),
            optax.scale_by_learning_rate(learning_rate),
        )

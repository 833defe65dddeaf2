"""First-order methods from optax, adapted to the method interface.

The learning rate goes through ``optax.inject_hyperparams`` into the optimizer state, so a grid of
learning rates is a ``vmap`` over ``init``.
"""

from __future__ import annotations

import abc
import dataclasses

import optax

from ._base import AbstractMethod, check_range


@dataclasses.dataclass(frozen=True)
class AbstractOptaxMethod(AbstractMethod):
    """A method defined by an optax ``GradientTransformation`` factory of the learning rate."""

    @abc.abstractmethod
    def transformation(self, learning_rate) -> optax.GradientTransformation: ...

    def learning_rate_used(self, learning_rate):
        """The learning rate as the optimizer applies it (TF1 variants round it)."""
        return learning_rate

    def _injected(self, learning_rate) -> optax.GradientTransformation:
        return optax.inject_hyperparams(self.transformation)(learning_rate=learning_rate)

    def init(self, weights, objective, learning_rate):
        return self._injected(self.learning_rate_used(learning_rate)).init(weights)

    def step(self, weights, state, objective, loss, grads):
        # The learning rate given here is a placeholder: the one stored in ``state`` is used.
        updates, state = self._injected(0.0).update(grads, state, weights)
        return optax.apply_updates(weights, updates), state


@dataclasses.dataclass(frozen=True)
class GD(AbstractOptaxMethod):
    """W ← W − η ∇f(W)."""

    name = "gd"
    label = "GD"
    description = "gradient descent (optax.sgd)"
    reference = "Cauchy 1847; optax.sgd"

    def transformation(self, learning_rate):
        return optax.sgd(learning_rate)


@dataclasses.dataclass(frozen=True)
class Adam(AbstractOptaxMethod):
    """Adam with bias correction; ``eps`` is added to the bias-corrected sqrt(v̂) (optax)."""

    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8

    name = "adam"
    label = "ADAM"
    description = "Adam (optax.adam)"
    reference = "Kingma & Ba 2015, arXiv:1412.6980"

    def __post_init__(self):
        check_range(self.name, "b1", self.b1, 0, 1)
        check_range(self.name, "b2", self.b2, 0, 1)
        check_range(self.name, "eps", self.eps, 0)

    def transformation(self, learning_rate):
        return optax.adam(learning_rate, b1=self.b1, b2=self.b2, eps=self.eps)

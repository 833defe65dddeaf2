"""First-order methods from optax, adapted to the method interface.

The learning rate goes through ``optax.inject_hyperparams`` into the optimizer state, so a grid of
learning rates is a ``vmap`` over ``init``.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar

import optax

from deeplinear.errors import UsageError
from deeplinear.methods._base import AbstractMethod, choice, integer, number
from deeplinear.methods.cost import loss_flops, parameters

SCHEDULES = ("constant", "cosine", "exponential")


@dataclasses.dataclass(frozen=True)
class AbstractOptaxMethod(AbstractMethod):
    """A method defined by an optax ``GradientTransformation`` factory of the learning rate.

    Every such method takes a learning-rate schedule from optax: ``constant``; ``cosine``, which
    decays η to ``decay_factor``·η over ``decay_steps`` (then holds it); or ``exponential``, which
    multiplies η by ``decay_factor`` every ``decay_steps`` (smoothly).

    FLOPs: the gradient (3F) plus ``elementwise`` operations per parameter, the optimizer's own
    arithmetic (methods with more, such as L-BFGS and Muon, override ``flops``).
    """

    schedule: str = choice("constant", *SCHEDULES)
    decay_steps: int = integer(1000, 1, 2**31 - 1)
    decay_factor: float = number(0.01, 0, 1, low_open=True, high_open=False)

    first_order = True
    elementwise: ClassVar[int]  # optimizer arithmetic per parameter, beyond the gradient

    @abc.abstractmethod
    def transformation(self, learning_rate) -> optax.GradientTransformation: ...

    def flops(self, shapes, k):
        return 3 * loss_flops(shapes, k) + self.elementwise * parameters(shapes), 0.0

    def _scheduled(self, learning_rate) -> optax.GradientTransformation:
        base = self.transformation(learning_rate)
        if self.schedule == "constant":
            return base
        if self.schedule == "cosine":
            factor = optax.cosine_decay_schedule(1.0, self.decay_steps, alpha=self.decay_factor)
        else:
            factor = optax.exponential_decay(1.0, self.decay_steps, self.decay_factor)
        return optax.chain(base, optax.scale_by_schedule(factor))

    def _injected(self, learning_rate) -> optax.GradientTransformation:
        return optax.inject_hyperparams(self._scheduled)(learning_rate=learning_rate)

    def init(self, weights, objective, learning_rate):
        return self._injected(self.learning_rate_used(learning_rate)).init(weights)

    def transform(self, weights, state, objective, loss, grads):
        """The transformation's ``(updates, state)``: what ``step`` applies to the weights."""
        # The learning rate given here is a placeholder: the one stored in ``state`` is used.
        return self._injected(0.0).update(
            grads, state, weights, value=loss, grad=grads, value_fn=objective.loss
        )

    def step(self, weights, state, objective, loss, grads):
        updates, state = self.transform(weights, state, objective, loss, grads)
        return optax.apply_updates(weights, updates), state


@dataclasses.dataclass(frozen=True)
class AbstractGD(AbstractOptaxMethod):
    """W ← W − η_t ∇f(W), η_t = ``learning_rate_used(η)`` times the schedule's factor.

    With ``schedule == "constant"`` the step is exactly W ← W − learning_rate_used(η)·∇f(W)
    (what ``batched``'s kernels compute); the Gauss-Newton spectrum predicts its local rate.
    """

    gauss_newton_rate = True
    elementwise = 2

    @abc.abstractmethod
    def learning_rate_used(self, learning_rate):
        """η as applied: each final GD says which (``GD``: η itself; ``TF1GD``: fl32(η))."""

    def transformation(self, learning_rate):
        return optax.sgd(learning_rate)


@dataclasses.dataclass(frozen=True)
class GD(AbstractGD):
    """W ← W − η ∇f(W)."""

    name = "gd"
    label = "GD"
    description = "gradient descent (optax.sgd)"
    reference = "Cauchy 1847; optax.sgd"

    def learning_rate_used(self, learning_rate):
        return learning_rate


@dataclasses.dataclass(frozen=True)
class AbstractAdam(AbstractOptaxMethod):
    """Adam's hyperparameters (β1, β2, ε) and its family's dashed curves."""

    b1: float = number(0.9, 0, 1)
    b2: float = number(0.999, 0, 1)
    eps: float = number(1e-8, 0)

    line_style = "--"
    elementwise = 12


@dataclasses.dataclass(frozen=True)
class Adam(AbstractAdam):
    """Adam with bias correction; ``eps`` is added to the bias-corrected sqrt(v̂) (optax)."""

    name = "adam"
    label = "ADAM"
    description = "Adam (optax.adam)"
    reference = "Kingma & Ba 2015, arXiv:1412.6980"

    def transformation(self, learning_rate):
        return optax.adam(learning_rate, b1=self.b1, b2=self.b2, eps=self.eps)


@dataclasses.dataclass(frozen=True)
class AbstractMomentum(AbstractOptaxMethod):
    """A velocity v with momentum β (``momentum``)."""

    momentum: float = number(0.9, 0, 1)


@dataclasses.dataclass(frozen=True)
class Momentum(AbstractMomentum):
    """Heavy ball: v ← β v + ∇f, W ← W − η v."""

    name = "momentum"
    elementwise = 4
    label = "MOMENTUM"
    description = "gradient descent with heavy-ball momentum (optax.sgd)"
    reference = "Polyak 1964"

    def transformation(self, learning_rate):
        return optax.sgd(learning_rate, momentum=self.momentum)


@dataclasses.dataclass(frozen=True)
class Nesterov(AbstractMomentum):
    """Nesterov's accelerated gradient (optax's formulation)."""

    name = "nesterov"
    elementwise = 5
    label = "NESTEROV"
    description = "Nesterov accelerated gradient (optax.sgd, nesterov=True)"
    reference = "Nesterov 1983; Sutskever et al. 2013"

    def transformation(self, learning_rate):
        return optax.sgd(learning_rate, momentum=self.momentum, nesterov=True)


@dataclasses.dataclass(frozen=True)
class AdamW(AbstractAdam):
    """Adam with decoupled weight decay; the decay moves the minimum, so the loss floors above 0."""

    weight_decay: float = number(1e-4, 0)

    name = "adamw"
    elementwise = 14
    label = "ADAMW"
    description = "Adam with decoupled weight decay (optax.adamw); the decay biases the minimum"
    reference = "Loshchilov & Hutter 2019, arXiv:1711.05101"

    def transformation(self, learning_rate):
        return optax.adamw(
            learning_rate, b1=self.b1, b2=self.b2, eps=self.eps, weight_decay=self.weight_decay
        )


@dataclasses.dataclass(frozen=True)
class RMSProp(AbstractOptaxMethod):
    """W ← W − η ∇f / sqrt(ν + ε), ν the running mean of ∇f²."""

    decay: float = number(0.9, 0, 1)
    eps: float = number(1e-8, 0)

    name = "rmsprop"
    elementwise = 6
    label = "RMSPROP"
    description = "RMSProp (optax.rmsprop)"
    reference = "Tieleman & Hinton 2012"

    def transformation(self, learning_rate):
        return optax.rmsprop(learning_rate, decay=self.decay, eps=self.eps)


@dataclasses.dataclass(frozen=True)
class Adagrad(AbstractOptaxMethod):
    """W ← W − η ∇f / sqrt(Σ ∇f² + ε)."""

    initial_accumulator_value: float = number(0.1, 0)
    eps: float = number(1e-7, 0)

    name = "adagrad"
    elementwise = 5
    label = "ADAGRAD"
    description = "Adagrad (optax.adagrad)"
    reference = "Duchi, Hazan & Singer 2011"

    def transformation(self, learning_rate):
        return optax.adagrad(learning_rate, self.initial_accumulator_value, self.eps)


@dataclasses.dataclass(frozen=True)
class LBFGS(AbstractOptaxMethod):
    """L-BFGS with optax's zoom line search; η scales the first trial step (1 is the default)."""

    memory_size: int = integer(10, 1, 1000)

    name = "lbfgs"
    label = "LBFGS"
    description = "L-BFGS with a zoom line search (optax.lbfgs)"
    reference = "Liu & Nocedal 1989; Nocedal & Wright 2006, alg. 7.5"

    def check(self):
        if self.schedule != "constant":
            raise UsageError("lbfgs.schedule must be 'constant': its line search sets the step")

    def transformation(self, learning_rate):
        return optax.lbfgs(learning_rate, memory_size=self.memory_size)

    def memory_values(self, shapes, k):
        return (2 * self.memory_size + 10) * sum(a * b for a, b in shapes)

    def flops(self, shapes, k):
        # assumes one line-search evaluation (another value and gradient) per step
        p = parameters(shapes)
        return 2 * 3 * loss_flops(shapes, k) + 4 * self.memory_size * p + 10 * p, 0.0


@dataclasses.dataclass(frozen=True)
class Muon(AbstractOptaxMethod):
    """Momentum orthogonalized by Newton-Schulz iterations, per weight matrix.

    Weight decay is off by default: with it the minimum moves and exact convergence is
    impossible. With a constant step Muon cannot converge exactly either (its update has a fixed
    spectral size): use a decaying schedule.
    """

    beta: float = number(0.95, 0, 1)
    ns_steps: int = integer(5, 1, 100)
    weight_decay: float = number(0.0, 0)

    name = "muon"
    label = "MUON"
    description = "Muon: orthogonalized momentum (optax.contrib.muon); needs a decaying schedule"
    reference = "Jordan et al. 2024; optax.contrib.muon"

    def flops(self, shapes, k):
        # each Newton-Schulz iteration on an a × b matrix: X Xᵀ, its square, and the product
        ns = sum(4 * min(a, b) ** 2 * max(a, b) + 2 * min(a, b) ** 3 for a, b in shapes)
        gradient = 3 * loss_flops(shapes, k)
        return gradient + self.ns_steps * ns + 12 * parameters(shapes), 0.0

    def transformation(self, learning_rate):
        return optax.contrib.muon(
            learning_rate, ns_steps=self.ns_steps, beta=self.beta, weight_decay=self.weight_decay
        )

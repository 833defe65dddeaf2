"""The method interface: hyperparameters as fields, pure ``init`` and ``step``.

A method is a frozen dataclass. Its state is a pytree of arrays that ``lax.scan`` carries and
``vmap`` batches; the learning rate is passed to ``init`` and lives in the state, so one compiled
program serves a whole grid of learning rates.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

from ..errors import UsageError

PyTree = Any


@dataclasses.dataclass(frozen=True)
class AbstractMethod(abc.ABC):
    """An optimizer for ``objective.loss(weights)``.

    ``init(weights, objective, learning_rate) -> state`` and
    ``step(weights, state, objective, loss, grads) -> (weights, state)``, where ``loss`` and
    ``grads`` are the loss and its gradient at ``weights`` (the runner computes them once per
    step for recording anyway).
    """

    name: ClassVar[str]
    label: ClassVar[str]  # legend prefix, e.g. "GD" as in the notebook's "GD step=1e-05"
    description: ClassVar[str]
    reference: ClassVar[str]

    @abc.abstractmethod
    def init(self, weights: PyTree, objective, learning_rate) -> PyTree: ...

    @abc.abstractmethod
    def step(
        self, weights: PyTree, state: PyTree, objective, loss, grads
    ) -> tuple[PyTree, PyTree]: ...

    def record(self, state: PyTree) -> dict:
        """Per-record quantities of the method's own (e.g. LM's damping), recorded as columns."""
        return {}

    def hyperparameters(self) -> dict[str, Any]:
        """The method's hyperparameters (its dataclass fields) as a plain dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def check_range(method: str, field: str, value, low=None, high=None, *, low_open=False) -> None:
    """Raise a one-line UsageError unless ``low (<|≤) value < high``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{method}.{field} must be a number, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        bound = ">" if low_open else "≥"
        raise UsageError(f"{method}.{field} must be {bound} {low}, got {value!r}")
    if high is not None and value >= high:
        raise UsageError(f"{method}.{field} must be < {high}, got {value!r}")


def check_count(method: str, field: str, value) -> None:
    """Raise a one-line UsageError unless ``value`` is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{method}.{field} must be a positive integer, got {value!r}")

"""The method interface: hyperparameters as fields, pure ``init`` and ``step``.

A method is a frozen dataclass. Its state is a pytree of arrays that ``lax.scan`` carries and
``vmap`` batches; the learning rate is passed to ``init`` and lives in the state, so one compiled
program serves a whole grid of learning rates.
"""

from __future__ import annotations

import abc
import dataclasses
import difflib
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import pyarrow as pa

from deeplinear.errors import UsageError

PyTree = Any


@dataclasses.dataclass(frozen=True)
class AbstractMethod(abc.ABC):
    """An optimizer for ``objective.loss(weights)``.

    ``init(weights, objective, learning_rate) -> state`` and
    ``step(weights, state, objective, loss, grads) -> (weights, state)``, where ``loss`` and
    ``grads`` are the loss and its gradient at ``weights`` (the runner computes them once per
    step for recording anyway).

    Everything the rest of the package needs to know about a method is declared here, on its
    class, never looked up by its name: whether it runs in the compiled loop (``in_loop``),
    whether the Gauss-Newton spectrum predicts its local rate (``gauss_newton_rate``), the
    columns ``record`` adds to the table (``columns``), its FLOPs per step (``flops``) and the
    learning rate it actually applies (``learning_rate_used``).
    """

    name: ClassVar[str]
    label: ClassVar[str]  # legend prefix, e.g. "GD" as in the notebook's "GD step=1e-05"
    description: ClassVar[str]
    reference: ClassVar[str]
    # False: runs from Python through ``run_one(objective, weights, steps, …)`` (SciPy's peers)
    in_loop: ClassVar[bool] = True
    # True where the Gauss-Newton spectrum predicts the local rate, 1 − η·λ (plain GD)
    gauss_newton_rate: ClassVar[bool] = False
    # the columns ``record(state)`` returns, name → Arrow type (recorded per row)
    columns: ClassVar[Mapping[str, pa.DataType]] = {}
    # figures: only gradients and elementwise arithmetic (the notebook's figure 1 draws these)
    first_order: ClassVar[bool] = False
    line_style: ClassVar[str] = "-"  # matplotlib line style of its curves ("--": Adam's family)
    # False: it minimizes the residuals (a Gauss-Newton model, a closed form), so it would
    # ignore an objective's ``penalty`` (ratings' regularization): ``refusal`` says so
    penalized: ClassVar[bool] = True

    @abc.abstractmethod
    def init(self, weights: PyTree, objective, learning_rate) -> PyTree: ...

    @abc.abstractmethod
    def step(
        self, weights: PyTree, state: PyTree, objective, loss, grads
    ) -> tuple[PyTree, PyTree]: ...

    def __post_init__(self):
        check_hyperparameters(self)  # each field against its declaration
        self.check()

    def check(self) -> None:
        """Checks across fields, beyond each field's declaration (one-line UsageError)."""
        return None

    def start(self, weights: PyTree, state: PyTree, objective) -> PyTree:
        """The weights the first step starts from, given the initial ``state``: ``weights``
        (ScaledGD with a projection projects them, as its paper's algorithm does)."""
        return weights

    def supports(self, objective, shapes: list[tuple[int, int]] | None = None) -> str | None:
        """None if the method can run on ``objective`` (with layer ``shapes``, when given), else
        the reason it cannot, in a few words: ``runner.run`` refuses up front with it."""
        return None

    def memory_values(self, shapes: list[tuple[int, int]], k: int | None) -> float:
        """Float64 values one run holds while it steps (weights, gradient, state, temporaries),
        for layer ``shapes`` and ``k`` rows of the reduced residual (None: population loss):
        the memory estimate ``budget`` checks before anything runs."""
        return 8 * sum(a * b for a, b in shapes)

    def updates(self, steps: int) -> int:
        """The updates a run of ``steps`` steps makes (``budget``'s time estimate): ``steps``;
        a baseline that solves once (``nuclear-norm``) makes one."""
        return steps

    def passes(self, depth: int) -> float:
        """Traversals of the layer chain per step, relative to one value-and-gradient: the
        per-layer overhead in ``budget``'s time estimate."""
        return 1.0

    @abc.abstractmethod
    def flops(self, shapes: list[tuple[int, int]], k: int | None) -> tuple[float, float]:
        """(FLOPs per step, FLOPs per conjugate-gradient iteration) for layer ``shapes`` and
        ``k`` rows of the reduced residual (None: population loss): a model built from
        ``cost``'s blocks (``loss_flops``, ``QR``, ``SVD``, …), summed into the ``flops``
        column (per-CG FLOPs times the recorded ``cg_steps``)."""

    def learning_rate_used(self, learning_rate):
        """The learning rate as the method applies it (identity; TF1's variants round it to
        float32)."""
        return learning_rate

    def record(self, state: PyTree) -> dict:
        """Per-record quantities of the method's own (e.g. LM's damping), recorded as columns:
        exactly the keys of ``columns``."""
        return {}

    def hyperparameters(self) -> dict[str, Any]:
        """The method's hyperparameters (its dataclass fields) as a plain dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclasses.dataclass(frozen=True)
class Hyper:
    """What one hyperparameter accepts, declared once beside its field (see ``number`` etc.).

    ``AbstractMethod.__post_init__`` checks every field against its declaration, and
    ``deeplinear methods`` prints the same declaration, so the two never disagree.
    """

    kind: str  # "number" | "integer" | "choice" | "flag"
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself excluded
    high_open: bool = True  # high itself excluded
    choices: tuple = ()
    optional: bool = False  # None allowed (from Python only: TOML has no null)

    def describe(self) -> str:
        """``a number in (0, 1)``, ``an integer in [1, 200]``, ``one of 'a', 'b'``, …"""
        if self.kind == "choice":
            text = "one of " + ", ".join(map(repr, self.choices))
        elif self.kind == "flag":
            text = "true or false"
        else:
            text = "a finite number" if self.kind == "number" else "an integer"
            low, high = _bound(self.low), _bound(self.high)
            if self.low is not None and self.high is not None:
                text += (
                    f" in {'(' if self.low_open else '['}{low}, {high}"
                    f"{')' if self.high_open else ']'}"
                )
            elif self.low is not None:
                text += f" {'>' if self.low_open else '≥'} {low}"
            elif self.high is not None:
                text += f" {'<' if self.high_open else '≤'} {high}"
        return text + (" (or None)" if self.optional else "")

    def check(self, method: str, field: str, value) -> None:
        """Raise a one-line UsageError naming ``method.field`` unless ``value`` fits."""
        if value is None and self.optional:
            return
        expected = f"{method}.{field} must be {self.describe()}, got {value!r}"
        if self.kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise UsageError(expected)
            return
        if self.kind == "flag":
            if not isinstance(value, bool):
                raise UsageError(expected)
            return
        wanted = int if self.kind == "integer" else int | float
        if isinstance(value, bool) or not isinstance(value, wanted):
            raise UsageError(f"{expected} ({type(value).__name__})")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise UsageError(expected)
        if self.low is not None and (number < self.low or (self.low_open and number == self.low)):
            raise UsageError(expected)
        if self.high is not None and (
            number > self.high or (self.high_open and number == self.high)
        ):
            raise UsageError(expected)


def _bound(value) -> str:
    return str(value) if value is None or isinstance(value, int) else f"{value:g}"


def number(default, low=None, high=None, *, low_open=False, high_open=True, optional=False):
    """A finite real hyperparameter in [low, high) (``low_open``/``high_open`` choose the ends)."""
    spec = Hyper("number", low, high, low_open, high_open, optional=optional)
    return dataclasses.field(default=default, metadata={"hyper": spec})


def integer(default, low=1, high=None):
    """An integer hyperparameter in [low, high] (bounds included)."""
    spec = Hyper("integer", low, high, high_open=False)
    return dataclasses.field(default=default, metadata={"hyper": spec})


def choice(default, *choices):
    """A string hyperparameter, one of ``choices``."""
    return dataclasses.field(default=default, metadata={"hyper": Hyper("choice", choices=choices)})


def flag(default, *, optional=False):
    """A boolean hyperparameter (``optional``: None too, meaning "decide by the problem")."""
    spec = Hyper("flag", optional=optional)
    return dataclasses.field(default=default, metadata={"hyper": spec})


def declarations(cls) -> dict[str, tuple[Any, Hyper]]:
    """Every hyperparameter of a method class: name → (default, declaration)."""
    out = {}
    for f in dataclasses.fields(cls):
        if "hyper" not in f.metadata:  # a programming error, caught by the tests
            raise TypeError(f"{cls.__name__}.{f.name} has no declaration (number, integer, …)")
        out[f.name] = (f.default, f.metadata["hyper"])
    return out


def check_names(cls, hyperparameters: Mapping[str, Any]) -> None:
    """Refuse in one line a hyperparameter that ``cls`` does not take, naming the ones it does
    (its dataclass fields, not its class-level attributes) and the closest."""
    takes = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(hyperparameters) - set(takes))
    if unknown:
        close = difflib.get_close_matches(unknown[0], takes, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UsageError(
            f"{cls.name}: unknown hyperparameter {unknown[0]!r} ({hint}it takes: "
            f"{', '.join(takes) or 'none'})"
        )


def check_hyperparameters(method) -> None:
    """Check every field of ``method`` against its declaration (one-line UsageError)."""
    for name, (_, spec) in declarations(type(method)).items():
        spec.check(method.name, name, getattr(method, name))


def changed_hyperparameters(method) -> dict:
    """The hyperparameters that differ from their defaults (they name the run in its id)."""
    return {
        field: getattr(method, field)
        for field, (default, _) in declarations(type(method)).items()
        if getattr(method, field) != default
    }


def refusal(method, objective, shapes=None) -> str | None:
    """Why ``method`` cannot run on ``objective`` (layer ``shapes``): a penalty it would
    ignore (``penalized``), else its own ``supports``; None if it can."""
    if getattr(objective, "penalty", None) is not None and not method.penalized:
        return (
            "it fits the residuals alone and would ignore problem.regularization's penalty: "
            "use als, gd, adam, scaled-gd or another method that follows the loss, or set "
            "problem.regularization = 0"
        )
    return method.supports(objective, shapes)

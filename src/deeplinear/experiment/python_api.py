"""``deeplinear.run``: any optimizer on a problem in one call, the results table back.

>>> import deeplinear as dl, optax
>>> r = dl.run(optax.adam(1e-2), steps=1000)                  # the notebook's problem, seed 0
>>> r = dl.run("adam", steps=1000, learning_rates=[1e-3, 1e-2], hyperparameters={"b1": 0.8})
>>> r = dl.run(optax.sgd, dl.notebook_problem(3), steps=500, learning_rates=[1e-4, 1e-3])
>>> r.table                 # Arrow: the columns ``deeplinear run`` writes to curves.parquet
>>> r.to_frame()            # pandas (or frame="polars")
>>> r.final_weights[0]      # (W1, …, WL) of the first learning rate's run

``method`` is a registered name, a method (``AbstractMethod`` instance or class), an optax
transformation (its learning rate fixed inside it: the runner's learning rate is 1 and recorded
as 1), an optax factory ``f(learning_rate, **hyperparameters)`` (the learning rates go through
``optax.inject_hyperparams``, one compiled program for the grid), or an optimistix least-squares
solver instance (no learning rate: 1). Foreign objects are wrapped by ``methods._foreign``.

``runner.run`` stays the low-level API (an objective, batched weights and states, continuation).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from deeplinear.errors import UsageError
from deeplinear.experiment.execution import run_info
from deeplinear.loop import runner
from deeplinear.methods import (
    METHODS,
    AbstractMethod,
    changed_hyperparameters,
    check_names,
    make_method,
)
from deeplinear.methods._foreign import (
    AbstractOptaxTransformation,
    AbstractSolverInstance,
    default_name,
    method_class,
)
from deeplinear.objectives.measurement import is_measured, laid_out
from deeplinear.objectives.objective import Objective
from deeplinear.problems.dense import Problem, notebook_problem
from deeplinear.problems.measured import MeasuredProblem
from deeplinear.store.frames import FRAMES, INSTALL
from deeplinear.store.results import batch_table


@dataclass(frozen=True)
class RunResult:
    """The runs of one ``deeplinear.run`` call: one per learning rate, in the order given."""

    method: object  # the AbstractMethod that ran
    problem: object  # the Problem (None when an Objective was given)
    objective: object
    initial_weights: tuple
    learning_rates: tuple[float, ...]
    seed: int
    batch: object  # runner.BatchResult
    table: pa.Table  # the columns ``deeplinear run`` writes (curves.parquet)

    @property
    def curves(self) -> list:
        """One ``Curve`` per learning rate (steps, loss, grad_norm, …, extras)."""
        return self.batch.curves

    @property
    def final_weights(self) -> tuple[tuple[np.ndarray, ...], ...]:
        """Per run (learning rate), its final weights (W1, …, WL) as NumPy arrays."""
        layers = [np.asarray(w) for w in self.batch.final_weights]
        return tuple(tuple(w[i] for w in layers) for i in range(len(self.learning_rates)))

    @property
    def final_state(self):
        """The methods' final states, batched over the runs (``runner.run(state=…)`` continues)."""
        return self.batch.final_state

    @property
    def final_loss(self) -> np.ndarray:
        """Per run, its last recorded loss (non-finite where it diverged)."""
        return np.array([curve.loss[-1] for curve in self.curves])

    @property
    def compile_seconds(self) -> float:
        return self.batch.compile_seconds

    @property
    def run_seconds(self) -> float:
        return self.batch.run_seconds

    def to_frame(self, frame: str = "pandas"):
        """The table as a pandas (default) or polars DataFrame (``frame="arrow"``: the table)."""
        return table_frame(self.table, frame)

    def __repr__(self) -> str:
        losses = ", ".join(
            f"η={rate:g}: {loss:.3e}" for rate, loss in zip(self.learning_rates, self.final_loss)
        )
        steps = int(self.curves[0].steps[-1]) if self.curves else 0
        return f"RunResult({self.method.name}, {steps} steps, final loss {losses})"


def table_frame(table: pa.Table, frame: str):
    """``table`` as a pandas or polars DataFrame (or the Arrow table itself), with the same
    choices and install hint as ``frames.load``."""
    import importlib

    if frame not in FRAMES:
        raise UsageError(f"frame must be one of {', '.join(FRAMES)}, got {frame!r}")
    if frame == "arrow":
        return table
    try:
        library = importlib.import_module(frame)
    except ImportError:
        raise UsageError(f"to_frame(frame={frame!r}) needs {frame}: {INSTALL}") from None
    return table.to_pandas() if frame == "pandas" else library.from_arrow(table)


def run(
    method,
    problem=None,
    *legacy,
    weights=None,
    steps: int | None = None,
    learning_rates=None,
    seed: int = 0,
    record_every: int = 1,
    hyperparameters: Mapping | None = None,
    name: str | None = None,
    probe: bool = True,
    keep_weights: bool = False,
    chunk_steps: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Run ``method`` on ``problem`` from ``weights``, once per learning rate, for ``steps``.

    ``problem``: a ``Problem`` or ``MeasuredProblem`` (then give ``weights``; a measured problem
    with its truth records the recovery columns), ``(problem, weights)`` as
    ``notebook_problem`` returns it, an ``Objective`` (then give ``weights``; no diagnostics
    columns), or None: the notebook's problem for ``seed`` with its initial weights.
    ``hyperparameters`` apply to a method given by name, class or factory; ``name`` names a
    foreign method in the table (default: e.g. ``optax.adam``). ``probe``: the diagnostics
    columns ``deeplinear run`` records (per-mode progress, layer σ, imbalance). ``seed`` is
    recorded in the table and draws the default problem.

    The old positional form ``run(method, objective, weights, learning_rates, steps)`` works too.
    """
    if legacy:
        if len(legacy) > 3:
            raise UsageError("run takes (method, problem, weights, learning_rates, steps) at most")
        given = dict(zip(("weights", "learning_rates", "steps"), legacy))
        clash = [k for k in given if {"weights": weights, "learning_rates": learning_rates,
                                      "steps": steps}[k] is not None]  # fmt: skip
        if clash:
            raise UsageError(f"{clash[0]} given twice (by position and by keyword): give it once")
        weights = given.get("weights", weights)
        learning_rates = given.get("learning_rates", learning_rates)
        steps = given.get("steps", steps)

    if steps is None:
        raise UsageError("steps is missing: give the number of updates, e.g. steps=1000")
    method, fixed = as_method(method, hyperparameters, name)
    rates = _learning_rates(learning_rates, method, fixed)
    problem, objective, weights = _problem(problem, weights, seed)
    measure = None
    if probe and problem is not None:
        measure = problem.probe([weights[0].shape[0], *(w.shape[1] for w in weights)])
    result = runner.run(
        method,
        objective,
        weights,
        rates,
        steps,
        record_every=record_every,
        chunk_steps=chunk_steps,
        probe=measure,
        keep_weights=keep_weights,
        progress=progress,
    )
    changed = changed_hyperparameters(method)
    infos = [run_info(method, seed, rate, changed) for rate in rates]
    curves = [_without_weights(curve) for curve in result.curves]
    table = batch_table(infos, _replace_curves(result, curves))
    return RunResult(method, problem, objective, tuple(weights), rates, seed, result, table)


def as_method(method, hyperparameters=None, name=None):
    """(the ``AbstractMethod`` for ``method``, whether its learning rate is fixed at 1)."""

    hyper = dict(hyperparameters or {})
    if isinstance(method, str):
        if name is not None:
            raise UsageError(f"name is for foreign methods: {method!r} is already a name")
        return make_method(method, **hyper), False
    if isinstance(method, AbstractMethod):
        if hyper:
            raise UsageError(
                f"hyperparameters: {method.name} is already built; give them to its class"
            )
        cls = type(method)
    else:
        if isinstance(method, type) and issubclass(method, AbstractMethod):
            cls = method
        else:
            label = name or default_name(method)
            if not isinstance(label, str) or not label:
                raise UsageError(f"name must be a non-empty string, got {label!r}")
            if label in METHODS:
                raise UsageError(
                    f"name {label!r} is a registered method's: give the foreign method "
                    "another name="
                )
            cls = method_class(method, label, f"method {label!r}")
        check_names(cls, hyper)
        method = cls(**hyper)
    fixed = issubclass(cls, AbstractOptaxTransformation | AbstractSolverInstance)
    return method, fixed


def _learning_rates(learning_rates, method, fixed: bool) -> tuple[float, ...]:
    if learning_rates is None:
        if fixed:
            return (1.0,)
        raise UsageError(
            f"learning_rates is missing for {method.name}: give a list, e.g. "
            "learning_rates=[1e-3, 1e-2]"
        )
    values = [learning_rates] if np.ndim(learning_rates) == 0 else list(learning_rates)
    rates = []
    for i, rate in enumerate(values):
        if isinstance(rate, bool) or not isinstance(rate, int | float | np.integer | np.floating):
            raise UsageError(f"learning_rates[{i}] must be a number, got {rate!r}")
        if not np.isfinite(rate) or rate <= 0:
            raise UsageError(f"learning_rates[{i}] must be finite and > 0, got {rate!r}")
        rates.append(float(rate))
    if not rates:
        raise UsageError("learning_rates is empty: give at least one, e.g. [1e-3]")
    if len(set(rates)) != len(rates):
        raise UsageError(f"learning_rates repeats a value ({rates}): give each once")
    if fixed and rates != [1.0]:
        raise UsageError(
            f"learning_rates: {method.name} has its learning rate inside it (or none): leave "
            "learning_rates out (it runs at 1)"
        )
    return tuple(rates)


def _problem(problem, weights, seed):
    """(Problem or None, Objective, weights as float64 arrays)."""

    if problem is None:
        problem, drawn = notebook_problem(seed)
        weights = drawn if weights is None else weights
    elif isinstance(problem, tuple) and len(problem) == 2 and isinstance(problem[0], Problem):
        problem, drawn = problem
        weights = drawn if weights is None else weights
    if isinstance(problem, Problem | MeasuredProblem):
        objective = problem.objective()
        d_out, d_in = problem.shape
    elif is_measured(problem):  # a completion or sensing objective: shapes from the weights
        objective, problem = problem, None
        if weights is None:
            raise UsageError("weights is missing: give the initial weights (W1, …, WL)")
        d_out, d_in = np.shape(weights[0])[0], np.shape(weights[-1])[-1]
        objective = laid_out(objective, (d_out, d_in))
    elif isinstance(problem, Objective):
        objective, problem = problem, None
        d_out, d_in = (
            objective.target.shape[0],
            (objective.target.shape[1] if objective.factor is None else objective.factor.shape[1]),
        )
    else:
        raise UsageError(
            f"problem must be a Problem, a MeasuredProblem, (problem, weights), an Objective, a "
            f"Completion or Sensing objective, or None (the notebook's problem), got "
            f"{type(problem).__name__}"
        )
    if weights is None:
        raise UsageError("weights is missing: give the initial weights (W1, …, WL)")
    return problem, objective, _checked_weights(weights, d_out, d_in)


def _checked_weights(weights, d_out: int, d_in: int) -> tuple[np.ndarray, ...]:
    if not isinstance(weights, Sequence) or not weights:
        raise UsageError("weights must be a non-empty sequence of matrices (W1, …, WL)")
    out = []
    for i, w in enumerate(weights, start=1):
        w = np.asarray(w)
        if w.ndim != 2 or w.dtype.kind not in "fiu" or w.size == 0:
            raise UsageError(f"weights: W{i} must be a non-empty real matrix, got {w.shape}")
        if not np.all(np.isfinite(w)):
            raise UsageError(f"weights: W{i} has non-finite values")
        out.append(w.astype(np.float64))
    rows = [w.shape[0] for w in out]
    columns = [w.shape[1] for w in out]
    if rows[0] != d_out or columns[-1] != d_in or rows[1:] != columns[:-1]:
        shapes = " · ".join(f"{a}×{b}" for a, b in zip(rows, columns))
        raise UsageError(
            f"weights: shapes {shapes} do not chain from {d_out} outputs to {d_in} inputs"
        )
    return tuple(out)


def _without_weights(curve):
    if "weights" not in curve.extras:
        return curve
    extras = {k: v for k, v in curve.extras.items() if k != "weights"}
    return type(curve)(
        curve.steps, curve.loss, curve.grad_norm, curve.loss_notebook, curve.seconds, extras
    )


def _replace_curves(result, curves):
    from dataclasses import replace

    return replace(result, curves=curves)

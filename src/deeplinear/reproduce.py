"""The notebook's whole experiment, one call: ``reproduce(seed)``.

From the notebook's own draws it runs GD (η = 1e-6 … 1e-3) and Adam (η = 1e-5 … 1e-2) for 3000
steps as TF1 ran them, and the notebook's LM (η = 0.05, 0.2) for 200 steps, all from the same
initial weights; writes ``curves.parquet`` and both figures; and returns what the summary prints.
The LM runs use either the modern ``lstsq`` cut-off (structured, in JAX) or the 2017 one
(``rcond=-1``, the notebook's literal Kronecker algorithm in NumPy), or both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import accurate, notebook, plots, rundir, runner
from .experiment import (
    ADAM_RATES,
    FIRST_ORDER_STEPS,
    GD_RATES,
    LM_FIDELITY_FLOOR,
    LM_RATES,
    LM_STEPS,
    default_out,
    experiment_identity,
    validate,
)
from .floors import reachable_minimum, widths_of
from .methods import make_method
from .problem import Problem, notebook_problem
from .results import RunInfo, curves_table, provenance, run_series, write_table


@dataclass
class Reproduction:
    """The outcome of ``reproduce``: problem, table, files written and (optionally) the check."""

    seed: int
    problem: Problem
    table: pa.Table
    out: Path | None
    weights: tuple = ()  # the initial weights (W1, W2)
    files: list[Path] = field(default_factory=list)
    check: dict[str, float] | None = None
    # run label → (final loss in double-double, its error bound): the losses we report
    final_losses: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def runs(self) -> dict[str, dict[str, np.ndarray]]:
        return run_series(self.table)


def reproduce(
    seed: int = 0,
    out: str | Path | None = None,
    *,
    rcond: str = "modern",
    force: bool = False,
    check: bool = False,
    write: bool = True,
    progress: Callable[[str], None] | None = None,
    command: list[str] | None = None,
) -> Reproduction:
    """Run the notebook's experiment for ``seed``; write to ``out`` unless ``write=False``."""
    validate(seed, rcond)
    say = progress or (lambda message: None)
    out_dir = None
    if write:
        out_dir = rundir.claim(out or default_out(seed), experiment_identity(seed, rcond), force)

    problem, weights = notebook_problem(seed)
    objective = problem.objective()
    runs: list[tuple[RunInfo, runner.Curve]] = []
    final_losses: dict[str, tuple[float, float]] = {}

    def batch(method_name: str, rates, steps: int, variant: str = ""):
        method = make_method(method_name)
        say(f"{method_name}: {len(rates)} runs × {steps} steps")
        result = runner.run(method, objective, weights, rates, steps)
        for rate, curve in zip(rates, result.curves):
            label = f"{method.label} step={rate:g}"
            info = RunInfo(
                f"seed{seed}/{method_name}/{rate:g}", label, method_name, rate, seed,
                variant, result.compile_seconds, len(rates),
            )  # fmt: skip
            runs.append((info, curve))
        for member, (rate, curve) in enumerate(zip(rates, result.curves)):
            if np.isfinite(curve.loss[-1]):
                final = tuple(np.asarray(w)[member] for w in result.final_weights)
                final_losses[f"{method.label} step={rate:g}"] = (
                    accurate.loss(final, problem.X, problem.Y),
                    accurate.loss_error_bound(final, problem.X, problem.Y),
                )
        say(f"  compiled in {result.compile_seconds:.2f} s, ran in {result.run_seconds:.2f} s")

    batch("tf1-gd", GD_RATES, FIRST_ORDER_STEPS)
    batch("tf1-adam", ADAM_RATES, FIRST_ORDER_STEPS)
    if rcond in ("modern", "both"):
        batch("seed-lm", LM_RATES, LM_STEPS, "structured minimum-norm step (modern rcond)")
    if rcond in ("2017", "both"):
        for rate in LM_RATES:
            say(f"seed-lm, 2017 setting (Kronecker + lstsq rcond=-1, NumPy): η={rate:g}")
            runs.append((_literal_lm_info(seed, rate), _literal_lm_curve(problem, weights, rate)))

    table = curves_table(runs)
    reproduction = Reproduction(
        seed, problem, table, out_dir, weights=tuple(weights), final_losses=final_losses
    )
    if check:
        say("check: running the notebook's algorithms in plain NumPy")
        reproduction.check = deviations_from_notebook(reproduction, weights)
    if write:
        metadata = provenance(
            command,
            experiment=experiment_identity(seed, rcond),
            problem={
                "name": problem.name,
                "singular_values": problem.singular_values.tolist(),
                "condition_number": problem.condition_number,
                "irreducible_loss": float(objective.floor),
                "reachable_minimum": reachable_minimum(
                    problem, widths_of(weights), objective
                ).as_dict(),
            },
        )
        curves = out_dir / "curves.parquet"
        write_table(table, curves, metadata)
        figures = plots.notebook_figures(
            table,
            out_dir,
            seed=seed,
            condition_number=problem.condition_number,
            floor=reachable_minimum(problem, widths_of(weights), objective),
        )
        reproduction.files = [curves, *figures]
    return reproduction


def _literal_lm_info(seed: int, rate: float) -> RunInfo:
    return RunInfo(
        f"seed{seed}/seed-lm/{rate:g}/rcond-1", f"LM step={rate:g} rcond=-1", "seed-lm", rate,
        seed, "notebook literal: Kronecker matrix + lstsq(rcond=-1), NumPy (2017 setting)",
    )  # fmt: skip


def _literal_lm_curve(problem: Problem, weights, rate: float) -> runner.Curve:
    start = time.perf_counter()
    result = notebook.levenberg_marquardt(problem.X, problem.Y, *weights, rate, LM_STEPS, "2017")
    elapsed = time.perf_counter() - start
    steps = np.arange(len(result.loss))
    seconds = elapsed * steps / max(1, steps[-1])
    return runner.Curve(steps, result.loss, result.grad_norm, result.loss_notebook, seconds)


def deviations_from_notebook(reproduction: Reproduction, weights) -> dict[str, float]:
    """Largest relative deviation, per run, of our curves from the NumPy port of the notebook.

    GD/Adam: over every finite step, loss and gradient norm, plus 1.0 if they diverge at
    different steps. LM: loss while it is above ``LM_FIDELITY_FLOOR`` × the initial loss.
    """
    X, Y = reproduction.problem.X, reproduction.problem.Y
    deviations = {}
    for series in reproduction.runs.values():
        method, rate, label = series["method"][0], series["learning_rate"][0], series["run"][0]
        if "literal" in series["variant"][0]:
            continue  # the 2017 runs *are* the notebook's code
        if method == "tf1-gd":
            ref = notebook.gradient_descent(X, Y, *weights, rate, FIRST_ORDER_STEPS)
        elif method == "tf1-adam":
            ref = notebook.adam(X, Y, *weights, rate, FIRST_ORDER_STEPS)
        else:
            ref = notebook.levenberg_marquardt(X, Y, *weights, rate, LM_STEPS, "modern")
        deviations[label] = curve_deviation(series, ref, lm=method == "seed-lm")
    return deviations


def curve_deviation(series, reference, lm: bool = False) -> float:
    """Largest relative deviation of ``series`` (table columns) from a reference curve."""
    ours, theirs = series["loss"], np.asarray(reference.loss)
    if lm:
        n = min(len(ours), len(theirs))
        keep = theirs[:n] > LM_FIDELITY_FLOOR * theirs[0]
        return float(np.max(np.abs(ours[:n] - theirs[:n])[keep] / theirs[:n][keep]))
    if len(ours) != len(theirs):
        return 1.0  # diverged at a different step (or one of them did not)
    keep = np.isfinite(theirs) & np.isfinite(ours)
    worst = 0.0
    for a, b in ((ours, theirs), (series["grad_norm"], np.asarray(reference.grad_norm))):
        both = keep & np.isfinite(a) & np.isfinite(b)
        worst = max(worst, float(np.max(np.abs(a[both] - b[both]) / np.abs(b[both]))))
    return worst

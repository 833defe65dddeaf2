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
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from deeplinear.diagnostics.floors import widths_of
from deeplinear.experiment import config as configs
from deeplinear.experiment import execution
from deeplinear.loop import runner
from deeplinear.methods import make_method
from deeplinear.notebook2017 import notebook
from deeplinear.notebook2017.experiment import (
    LITERAL_LM_OPTIONS,
    LITERAL_LM_VARIANT,
    LM,
    Batch,
    batches,
    default_out,
    experiment_identity,
    run_file,
    validate,
)
from deeplinear.problems.dense import Problem
from deeplinear.report import plots
from deeplinear.store import directories, locks
from deeplinear.store.results import (
    Curve,
    RunInfo,
    batches_table,
    provenance,
    run_series,
    write_table,
)


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
    # run label → (reported final loss, its bound; None: float64), ``execution.final_losses``
    final_losses: dict[str, tuple[float, float | None]] = field(default_factory=dict)

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
    if not write:
        return _reproduce(seed, None, rcond, check, progress, command)
    out = out or default_out(seed)
    with locks.writing(out):  # one writer for the life of the reproduction
        out_dir = directories.claim(out, experiment_identity(seed, rcond), force)
        return _reproduce(seed, out_dir, rcond, check, progress, command)


def _reproduce(seed, out_dir, rcond, check, progress, command) -> Reproduction:
    say = progress or (lambda message: None)
    write = out_dir is not None
    config = configs.parse(run_file(seed, rcond))
    setup = execution.build(config)  # the notebook's own draws: problem, then W1, W2
    problem, objective, weights = setup.problem, setup.objective, setup.weights
    ran = execution.run_methods(config, setup, progress=say)  # as ``deeplinear run`` runs them
    variants = {b.method: b.variant for b in batches(rcond)}
    ran = [([replace(i, variant=variants[i.method]) for i in infos], r) for infos, r in ran]
    final_losses = execution.final_losses(ran, setup)  # as ``deeplinear run`` reports them
    if rcond in ("2017", "both"):
        label = make_method(LM.method).label
        for rate in LM.learning_rates:
            say(f"{LM.method}, 2017 setting (Kronecker + lstsq rcond=-1, NumPy): η={rate:g}")
            info = _literal_lm_info(seed, rate, label)
            ran.append(([info], _literal_lm_batch(problem, weights, rate)))

    table = batches_table(ran)
    reproduction = Reproduction(
        seed, problem, table, out_dir, weights=tuple(weights), final_losses=final_losses
    )
    if check:
        say("check: running the notebook's algorithms in plain NumPy")
        reproduction.check = deviations_from_notebook(reproduction, weights, say)
    if write:
        metadata = provenance(
            command,
            experiment=experiment_identity(seed, rcond),
            problem={
                "name": problem.name,
                "singular_values": problem.singular_values.tolist(),
                "condition_number": problem.condition_number,
                "irreducible_loss": float(objective.floor),
                "reachable_minimum": problem.floor(widths_of(weights), objective).as_dict(),
            },
        )
        floor = problem.floor(widths_of(weights), objective)
        names: list[str] = []

        def write(folder: Path) -> dict[str, str]:
            sha256 = {"curves.parquet": write_table(table, folder / "curves.parquet", metadata)}
            figures = plots.notebook_figures(
                table, folder, seed=seed, condition_number=problem.condition_number, floor=floor
            )
            for figure in figures:
                sha256[figure.name] = directories.sha256_file(figure)
            names[:] = ["curves.parquet", *(figure.name for figure in figures)]
            return sha256

        # written whole, as ``deeplinear run``'s results: experiment.json lists every checksum
        out_dir = directories.replace(out_dir, experiment_identity(seed, rcond), write)
        reproduction.out = out_dir
        reproduction.files = [out_dir / name for name in names]
    return reproduction


def _literal_lm_info(seed: int, rate: float, label: str) -> RunInfo:
    return RunInfo(
        run_id=f"{execution.run_id(seed, LM.method, rate, {})}/rcond-1",
        run=f"{label} step={rate:g} rcond=-1",
        method=LM.method,
        learning_rate=rate,
        seed=seed,
        variant=LITERAL_LM_VARIANT,
    )


def _literal_lm_batch(problem: Problem, weights, rate: float) -> runner.BatchResult:
    """The notebook's literal LM (NumPy, nothing compiled) as a batch of one run."""
    start = time.perf_counter()
    result = notebook.levenberg_marquardt(
        problem.X, problem.Y, *weights, rate, LM.steps, *LITERAL_LM_OPTIONS
    )
    elapsed = time.perf_counter() - start
    steps = np.arange(len(result.loss))
    seconds = elapsed * steps / max(1, steps[-1])
    curve = Curve(steps, result.loss, result.grad_norm, result.loss_notebook, seconds)
    return runner.BatchResult([curve], (), None, 0.0, elapsed)


def deviations_from_notebook(
    reproduction: Reproduction, weights, say: Callable[[str], None] | None = None
) -> dict[str, float]:
    """Largest relative deviation, per run, of our curves from the NumPy port of the notebook.

    Each batch is compared with its ``experiment.Batch.reference``: over every finite step, loss
    and gradient norm, 1.0 if they diverge at different steps; or, for a batch with a
    ``fidelity_floor`` (LM), the loss while it is above that floor × the initial loss.
    ``say`` is told each run as its NumPy reference starts (they take ~3 min in all).
    """
    X, Y = reproduction.problem.X, reproduction.problem.Y
    by_method: dict[str, Batch] = {b.method: b for b in batches("both")}
    deviations = {}
    checked = [s for s in reproduction.runs.values() if s["variant"][0] != LITERAL_LM_VARIANT]
    for done, series in enumerate(checked):  # the 2017 runs *are* the notebook's code
        method, rate, label = series["method"][0], series["learning_rate"][0], series["run"][0]
        if say:
            say(f"check: {label} in NumPy ({done + 1} of {len(checked)})")
        batch = by_method[method]
        algorithm = getattr(notebook, batch.reference)
        ref = algorithm(X, Y, *weights, rate, batch.steps, *batch.reference_options)
        deviations[label] = curve_deviation(series, ref, batch.fidelity_floor)
    return deviations


def curve_deviation(series, reference, floor: float | None = None) -> float:
    """Largest relative deviation of ``series`` (table columns) from a reference curve; with
    ``floor``, of the loss only, while the reference is above ``floor`` × its initial loss."""
    ours, theirs = series["loss"], np.asarray(reference.loss)
    if floor is not None:
        n = min(len(ours), len(theirs))
        keep = theirs[:n] > floor * theirs[0]
        return float(np.max(np.abs(ours[:n] - theirs[:n])[keep] / theirs[:n][keep]))
    if len(ours) != len(theirs):
        return 1.0  # diverged at a different step (or one of them did not)
    keep = np.isfinite(theirs) & np.isfinite(ours)
    worst = 0.0
    for a, b in ((ours, theirs), (series["grad_norm"], np.asarray(reference.grad_norm))):
        both = keep & np.isfinite(a) & np.isfinite(b)
        worst = max(worst, float(np.max(np.abs(a[both] - b[both]) / np.abs(b[both]))))
    return worst

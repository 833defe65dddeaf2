"""Executing a run file: config → problem and initial weights → every method's batch → files.

``deeplinear run CONFIG --out DIR`` writes into DIR: ``config.toml`` (the run file, verbatim),
``curves.parquet`` (the results table with diagnostics columns), ``gn_spectrum.parquet`` (the
Gauss-Newton spectrum at checkpoints), ``state/`` (each batch's final weights and optimizer state,
so ``explain`` can continue a run) and ``experiment.json``.

Random draws: the problem's from ``seed``, the initialization's from an independent stream
``[seed, 1]``, both from NumPy's legacy ``RandomState`` or from a JAX key (``generator``). The
``notebook`` problem draws its own initial weights first, exactly as the notebook did.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import diagnostics, rundir, runner
from . import init as inits
from ._backend import jax
from .config import RunConfig
from .errors import UsageError
from .methods import make_method
from .problem import NotebookDims, Problem, notebook_problem, singular_values, spectral_problem
from .results import RunInfo, curves_table, provenance, write_table

MAX_PARAMETERS_FOR_SPECTRUM = 3000  # dense Gauss-Newton spectra above this are skipped


class JaxDraws:
    """The ``standard_normal``/``rand`` interface of NumPy's generators, driven by a JAX key."""

    def __init__(self, seed):
        seeds = np.atleast_1d(seed)
        self.key = jax.random.key(int(seeds[0]))
        for extra in seeds[1:]:
            self.key = jax.random.fold_in(self.key, int(extra))

    def _next(self):
        self.key, sub = jax.random.split(self.key)
        return sub

    def standard_normal(self, size):
        return np.asarray(jax.random.normal(self._next(), tuple(size), dtype=np.float64))

    def rand(self, *size):
        return np.asarray(jax.random.uniform(self._next(), size, dtype=np.float64))


def _generator(kind: str, seed):
    return np.random.RandomState(seed) if kind == "numpy" else JaxDraws(seed)


@dataclass(frozen=True)
class Setup:
    """Everything a run file's runs share."""

    problem: Problem
    objective: object
    weights: tuple
    widths: list[int]
    probe: diagnostics.Probe


def build(config: RunConfig) -> Setup:
    """The problem, objective, initial weights and probe a run file describes."""
    spec, hidden = config.problem, list(config.hidden)
    rng = _generator(config.generator, config.seed)
    drawn = None
    if spec["kind"] == "notebook":
        dims = NotebookDims(
            spec.get("input", 6),
            hidden[0],
            spec.get("output", 10),
            spec["samples"] if spec["samples"] != "population" else 1,
        )
        problem, drawn = notebook_problem(
            config.seed, dims, config.generator, spec.get("row_scale_min", 1e-5)
        )
        if spec["samples"] == "population":
            problem = Problem(problem.name + "-population", problem.A)
    elif spec["kind"] == "spectral":
        law = spec.get("singular_values", spec.get("law", "geometric"))
        values = singular_values(
            spec["rank"],
            spec.get("condition_number", 1.0),
            law,
            spec.get("largest_singular_value", 1.0),
        )
        samples = None if spec["samples"] == "population" else spec["samples"]
        problem = spectral_problem(
            spec["input"],
            spec["output"],
            values,
            rng=rng,
            vectors=spec.get("vectors", "random"),
            samples=samples,
            whiten=spec.get("whiten", False),
            noise=spec.get("noise", 0.0),
        )
    else:
        problem = _npz_problem(config.base_dir / spec["path"])
    widths = [problem.A.shape[0], *hidden, problem.A.shape[1]]
    weights = _initial_weights(config, problem, widths, drawn)
    return Setup(
        problem, problem.objective(), weights, widths, diagnostics.Probe.for_problem(problem)
    )


def _load_npz(path: Path, field: str) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise UsageError(f"{field} = {str(path)!r} does not exist: check the path") from None
    except (OSError, ValueError) as error:
        raise UsageError(f"{field} = {str(path)!r} is not a readable .npz file ({error})") from None


def _finite_matrix(array, name: str, field: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise UsageError(f"{field}: {name} must be a 2-d numeric array, got shape {array.shape}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise UsageError(f"{field}: {name} has non-finite values")
    return array


def _npz_problem(path: Path) -> Problem:
    data = _load_npz(path, "problem.path")
    if "X" in data or "Y" in data:
        if not ("X" in data and "Y" in data):
            raise UsageError(f"problem.path {path} has only one of X and Y: it needs both (or A)")
        X = _finite_matrix(data["X"], "X", "problem.path")
        Y = _finite_matrix(data["Y"], "Y", "problem.path")
        if X.shape[1] != Y.shape[1]:
            raise UsageError(
                f"problem.path: X has {X.shape[1]} samples but Y has {Y.shape[1]}: "
                "they must match (X is input × n, Y is output × n)"
            )
        A = np.linalg.lstsq(X.T, Y.T, rcond=None)[0].T  # the best linear map
        return Problem(path.stem, A, X, Y)
    if "A" not in data:
        raise UsageError(f"problem.path {path} has neither A nor X and Y (it has {sorted(data)})")
    return Problem(path.stem, _finite_matrix(data["A"], "A", "problem.path"))


def _initial_weights(config, problem, widths, drawn) -> tuple:
    spec = config.init
    kind = spec["kind"]
    if kind == "notebook":
        return tuple(drawn)
    if kind == "npz":
        data = _load_npz(config.base_dir / spec["path"], "init.path")
        layers = []
        for i in range(1, len(widths)):
            if f"W{i}" not in data:
                raise UsageError(f"init.path has no W{i}: it needs W1 … W{len(widths) - 1}")
            layers.append(data[f"W{i}"])
        return inits.check_weights(layers, widths, "init.path")
    rng = _generator(config.generator, [config.seed, 1])
    return inits.initial_weights(
        kind,
        widths,
        rng,
        scale=spec.get("scale", 1.0),
        modes=problem.modes(),
        strengths=spec.get("strengths"),
    )


def run_id(seed: int, method: str, rate: float, hyper: dict) -> str:
    suffix = "".join(f",{k}={v}" for k, v in sorted(hyper.items()))
    return f"seed{seed}/{method}{f'({suffix[1:]})' if suffix else ''}/{rate:g}"


def experiment_identity(config: RunConfig) -> dict:
    digest = hashlib.sha256(config.source.encode()).hexdigest()[:16]
    return {"experiment": "run", "config_sha256": digest}


@dataclass
class RunFileResult:
    setup: Setup
    table: pa.Table
    spectra: pa.Table
    batches: list[tuple[object, runner.BatchResult]]


def execute(
    config: RunConfig,
    out: str | Path | None = None,
    *,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
    command: list[str] | None = None,
) -> RunFileResult:
    """Run every method of ``config``; write the results to ``out`` (if given)."""
    say = progress or (lambda message: None)
    out_dir = rundir.claim(out, experiment_identity(config), force) if out is not None else None
    setup = build(config)
    parameters = sum(a * b for a, b in zip(setup.widths, setup.widths[1:]))
    keep = config.checkpoints > 0 and parameters <= MAX_PARAMETERS_FOR_SPECTRUM
    runs, spectra, batches = [], [], []
    for index, spec in enumerate(config.methods):
        method = make_method(spec.name, **spec.hyperparameters)
        say(f"{spec.name}: {len(spec.learning_rates)} runs × {spec.steps} steps")
        result = runner.run(
            method,
            setup.objective,
            setup.weights,
            spec.learning_rates,
            spec.steps,
            record_every=config.record_every,
            probe=setup.probe,
            keep_weights=keep,
        )
        say(f"  compiled in {result.compile_seconds:.2f} s, ran in {result.run_seconds:.2f} s")
        batches.append((method, result))
        for rate, curve in zip(spec.learning_rates, result.curves):
            info = RunInfo(
                run_id(config.seed, spec.name, rate, spec.hyperparameters),
                f"{method.label} step={rate:g}",
                spec.name,
                rate,
                config.seed,
                "",
                result.compile_seconds,
                len(spec.learning_rates),
            )
            if keep:
                spectra += _checkpoint_spectra(info.run_id, curve, setup, config.checkpoints)
            curve.extras.pop("weights", None)
            runs.append((info, curve))
        if out_dir is not None:
            _save_state(out_dir / "state" / f"{index}.npz", result)
    table = curves_table(runs)
    spectra_table = (
        pa.Table.from_pylist(spectra)
        if spectra
        else pa.table({"run_id": pa.array([], pa.string())})
    )
    if out_dir is not None:
        rundir.write_atomic(out_dir / "config.toml", config.source.encode())
        metadata = provenance(
            command,
            seed=config.seed,
            problem=problem_summary(setup),
            experiment=experiment_identity(config),
            config_dir=str(config.base_dir.resolve()),  # where its .npz paths are relative to
        )
        write_table(table, out_dir / "curves.parquet", metadata)
        buffer = io.BytesIO()
        pq.write_table(spectra_table, buffer)
        rundir.write_atomic(out_dir / "gn_spectrum.parquet", buffer.getvalue())
    return RunFileResult(setup, table, spectra_table, batches)


def problem_summary(setup: Setup) -> dict:
    from .floors import reachable_minimum
    from .theory import whitening_constant

    problem = setup.problem
    s = problem.singular_values
    return {
        "name": problem.name,
        "widths": setup.widths,
        "singular_values": s.tolist(),
        "rank": problem.rank,
        "condition_number": problem.condition_number,
        "samples": None if problem.X is None else int(problem.X.shape[1]),
        "irreducible_loss": float(setup.objective.floor),
        "reachable_minimum": reachable_minimum(
            setup.problem, setup.widths, setup.objective
        ).as_dict(),
        "whitening_constant": whitening_constant(setup.objective),
    }


def checkpoint_rows(n_rows: int, count: int) -> list[int]:
    """``count`` recorded rows, log-spaced from the first to the last."""
    if count <= 0 or n_rows == 0:
        return []
    rows = np.unique(np.round(np.geomspace(1, n_rows, count)).astype(int) - 1)
    return sorted({0, *rows.tolist(), n_rows - 1})


def _checkpoint_spectra(run_id_: str, curve, setup: Setup, count: int) -> list[dict]:
    weights = curve.extras["weights"]
    rows = []
    for row in checkpoint_rows(len(curve.steps), count):
        w = tuple(np.asarray(layer[row]) for layer in weights)
        if not np.isfinite(curve.loss[row]) or curve.loss[row] > 1e100:
            continue  # a diverging iterate: its spectrum overflows and says nothing
        spectrum = diagnostics.gauss_newton_spectrum(w, setup.objective, int(curve.steps[row]))
        if np.all(np.isfinite(spectrum.eigenvalues)):
            rows.append({"run_id": run_id_, **spectrum.row()})
    return rows


def _save_state(path: Path, result: runner.BatchResult) -> None:
    leaves = jax.tree_util.tree_leaves((result.final_weights, result.final_state))
    buffer = io.BytesIO()
    np.savez(buffer, *[np.asarray(leaf) for leaf in leaves])
    path.parent.mkdir(exist_ok=True)
    rundir.write_atomic(path, buffer.getvalue())


def load_state(path: Path, method, setup: Setup, rates) -> tuple[tuple, object]:
    """The batched final weights and optimizer state saved by ``execute``."""
    rates = np.asarray(rates, dtype=np.float64)
    template = runner.start_state(method, setup.objective, setup.weights, rates)
    structure = jax.tree_util.tree_structure(template)
    with np.load(path, allow_pickle=False) as data:
        leaves = [data[f"arr_{i}"] for i in range(len(data.files))]
    return jax.tree_util.tree_unflatten(structure, leaves)

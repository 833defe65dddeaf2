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

import functools
import hashlib
import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from deeplinear.core.backend import jax
from deeplinear.core.limits import Limits, check
from deeplinear.core.progress import steps_of
from deeplinear.core.words import counted
from deeplinear.diagnostics import probes
from deeplinear.diagnostics.floors import reported_loss
from deeplinear.diagnostics.sharpness import DEFAULT_ITERATIONS, SharpnessProbe
from deeplinear.diagnostics.theory import whitening_constant
from deeplinear.errors import UsageError
from deeplinear.experiment import config as configs
from deeplinear.experiment import partial
from deeplinear.experiment.budget import check_setup_memory, estimate_run
from deeplinear.experiment.config import RunConfig
from deeplinear.loop import runner
from deeplinear.methods import changed_hyperparameters, cost, make_method, refusal
from deeplinear.problems import initialization as inits
from deeplinear.problems.dense import Problem, read_npz
from deeplinear.problems.kinds import BuildContext, problem_kind
from deeplinear.problems.measured import MeasuredProblem
from deeplinear.store import directories, locks
from deeplinear.store.results import RunInfo, batches_table, provenance, write_table


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
    probe: probes.Probe

    @functools.cached_property
    def floor(self):
        """The problem's reachable minimum at these widths (``problem.floor``), computed once:
        the run table, the final losses, the metadata, explain and the report share it."""
        return self.problem.floor(self.widths, self.objective)


def build(config: RunConfig) -> Setup:
    """The problem, objective, initial weights and probe a run file describes.

    Refuses (one line) a problem and initial weights that would not fit in the memory limit
    (``budget``), before drawing or reading any of them."""

    check_setup_memory(config)
    problem, drawn, widths = _problem(config)
    weights = _initial_weights(config, problem, widths, drawn)
    probe = problem.probe(widths)
    objective = problem.objective()
    if config.diagnostics.get("sharpness"):
        iterations = config.diagnostics.get("sharpness_iterations", DEFAULT_ITERATIONS)
        sharpness = SharpnessProbe.for_objective(objective, weights, iterations)
        probe = probes.combine(probe, sharpness)
    return Setup(problem, objective, weights, widths, probe)


def _problem(config: RunConfig):
    """(problem, what its kind drew beside it, the layer widths) of a run file."""
    spec = config.problem
    rng = _generator(config.generator, config.seed)
    context = BuildContext(config.seed, config.generator, rng, config.hidden, config.base_dir)
    problem, drawn = problem_kind(spec["kind"]).build(spec, context)
    return problem, drawn, [problem.shape[0], *config.hidden, problem.shape[1]]


def reachable_minimum(config: RunConfig):
    """``Setup.floor`` of the run file without drawing its initial weights (a spectral estimate
    costs an SVD the floor does not need): the report's verdicts and its curves' line."""
    check_setup_memory(config)
    problem, _, widths = _problem(config)
    return problem.floor(widths, problem.objective())


def _initial_weights(config, problem, widths, drawn) -> tuple:
    spec = config.init
    kind = spec["kind"]
    if kind == "notebook":
        return tuple(drawn)
    if kind == "npz":
        names = [f"W{i}" for i in range(1, len(widths))]
        shapes = dict(zip(names, inits.layer_shapes(widths)))
        data = read_npz(config.base_dir / spec["path"], "init.path", names, shapes)
        for name in names:
            if name not in data:
                raise UsageError(f"init.path has no {name}: it needs W1 … W{len(widths) - 1}")
        return inits.check_weights([data[n] for n in names], widths, "init.path")
    if kind == "spectral_estimate":
        modes = problem.spectral_estimate(min(widths))
        return inits.initial_weights("spectral", widths, None, modes=modes, strengths=modes[1])
    rng = _generator(config.generator, [config.seed, 1])
    weights = inits.initial_weights(
        kind,
        widths,
        rng,
        scale=spec.get("scale", 1.0),
        modes=problem.modes() if kind == "spectral" else None,
        strengths=spec.get("strengths"),
    )
    if "end_to_end" in spec:
        weights = inits.rescale_end_to_end(weights, spec["end_to_end"])
    return weights


run_id = configs.run_id  # unique per run: ``config.check_unique_runs`` refuses collisions


def run_info(method, seed: int, rate: float, hyperparameters) -> RunInfo:
    """A run's identity in the table: its ``run_id`` (seed, method, rate and the hyperparameters
    given) and its legend label, ``ADAM step=0.01``, with the given hyperparameters that differ
    from their defaults, ``ScaledGD(projection=1) step=10``: two variants of a method in one
    file never share a label."""

    changed = {k: v for k, v in changed_hyperparameters(method).items() if k in hyperparameters}
    shown = ", ".join(f"{k}={_shown(v)}" for k, v in sorted(changed.items()))
    return RunInfo(
        run_id=run_id(seed, method.name, rate, hyperparameters),
        run=f"{method.label}{f'({shown})' if shown else ''} step={rate:g}",
        method=method.name,
        learning_rate=rate,
        seed=seed,
    )


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def experiment_identity(config: RunConfig) -> dict:
    """What makes two runs the same experiment (``experiment.json``, beside its checksums)."""
    return source_identity(config.source.encode())


def source_identity(source: bytes) -> dict:
    """``experiment_identity`` of a run file's bytes (``config.toml`` in a results directory)."""
    return {"experiment": "run", "config_sha256": hashlib.sha256(source).hexdigest()[:16]}


@dataclass
class RunFileResult:
    setup: Setup
    table: pa.Table
    spectra: pa.Table
    batches: list[tuple[list[RunInfo], runner.BatchResult]]  # each method's runs and result
    # run label → (reported final loss, its bound or None): ``final_losses``
    final_losses: dict[str, tuple[float, float | None]] = field(default_factory=dict)


def final_losses(batches, setup: Setup) -> dict[str, tuple[float, float | None]]:
    """Each run's reported final loss (``reported_final``), by run label: the one place the
    run table, ``reproduce``, its findings and the stored ``final_loss`` metadata take it from."""
    floor = setup.floor
    out = {}
    for infos, result in batches:
        for member, (info, curve) in enumerate(zip(infos, result.curves)):
            final = tuple(np.asarray(w)[member] for w in result.final_weights)
            out[info.run] = reported_final(setup, curve.loss[-1], final, floor)
    return out


def reported_final(setup: Setup, loss: float, weights, floor=None, initial=None):
    """One run's reported final loss and its bound (``floors.reported_loss``: the final
    weights' double-double loss near the reachable minimum, float64 elsewhere and for measured
    problems, whose losses are sums over measurements). ``floor``: the problem's, if known (a
    callable is asked only when needed); ``initial``: the run's first loss — from 1e-8 of it up,
    float64 already prints the loss to 8 digits and no floor is computed."""
    problem = setup.problem
    if isinstance(problem, MeasuredProblem) or not np.isfinite(loss):
        return float(loss), None
    if initial is not None and loss >= NEAR_CONVERGENCE * initial:
        return float(loss), None
    floor = floor() if callable(floor) else floor
    floor = setup.floor if floor is None else floor
    Y = problem.Y if problem.Y is not None else problem.A
    return reported_loss(floor, loss, weights, problem.X, Y)


NEAR_CONVERGENCE = 1e-8  # below this fraction of its first loss a run's loss is worth checking


def final_loss_metadata(batches, losses) -> dict[str, dict]:
    """``final_losses`` by run id, for the table's metadata (``final_loss``)."""
    return {
        info.run_id: {
            "value": losses[info.run][0],
            "bound": losses[info.run][1],
            "how": "float64" if losses[info.run][1] is None else "double-double",
        }
        for infos, _ in batches
        for info in infos
    }


def execute(
    config: RunConfig,
    out: str | Path | None = None,
    *,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
    command: list[str] | None = None,
    limits=None,
    setup: Setup | None = None,
) -> RunFileResult:
    """Run every method of ``config`` (from ``setup``, ``build(config)`` if not given); write
    the results to ``out`` (if given).

    Refuses first (one line) a run whose estimated memory or time is over the limits
    (``limits.Limits``: by default half this machine's memory and one hour), then a problem
    whose data is wrong (``build``), before ``out`` is touched."""

    check(estimate_run(config), limits or Limits.from_env(), "this run")
    setup = build(config) if setup is None else setup
    check_methods(config, setup)  # before any batch runs
    if out is None:
        return _execute(config, setup, None, progress, command)
    with locks.writing(out):  # one writer for the life of the run
        return _execute(config, setup, directories.claim(out, experiment_identity(config), force),
                        progress, command)  # fmt: skip


def check_methods(config: RunConfig, setup: Setup | None = None) -> None:
    """Refuse, in one line, a method of ``config`` that cannot run on ``setup``'s problem
    (its ``supports``, the loop's own first check): before an estimate is printed or any batch
    runs, not after the batches before it. Without ``setup``, the problem alone is built (no
    initial weights: a sweep checks every axis point this way)."""
    if setup is None:
        check_setup_memory(config)
        problem, _, widths = _problem(config)
        objective, shapes = problem.objective(), list(zip(widths, widths[1:]))
    else:
        objective, shapes = setup.objective, cost.shapes_of(setup.weights)
    for spec in config.methods:
        method = make_method(spec.name, **spec.hyperparameters)
        reason = refusal(method, objective, shapes)
        if reason is not None:
            raise UsageError(f"{method.name} cannot run on this problem: {reason}")


def spectrum_fits(setup: Setup) -> bool:
    """Whether the run's checkpoints get dense Gauss-Newton spectra (``probes.spectrum_fits``)."""
    shapes = list(zip(setup.widths, setup.widths[1:]))
    residuals = cost.residual_rows(shapes, cost.rows_of(setup.objective))
    return probes.spectrum_fits(cost.parameters(shapes), residuals)


def _execute(config: RunConfig, setup: Setup, out_dir: Path | None, progress, command):
    keep = config.checkpoints > 0 and spectrum_fits(setup)
    kept = None
    if out_dir is not None:  # each finished batch kept: an interrupted run resumes
        kept = partial.Kept(out_dir, experiment_identity(config)["config_sha256"])
    spectra: list[dict] = []
    batches = run_methods(
        config, setup, probe=setup.probe, keep_weights=keep, progress=progress, kept=kept,
        spectra=spectra,
    )  # fmt: skip
    table = batches_table(batches)
    losses = final_losses(batches, setup)
    spectra_table = (
        pa.Table.from_pylist(spectra)
        if spectra
        else pa.table({"run_id": pa.array([], pa.string())})
    )
    if out_dir is not None:  # nothing is written before every run has finished
        metadata = provenance(
            command,
            seed=config.seed,
            problem=problem_summary(setup),
            experiment=experiment_identity(config),
            config_dir=str(config.base_dir.resolve()),  # where its .npz paths are relative to
            final_loss=final_loss_metadata(batches, losses),
        )

        def write(folder: Path) -> dict[str, str]:
            sha256 = {
                "config.toml": directories.write_atomic(
                    folder / "config.toml", config.source.encode()
                )
            }
            sha256["curves.parquet"] = write_table(table, folder / "curves.parquet", metadata)
            buffer = io.BytesIO()
            pq.write_table(spectra_table, buffer)
            sha256["gn_spectrum.parquet"] = directories.write_atomic(
                folder / "gn_spectrum.parquet", buffer.getvalue()
            )
            for index, (_, result) in enumerate(batches):
                name = f"state/{index}.npz"
                sha256[name] = _save_state(folder / name, result)
            return sha256

        # a sibling folder swapped in whole, experiment.json (with the checksums) written last
        directories.replace(out_dir, experiment_identity(config), write)
        directories.remove(out_dir / partial.FOLDER)  # (written in place: not swapped away)
    return RunFileResult(setup, table, spectra_table, batches, losses)


def run_methods(
    config: RunConfig,
    setup: Setup,
    *,
    probe: probes.Probe | None = None,
    keep_weights: bool = False,
    progress: Callable[[str], None] | None = None,
    kept: partial.Kept | None = None,
    spectra: list[dict] | None = None,
) -> list[tuple[list[RunInfo], runner.BatchResult]]:
    """Every method of ``config`` as one batch from ``setup``'s weights: the runs' identities
    and the batch's result (``results.batches_table`` makes them a table); ``progress`` takes
    lines, and each batch's steps where it counts them (``progress.steps_of``: a ``Progress``).
    With
    ``keep_weights`` each run's Gauss-Newton spectra at ``config.checkpoints`` rows go into
    ``spectra`` (and the recorded weights are dropped); ``kept`` (``partial.Kept``) takes the
    batches an interrupted run finished, continues its checkpoint and keeps each new batch."""
    say = progress or (lambda message: None)
    batches = []
    for index, spec in enumerate(config.methods):
        method = make_method(spec.name, **spec.hyperparameters)
        infos = [
            run_info(method, config.seed, rate, spec.hyperparameters)
            for rate in spec.learning_rates
        ]
        head = f"{spec.name}: {counted(len(spec.learning_rates), 'run')} × {spec.steps} steps"
        found = kept.batch(index, method, setup, spec.learning_rates) if kept else None
        if found is not None:
            say(f"{head} — finished by an interrupted run, kept ({kept.folder})")
            result, rows = found
        else:
            checkpoints = kept.checkpoints(index) if kept else None
            resumed = checkpoints is not None and checkpoints.saved is not None
            say(head + (" — continued from an interrupted run's checkpoint" if resumed else ""))
            result = runner.run(
                method, setup.objective, setup.weights, spec.learning_rates, spec.steps,
                record_every=config.record_every, probe=probe, keep_weights=keep_weights,
                checkpoints=checkpoints, progress=steps_of(progress),
            )  # fmt: skip
            say(f"  compiled in {result.compile_seconds:.2f} s, ran in {result.run_seconds:.2f} s")
            rows = _batch_spectra(infos, result, setup, config.checkpoints, keep_weights)
            if kept is not None:
                kept.keep(index, result, rows)
        if spectra is not None:
            spectra += rows
        batches.append((infos, result))
    return batches


def _batch_spectra(infos, result, setup: Setup, count: int, keep_weights: bool) -> list[dict]:
    """The spectra rows of a batch whose weights were recorded; the weights then dropped."""
    rows = []
    for info, curve in zip(infos, result.curves):
        if keep_weights:
            rows += _checkpoint_spectra(info.run_id, curve, setup, count)
        curve.extras.pop("weights", None)
    return rows


def problem_summary(setup: Setup) -> dict:

    problem = setup.problem
    s = problem.singular_values
    if isinstance(problem, MeasuredProblem):
        return {
            "name": problem.name,
            "kind": problem.kind,
            "widths": setup.widths,
            "shape": list(problem.shape),
            "measurements": problem.count,
            "fraction": problem.fraction,
            "oversampling": problem.oversampling,
            "draws": problem.draws,  # samples drawn for problem.min_per_line
            "noise": problem.noise,
            "singular_values": s.tolist(),
            "rank": problem.rank,
            "condition_number": problem.condition_number,
            "samples": None,
            "irreducible_loss": float(setup.objective.floor),
            "reachable_minimum": setup.floor.as_dict(),
        }
    return {
        "name": problem.name,
        "widths": setup.widths,
        "singular_values": s.tolist(),
        "rank": problem.rank,
        "condition_number": problem.condition_number,
        "samples": None if problem.X is None else int(problem.X.shape[1]),
        "irreducible_loss": float(setup.objective.floor),
        "reachable_minimum": setup.floor.as_dict(),
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
        spectrum = probes.gauss_newton_spectrum(w, setup.objective, int(curve.steps[row]))
        if np.all(np.isfinite(spectrum.eigenvalues)):
            rows.append({"run_id": run_id_, **spectrum.row()})
    return rows


def _save_state(path: Path, result: runner.BatchResult) -> str:
    """Write a batch's final weights and optimizer state; return the file's sha256."""
    leaves = jax.tree_util.tree_leaves((result.final_weights, result.final_state))
    buffer = io.BytesIO()
    np.savez(buffer, *[np.asarray(leaf) for leaf in leaves])
    path.parent.mkdir(exist_ok=True)
    return directories.write_atomic(path, buffer.getvalue())


def load_state(path: Path, method, setup: Setup, rates) -> tuple[tuple, object]:
    """The batched final weights and optimizer state saved by ``execute``.

    Every array must have the shape and dtype ``method`` gives its state for ``rates``; a file
    that does not (another method, another size, another deeplinear) is refused in one line.
    """
    rates = np.asarray(rates, dtype=np.float64)
    template = runner.start_state(method, setup.objective, setup.weights, rates)
    expected = jax.tree_util.tree_leaves(template)
    structure = jax.tree_util.tree_structure(template)
    fix = "re-run 'deeplinear run CONFIG --out DIR' to write it again"
    try:
        with np.load(path, allow_pickle=False) as data:
            names = [f"arr_{i}" for i in range(len(expected))]
            if sorted(data.files) != sorted(names):
                raise UsageError(
                    f"{path} holds {len(data.files)} arrays, not the {len(expected)} of "
                    f"{type(method).__name__}'s state: {fix}"
                )
            leaves = [data[name] for name in names]
    except UsageError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        reason = " ".join(str(error).split())
        raise UsageError(f"{path} is not a readable state file ({reason}): {fix}") from None
    for i, (leaf, want) in enumerate(zip(leaves, expected)):
        if leaf.shape != np.shape(want) or leaf.dtype != np.asarray(want).dtype:
            raise UsageError(
                f"{path}: array {i} is {leaf.dtype}{list(leaf.shape)}, but "
                f"{type(method).__name__}'s state needs {np.asarray(want).dtype}"
                f"{list(np.shape(want))}: {fix}"
            )
    return jax.tree_util.tree_unflatten(structure, leaves)

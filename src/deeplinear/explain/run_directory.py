"""``explain(DIR)``: a verdict per run of a results directory, with evidence and figures.

For each run it reads the recorded curve and diagnostics, continues the run from its saved state
(cheaply, in segments, up to a step budget) to *measure* how long it takes to reach the target,
adds the Gauss-Newton prediction where it applies, and compares with the exact decoupled theory
where that applies. It writes ``verdicts.json`` and three figures: per-mode learning curves, the
loss with its continuation, and the Gauss-Newton spectrum at checkpoints. A sweep directory gets
a verdict for every seed of each group's best configuration (``sweep_verdicts``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from deeplinear.core import accurate
from deeplinear.core.backend import jax
from deeplinear.core.progress import steps_of
from deeplinear.core.words import counted
from deeplinear.diagnostics import theory
from deeplinear.diagnostics.curvature import critical_point
from deeplinear.diagnostics.held_out import RMSE_COLUMNS as HELD_OUT
from deeplinear.errors import UsageError
from deeplinear.experiment import config as configs
from deeplinear.experiment import execution
from deeplinear.explain.judging import (
    Context,
    RunRecord,
    identifiability_of,
    judge_run,
    recovery_target_for,
)
from deeplinear.loop import runner
from deeplinear.methods import make_method
from deeplinear.objectives.measurement import is_measured
from deeplinear.report import plots
from deeplinear.store import directories
from deeplinear.store.jsonfiles import dumps, jsonable
from deeplinear.store.results import read_table, run_series
from deeplinear.verdict import Verdict

PROGRESS_SECONDS = 2.0  # a progress line at most this often while a run is being continued
MATCH = 1e-6  # largest mode error (relative to s_i) still called a match of the theory
RUN_FILES = ("config.toml", "curves.parquet", "gn_spectrum.parquet")  # besides state/<i>.npz


class Continuation:
    """Continues one run of a batch from its saved state; each call advances ``n`` more steps.

    It also answers ``verdict.judge``'s questions about the run: the critical point at its
    current end, the escape of a perturbed copy, and the crossings of runs from perturbed
    initial weights (see ``verdict.Handle``).
    """

    def __init__(
        self,
        method,
        objective,
        weights,
        state,
        rate,
        first_step,
        record_every=None,
        *,
        probe=None,
        initial_weights=None,
        progress=None,
        problem=None,
    ):
        self.method, self.objective, self.rate = method, objective, rate
        self.weights, self.state, self.step = weights, state, int(first_step)
        self.probe, self.initial_weights, self.progress = probe, initial_weights, progress
        self.problem = problem
        # about 1000 records per segment (see ``verdict.judge``'s segments)
        self.record_every = record_every or max(1, int(np.clip(first_step, 1000, 50_000)) // 1000)
        self.chunk = 1000 * self.record_every  # one compiled chunk serves every segment
        self.seconds = 0.0
        self.steps_taken = 0
        self.steps: list[np.ndarray] = []
        self.loss: list[np.ndarray] = []
        self.grads: list[np.ndarray] = []
        # the recovery error along the continuation (measured problems with a truth)
        self.recovery: list[np.ndarray] = []
        self.recovering = probe is not None and "recovery_error" in probe.columns
        # a ratings run's held-out errors along the continuation (``tuning.HELD_OUT``)
        self.holding = probe is not None and "validation_rmse" in probe.columns
        self.held: dict[str, list[np.ndarray]] = {name: [] for name in HELD_OUT}

    @property
    def seconds_per_step(self) -> float | None:
        return self.seconds / self.steps_taken if self.steps_taken else None

    def __call__(self, n: int):
        n = max(self.record_every, n // self.record_every * self.record_every)
        result = runner.run(
            self.method,
            self.objective,
            self.weights,
            [self.rate],
            n,
            record_every=self.record_every,
            chunk_steps=self.chunk,
            state=self.state,
            first_step=self.step,
            progress=None if self.progress is None else self._report,
            probe=self.probe if self.recovering or self.holding else None,
        )
        self.weights, self.state = result.final_weights, result.final_state
        self.step += n
        self.steps_taken += n
        self.seconds += result.run_seconds
        curve = result.curves[0]
        self.steps.append(curve.steps[1:])
        self.loss.append(curve.loss[1:])
        self.grads.append(curve.grad_norm[1:])
        if self.recovering:
            self.recovery.append(np.asarray(curve.extras["recovery_error"])[1:])
        if self.holding:
            for name in HELD_OUT:
                self.held[name].append(np.asarray(curve.extras[name])[1:])
        return curve.steps[1:], curve.loss[1:], curve.grad_norm[1:]

    def held_out_series(self) -> dict | None:
        """(steps, loss and the held-out columns) along the continuation; None when the run has
        no held-out columns or was not continued."""
        if not self.holding or not self.steps:
            return None
        out = {"step": np.concatenate(self.steps), "loss": np.concatenate(self.loss)}
        return out | {name: np.concatenate(parts) for name, parts in self.held.items()}

    @property
    def recovery_handle(self) -> RecoveryContinuation | None:
        """This continuation as the recovery verdict's handle (None without a truth)."""
        return RecoveryContinuation(self) if self.recovering else None

    @property
    def modes(self) -> np.ndarray | None:
        """How much of each target mode the current end has learned (None without a probe)."""
        if self.probe is None or not self.steps_taken or "mode_learned" not in self.probe.columns:
            return None  # no target modes (a ratings run's probe measures held-out errors)
        return np.asarray(self.probe.measure(self._current())["mode_learned"])

    def _report(self, done: int, total: int) -> None:
        self.progress(self.step + done, done, total)

    def _current(self) -> tuple:
        return tuple(np.asarray(w)[0] for w in self.weights)

    def accurate_loss(self) -> tuple[float, float] | None:
        """The current loss in double-double and its error bound (None where unaffordable, and
        for measured problems: no double-double gather there)."""
        if self.problem is None or is_measured(self.objective):
            return None
        X, Y = self.problem.X, self.problem.Y if self.problem.Y is not None else self.problem.A
        return accurate.final_loss(self._current(), X, Y)  # as ``floors.reported_loss``

    def critical_point(self):
        return critical_point(self.objective, self._current())

    def escape(self, point, delta: float, steps: int, drop: float) -> int | None:
        """Steps for a copy moved by ``delta`` along ``point.direction`` to lose ``drop``."""
        weights = tuple(w + delta * d for w, d in zip(self._current(), point.direction))
        every = max(1, steps // 5000)
        steps = steps // every * every
        curve = runner.run(
            self.method, self.objective, weights, [self.rate], steps, record_every=every
        ).curves[0]
        hit = np.flatnonzero(curve.loss <= curve.loss[0] - drop)
        return int(curve.steps[hit[0]]) if hit.size else None

    def crossings(self, goal: float, steps: int, count: int) -> np.ndarray:
        """First steps ≤ ``goal`` of ``count`` runs from the initial weights × (1 + 1e-12 ξ)."""
        if self.initial_weights is None:
            return np.full(count, np.nan)
        rng = np.random.default_rng(0)
        weights = tuple(
            np.stack([w * (1 + 1e-12 * rng.standard_normal(w.shape)) for _ in range(count)])
            for w in (np.asarray(w, dtype=np.float64) for w in self.initial_weights)
        )
        objective = jax.tree_util.tree_map(
            lambda x: None if x is None else np.broadcast_to(x, (count, *np.shape(x))),
            self.objective,
        )
        every = max(1, steps // 20_000)
        segment = max(every, steps // 4 // every * every)
        first = np.full(count, np.inf)
        state, done = None, 0
        while done < steps and not np.all(np.isfinite(first)):
            result = runner.run(
                self.method,
                objective,
                weights,
                [self.rate] * count,
                segment,
                record_every=every,
                chunk_steps=segment,
                state=state,
                first_step=done,
                shared=False,
            )
            weights, state, done = result.final_weights, result.final_state, done + segment
            for i, curve in enumerate(result.curves):
                hit = np.flatnonzero(curve.loss <= goal)
                if hit.size and not np.isfinite(first[i]):
                    first[i] = float(curve.steps[hit[0]])
        return first


class RecoveryContinuation:
    """A ``Continuation`` as ``verdict.judge_recovery_of``'s handle: the recovery error along
    what it continued (``so_far``), and further continuation returning it."""

    def __init__(self, continuation: Continuation):
        self.continuation = continuation

    @property
    def spent(self) -> int:
        return self.continuation.steps_taken

    @property
    def seconds_per_step(self) -> float | None:
        return self.continuation.seconds_per_step

    def so_far(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = self.continuation
        if not c.steps:
            return np.zeros(0, int), np.zeros(0), np.zeros(0)
        return np.concatenate(c.steps), np.concatenate(c.recovery), np.concatenate(c.grads)

    def __call__(self, n: int):
        steps, _, grad = self.continuation(n)
        return steps, self.continuation.recovery[-1], grad


@dataclass
class Explanation:
    verdicts: list[Verdict]
    theory: dict
    files: list[Path]
    titles: dict[int, str] = field(default_factory=dict)  # a line before the verdict at index
    problem_lines: list[str] = field(default_factory=list)  # before every verdict

    def lines(self) -> list[str]:
        out = list(self.problem_lines)
        for index, v in enumerate(self.verdicts):
            if index in self.titles:
                out.append(self.titles[index])
            out += v.lines()
        if self.theory.get("note"):
            out.append(f"theory: {self.theory['note']}")
        return out


def explain_run(
    directory: Path,
    *,
    target: float | None,
    relative_to: str,
    budget_steps: int,
    figures: bool,
    progress: Callable[[str], None] | None,
    recovery_target: float | None,
) -> Explanation:
    """Verdicts for every run of a run directory (``deeplinear run``): see ``explain``."""
    target = 1e-10 if target is None else target
    recovery_target = recovery_target_for(target, recovery_target)
    directories.recover(directory)  # after a killed ``run --force``: the old experiment or the new
    if not any((directory / name).exists() for name in (directories.MANIFEST, *RUN_FILES)):
        raise UsageError(
            f"{directory} is not a results directory of 'deeplinear run' or 'deeplinear sweep' "
            "(no curves.parquet and config.toml, no sweep.toml): run 'deeplinear run CONFIG "
            "--out DIR' or 'deeplinear sweep SWEEP --out DIR' first"
        )
    if not 0 < target < 1:
        raise UsageError(f"--target must be in (0, 1) (relative to the initial loss), got {target}")
    context = Context(target, relative_to, budget_steps, recovery_target)
    held, table, metadata, spectra = _verified(directory)
    config = configs.load(directory / "config.toml", metadata.get("config_dir"))
    setup = execution.build(config)
    floor = setup.floor
    series = run_series(table)
    if progress is not None:  # after the checks: a refused directory gets its one line only
        progress(
            f"explain: {directory}: {counted(len(series), 'run')}, continued up to "
            f"{budget_steps:,} steps"
        )
    comparison = theory_comparison(config, setup, series)
    counts = identifiability_of(setup)
    verdicts, continuations = [], {}
    for index, spec in enumerate(config.methods):
        method = make_method(spec.name, **spec.hyperparameters)
        state_file = directory / "state" / f"{index}.npz"  # verified with the others
        if f"state/{index}.npz" not in held[directories.FILES]:
            raise UsageError(
                f"{directory / directories.MANIFEST} does not list state/{index}.npz: re-run "
                f"'deeplinear run CONFIG --out {directory}' to write it again"
            )
        resumable = method.in_loop
        saved = (
            execution.load_state(state_file, method, setup, spec.learning_rates)
            if resumable
            else None
        )  # out-of-loop peers (SciPy) cannot be continued: extrapolate
        for member, rate in enumerate(spec.learning_rates):
            run_id = execution.run_id(config.seed, spec.name, rate, spec.hyperparameters)
            if run_id not in series:
                raise UsageError(f"{directory}/curves.parquet has no run {run_id}: re-run it")
            data = series[run_id]
            extend = None
            if saved is not None and np.isfinite(data["loss"][-1]):
                extend = continue_member(
                    method, setup, saved, member, rate, data["step"][-1], progress, run_id
                )
                continuations[run_id] = extend
            gn_rate = None
            if method.gauss_newton_rate and run_id in spectra and np.isfinite(data["loss"][-1]):
                gn_rate = theory.gn_predicted_rate(spectra[run_id]["lambda_min"][-1], rate)
            record = RunRecord(run_id, data, method, rate, setup, floor, extend, gn_rate)
            verdict = judge_run(record, context, comparison)
            verdicts.append(verdict)
        if index < len(config.methods) - 1:  # an interrupted explain keeps what it finished
            _write_verdicts(directory, context, setup, verdicts, comparison, counts, False)
    files = []
    if figures:
        files = plots.explain_figures(
            series, spectra, continuations, verdicts, comparison, directory, floor
        )
    path = _write_verdicts(directory, context, setup, verdicts, comparison, counts)
    problem_lines = [] if counts is None else counts.lines()
    problem_lines += getattr(setup.problem, "lines", list)()  # a ratings problem's split
    return Explanation(verdicts, comparison, [path, *files], problem_lines=problem_lines)


def _write_verdicts(directory, context, setup, verdicts, comparison, counts, complete=True):
    """``verdicts.json``: the verdicts, what they were judged against and the theory; written
    after every method too (``complete`` false until the last)."""
    payload = {
        "complete": complete,
        "target": context.target,
        "relative_to": context.relative_to,
        "recovery_target": context.recovery_target if setup.probe is not None else None,
        "identifiability": None if counts is None else counts.record(),
        "floor": setup.floor.as_dict(),
        "verdicts": [jsonable(v.record(), private=False) for v in verdicts],
        "theory": jsonable(comparison, private=False),
    }
    path = directory / "verdicts.json"
    directories.write_atomic(path, dumps(payload, indent=2).encode())
    return path


def _verified(directory: Path) -> tuple[dict, object, dict, dict]:
    """Check a results directory before trusting any of it; its manifest, curves and spectra.

    ``experiment.json`` must name a run whose identity is ``config.toml``'s (a run file edited
    after the run is refused), and every file it lists must match its sha256: a file that is
    missing, truncated, altered or from another experiment is refused in one line.
    """
    fix = f"re-run 'deeplinear run CONFIG --out {directory}' to write it again"
    held = directories.read_manifest(directory, "run", fix)
    listed = set(held[directories.FILES])
    states = [name for name in listed if name.startswith("state/")]
    expected = {*RUN_FILES, *(f"state/{i}.npz" for i in range(len(states)))}
    if listed != expected:  # exactly what ``execution.execute`` writes
        odd = sorted(listed ^ expected)[0]
        manifest = directory / directories.MANIFEST
        raise UsageError(f"{manifest} does not list the files of a run ({odd}): {fix}")
    config = directory / "config.toml"
    try:
        source = config.read_bytes()
    except OSError as error:
        raise UsageError(f"{config} cannot be read ({error.strerror or error}): {fix}") from None
    if execution.source_identity(source) != directories.identity(held):
        raise UsageError(
            f"{config} was changed after the run (experiment.json names another run file): "
            f"restore it, or run the changed file: 'deeplinear run CONFIG --out {directory} "
            "--force'"
        )
    held = directories.verified(directory, "run", fix)  # every file, before any is parsed
    files = held[directories.FILES]
    curves = directory / "curves.parquet"
    data = directories.verified_bytes(curves, files["curves.parquet"], fix)
    table, metadata = read_table(curves, fix, data)
    if not isinstance(metadata.get("config_dir", ""), str):
        raise UsageError(f"{curves}'s metadata names no folder as config_dir: {fix}")
    try:
        path = directory / "gn_spectrum.parquet"
        spectra = _read_spectra(directories.verified_bytes(path, files[path.name], fix))
    except (OSError, ValueError, KeyError, pa.ArrowException) as error:
        reason = " ".join(str(error).split())[:200]
        path = directory / "gn_spectrum.parquet"
        raise UsageError(f"{path} is unreadable ({reason}): {fix}") from None
    return held, table, metadata, spectra


def continue_member(method, setup, batch, member: int, rate, step, progress, run_id: str):
    """A ``Continuation`` of member ``member`` of a batch's final ``(weights, state)`` (batched),
    recorded until ``step``, on the problem of ``setup`` (a ``execution.Setup``)."""
    weights, state = jax.tree_util.tree_map(lambda x: x[member : member + 1], tuple(batch[:2]))
    return Continuation(
        method,
        setup.objective,
        weights,
        state,
        rate,
        step,
        probe=setup.probe,
        initial_weights=setup.weights,
        progress=_throttled(progress, run_id),
        problem=setup.problem,
    )


def _throttled(progress, run_id: str):
    """A step callback (``report(step, done, total)``: the run's step, and the steps done of the
    segment running) for ``progress``: where it counts steps (``progress.steps_of``: a
    ``Progress``), a line naming the run, then every chunk's count; else a line at most every
    ``PROGRESS_SECONDS``."""
    if progress is None:
        return None
    last = [time.monotonic()]
    counter, named = steps_of(progress), []

    def report(step: int, done: int, total: int) -> None:
        if counter is not None:
            if not named:
                named.append(run_id)
                progress(f"explain: continuing {run_id} from step {step - done:,}")
            counter(done, total)
            return
        now = time.monotonic()
        if now - last[0] >= PROGRESS_SECONDS:
            last[0] = now
            progress(f"explain: continuing {run_id} — step {step:,}")

    return report


def _read_spectra(data: bytes) -> dict:
    table = pq.read_table(pa.BufferReader(data))
    if table.num_rows == 0:
        return {}
    rows: dict = {}
    for row in table.to_pylist():
        entry = rows.setdefault(row["run_id"], {k: [] for k in row})
        for k, v in row.items():
            entry[k].append(v)
    return rows


def _methods_by_run(config) -> dict:
    """run id → its method as the run file configures it (for what its class declares)."""
    out = {}
    for spec in config.methods:
        method = make_method(spec.name, **spec.hyperparameters)
        for rate in spec.learning_rates:
            out[execution.run_id(config.seed, spec.name, rate, spec.hyperparameters)] = method
    return out


MEASURED_THEORY = (
    "the exact decoupled dynamics do not apply to a problem seen through measurements (the "
    "sampling couples the modes); the Gauss-Newton rate (1 − η λ_min⁺)² of the measured "
    "residual is used where checkpoints give it"
)


def theory_comparison(config, setup, series) -> dict:
    """The exact decoupled GD recursion against measured per-mode strengths, where it applies
    (never on a completion or sensing problem: ``MEASURED_THEORY``)."""
    if is_measured(setup.objective):
        return {"applies": False, "note": MEASURED_THEORY}
    c = theory.whitening_constant(setup.objective)
    reasons = []
    if config.init["kind"] != "spectral":
        reasons.append("the init is not spectral (decoupled)")
    if c is None:
        reasons.append("the data are not whitened (X Xᵀ ≠ c I)")
    if reasons:
        return {
            "applies": False,
            "note": "the exact decoupled dynamics do not apply here: "
            + " and ".join(reasons)
            + "; the Gauss-Newton rate is shown instead",
        }
    _, s, _ = setup.problem.modes()
    depth = len(setup.weights)
    m = min(min(setup.widths), len(s))
    layers = _layer_strengths(setup, m)
    rest = c * float(np.sum(s[m:] ** 2)) + float(setup.objective.floor)
    out = {"applies": True, "whitening_constant": c, "runs": {}, "_modes": (s[:m], layers, c, rest)}
    worst = 0.0
    methods = _methods_by_run(config)
    for run_id, data in series.items():
        method = methods.get(run_id)
        if method is None or not method.gauss_newton_rate:
            continue
        rate = float(method.learning_rate_used(float(data["learning_rate"][0])))
        steps = data["step"]
        predicted = theory.decoupled_gd(layers, s[:m], rate, int(steps[-1]), c)[steps]
        measured = data["mode_learned"][:, :m] * s[:m]
        finite = np.isfinite(measured).all(axis=1)
        error = float(np.max(np.abs(predicted[finite] - measured[finite]) / s[:m]))
        loss_pred = theory.decoupled_loss(predicted, s[:m], c, rest)
        flow = (
            theory.decoupled_flow(np.prod(layers, axis=0), s[:m], depth, rate * steps, c)
            if np.allclose(layers, layers[0])
            else None
        )
        out["runs"][run_id] = {
            "max_mode_error": error,
            "predicted_learned": predicted / s[:m],
            "predicted_loss": loss_pred,
            "gradient_flow_learned": None if flow is None else flow / s[:m],
        }
        worst = max(worst, error)
    out["max_mode_error"] = worst if out["runs"] else None
    if not out["runs"]:
        out["note"] = "decoupled init, but no GD run to compare"
    elif worst <= MATCH:
        out["note"] = (
            f"the exact decoupled GD recursion (Saxe et al. 2014) matches the measured mode "
            f"strengths to {worst:.1e} (relative to s_i)"
        )
    else:
        out["note"] = (
            f"the exact decoupled GD recursion does NOT match the measured mode strengths (worst "
            f"error {worst:.1e} relative to s_i, above {MATCH:g}): rounding amplified by an "
            "unstable step or a diverging run; the recursion holds only for stable steps"
        )
    return out


def _layer_strengths(setup, m: int) -> np.ndarray:
    """Each layer's diagonal entries b_l,i in the decoupled bases (L × m)."""
    U, _, V = setup.problem.modes()
    bases = [U[:, :m], *(np.eye(h)[:, :m] for h in setup.widths[1:-1]), V[:, :m]]
    return np.stack(
        [np.einsum("ir,ij,jr->r", bases[i], w, bases[i + 1]) for i, w in enumerate(setup.weights)]
    )

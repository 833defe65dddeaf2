"""``explain(DIR)``: a verdict per run of a results directory, with evidence and figures.

For each run it reads the recorded curve and diagnostics, continues the run from its saved state
(cheaply, in segments, up to a step budget) to *measure* how long it takes to reach the target,
adds the Gauss-Newton prediction where it applies, and compares with the exact decoupled theory
where that applies. It writes ``verdicts.json`` and three figures: per-mode learning curves, the
loss with its continuation, and the Gauss-Newton spectrum at checkpoints.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from . import config as configs
from . import plots, rundir, runfile, runner, theory
from ._backend import jax
from .diagnostics import roundoff_floor
from .errors import UsageError
from .methods import make_method
from .results import read_table, run_series
from .verdict import Verdict, judge

GD_LIKE = ("gd", "tf1-gd")  # methods whose local rate the Gauss-Newton spectrum predicts


class Continuation:
    """Continues one run of a batch from its saved state; each call advances ``n`` more steps."""

    def __init__(self, method, objective, weights, state, rate, first_step, record_every=None):
        self.method, self.objective, self.rate = method, objective, rate
        self.weights, self.state, self.step = weights, state, int(first_step)
        # about 1000 records per segment (see ``verdict.judge``'s segments)
        self.record_every = record_every or max(1, int(np.clip(first_step, 1000, 50_000)) // 1000)
        self.seconds = 0.0
        self.steps_taken = 0
        self.steps: list[np.ndarray] = []
        self.loss: list[np.ndarray] = []

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
            chunk_steps=n,
            state=self.state,
            first_step=self.step,
        )
        self.weights, self.state = result.final_weights, result.final_state
        self.step += n
        self.steps_taken += n
        self.seconds += result.run_seconds
        curve = result.curves[0]
        self.steps.append(curve.steps[1:])
        self.loss.append(curve.loss[1:])
        return curve.steps[1:], curve.loss[1:]


@dataclass
class Explanation:
    verdicts: list[Verdict]
    theory: dict
    files: list[Path]

    def lines(self) -> list[str]:
        out = []
        for v in self.verdicts:
            out += v.lines()
        if self.theory.get("note"):
            out.append(f"theory: {self.theory['note']}")
        return out


def explain(
    directory: str | Path,
    *,
    target: float = 1e-10,
    budget_steps: int = 1_000_000,
    figures: bool = True,
) -> Explanation:
    """Verdicts for every run in ``directory`` (written by ``deeplinear run``)."""
    directory = Path(directory)
    if not (directory / "curves.parquet").is_file() or not (directory / "config.toml").is_file():
        raise UsageError(
            f"{directory} is not a results directory of 'deeplinear run' "
            "(no curves.parquet and config.toml): run 'deeplinear run CONFIG --out DIR' first"
        )
    if not 0 < target < 1:
        raise UsageError(f"--target must be in (0, 1) (relative to the initial loss), got {target}")
    table, metadata = read_table(directory / "curves.parquet")
    config = configs.load(directory / "config.toml", metadata.get("config_dir"))
    spectra = _read_spectra(directory / "gn_spectrum.parquet")
    setup = runfile.build(config)
    floor = roundoff_floor(setup.objective)
    series = run_series(table)
    verdicts, continuations = [], {}
    for index, spec in enumerate(config.methods):
        method = make_method(spec.name, **spec.hyperparameters)
        state_file = directory / "state" / f"{index}.npz"
        resumable = state_file.is_file() and not getattr(method, "out_of_loop", False)
        saved = (
            runfile.load_state(state_file, method, setup, spec.learning_rates)
            if resumable
            else None
        )  # out-of-loop peers (SciPy) cannot be continued: extrapolate
        for member, rate in enumerate(spec.learning_rates):
            run_id = runfile.run_id(config.seed, spec.name, rate, spec.hyperparameters)
            if run_id not in series:
                raise UsageError(f"{directory}/curves.parquet has no run {run_id}: re-run it")
            data = series[run_id]
            extend = None
            if saved is not None and np.isfinite(data["loss"][-1]):
                weights, state = jax.tree_util.tree_map(lambda x, m=member: x[m : m + 1], saved)
                extend = Continuation(
                    method, setup.objective, weights, state, rate, data["step"][-1]
                )
                continuations[run_id] = extend
            gn_rate = None
            if spec.name in GD_LIKE and run_id in spectra and np.isfinite(data["loss"][-1]):
                gn_rate = theory.gn_predicted_rate(spectra[run_id]["lambda_min"][-1], rate)
            learned = data.get("mode_learned")
            verdicts.append(
                judge(
                    run_id,
                    data["step"],
                    data["loss"],
                    floor=floor,
                    target=target,
                    gn_rate=gn_rate,
                    mode_learned=None if learned is None else learned[-1],
                    extend=extend,
                    budget_steps=budget_steps,
                )
            )
    comparison = theory_comparison(config, setup, series)
    files = []
    if figures:
        files = plots.explain_figures(
            series, spectra, continuations, verdicts, comparison, directory, floor
        )
    payload = {
        "target": target,
        "verdicts": [_jsonable(asdict(v)) for v in verdicts],
        "theory": _jsonable(comparison),
    }
    rundir.write_atomic(directory / "verdicts.json", json.dumps(payload, indent=2).encode())
    return Explanation(verdicts, comparison, [directory / "verdicts.json", *files])


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.floating | np.integer):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def _read_spectra(path: Path) -> dict:
    if not path.is_file():
        return {}
    table = pq.read_table(path)
    if table.num_rows == 0:
        return {}
    rows: dict = {}
    for row in table.to_pylist():
        entry = rows.setdefault(row["run_id"], {k: [] for k in row})
        for k, v in row.items():
            entry[k].append(v)
    return rows


def theory_comparison(config, setup, series) -> dict:
    """The exact decoupled GD recursion against measured per-mode strengths, where it applies."""
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
    out = {"applies": True, "whitening_constant": c, "runs": {}}
    worst = 0.0
    for run_id, data in series.items():
        if data["method"][0] not in GD_LIKE:
            continue
        rate = float(data["learning_rate"][0])
        if data["method"][0] == "tf1-gd":
            rate = float(np.float32(rate))
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
    out["note"] = (
        (
            f"exact decoupled GD recursion (Saxe et al. 2014) matches the measured mode "
            f"strengths to {worst:.1e} (relative to s_i)"
        )
        if out["runs"]
        else "decoupled init, but no GD run to compare"
    )
    return out


def _layer_strengths(setup, m: int) -> np.ndarray:
    """Each layer's diagonal entries b_l,i in the decoupled bases (L × m)."""
    U, _, V = setup.problem.modes()
    bases = [U[:, :m], *(np.eye(h)[:, :m] for h in setup.widths[1:-1]), V[:, :m]]
    return np.stack(
        [np.einsum("ir,ij,jr->r", bases[i], w, bases[i + 1]) for i, w in enumerate(setup.weights)]
    )

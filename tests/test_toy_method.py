"""A method declared in one class runs through run, sweep, explain and report unchanged.

The toy is sign-gradient descent, W ← W − η·sign(∇f), recording its own column
``toy_sign_changes`` (gradient entries whose sign flipped since the previous step, summed over
the run) and declaring its own FLOP model. Its numbers are checked against NumPy.
"""

import dataclasses
import tomllib
from typing import ClassVar, NamedTuple

import numpy as np
import pyarrow as pa
import pytest

from deeplinear import cli, sweep
from deeplinear.core.backend import jax, jnp
from deeplinear.experiment import config, execution
from deeplinear.explain import explain
from deeplinear.methods import METHODS, AbstractMethod, number, register
from deeplinear.methods.cost import loss_flops, parameters
from deeplinear.report.sweep_report import write_report
from deeplinear.store import groups as group_files
from deeplinear.store.results import run_series
from deeplinear.verdict import KINDS

STEPS = 30
RATE = 1e-3


class SignState(NamedTuple):
    learning_rate: jax.Array
    signs: tuple  # sign(∇f) at the previous step (0 before the first)
    changes: jax.Array  # entries whose sign flipped, so far


@dataclasses.dataclass(frozen=True)
class SignGD(AbstractMethod):
    """W ← W − η·scale·sign(∇f)."""

    scale: float = number(1.0, 0, low_open=True)

    name = "toy-sign-gd"
    label = "SIGN"
    description = "sign-gradient descent (a test's toy)"
    reference = "tests/test_toy_method.py"
    columns: ClassVar[dict] = {"toy_sign_changes": pa.float64()}

    def init(self, weights, objective, learning_rate):
        zeros = tuple(jnp.zeros_like(w) for w in weights)
        return SignState(jnp.asarray(learning_rate, dtype=jnp.float64), zeros, jnp.asarray(0.0))

    def step(self, weights, state, objective, loss, grads):
        signs = tuple(jnp.sign(g) for g in grads)
        flipped = sum(jnp.sum(s * old < 0) for s, old in zip(signs, state.signs))
        rate = state.learning_rate * self.scale
        new = tuple(w - rate * s for w, s in zip(weights, signs))
        return new, SignState(state.learning_rate, signs, state.changes + flipped)

    def record(self, state):
        return {"toy_sign_changes": state.changes}

    def flops(self, shapes, k):
        return 3 * loss_flops(shapes, k) + 4 * parameters(shapes), 0.0


RUN = f"""
seed = 3
record_every = 1
[problem]
kind = "spectral"
input = 5
output = 6
rank = 3
samples = 40
[model]
hidden = [3]
[init]
kind = "scaled_gaussian"
[[methods]]
name = "toy-sign-gd"
learning_rates = [{RATE}]
steps = {STEPS}
[[methods]]
name = "gd"
learning_rates = [1e-3]
steps = {STEPS}
"""

SWEEP = f"""
seeds = 2
targets = [0.5]
steps = {STEPS}
record_every = 5
[problem]
kind = "spectral"
input = 5
output = 6
rank = 3
samples = "population"
[model]
hidden = [3]
[init]
kind = "scaled_gaussian"
[axes]
"problem.condition_number" = [10.0]
[[methods]]
name = "toy-sign-gd"
learning_rates = [1e-3, 3e-3]
[[methods]]
name = "gd"
learning_rates = [1e-2]
"""


@pytest.fixture
def toy():
    register(SignGD)
    try:
        yield SignGD
    finally:
        METHODS.unregister(SignGD.name)


def numpy_sign_gd(X, Y, weights, rate, steps):
    """(losses, cumulative sign changes) of sign-gradient descent on Σ(W1 W2 X − Y)²."""
    W1, W2 = (np.array(w, dtype=np.float64) for w in weights)
    previous = [np.zeros_like(W1), np.zeros_like(W2)]
    losses, changes, total = [], [], 0
    for _ in range(steps + 1):
        E = W1 @ W2 @ X - Y
        losses.append(np.sum(E**2))
        changes.append(total)
        signs = [np.sign(2 * E @ (W2 @ X).T), np.sign(2 * W1.T @ E @ X.T)]
        total += sum(int(np.sum(s * p < 0)) for s, p in zip(signs, previous))
        previous = signs
        W1, W2 = W1 - rate * signs[0], W2 - rate * signs[1]
    return np.array(losses), np.array(changes, dtype=np.float64)


def test_toy_method_runs_through_run_explain_and_the_listing(toy, tmp_path, capsys):
    c = config.parse(tomllib.loads(RUN), source=RUN)
    result = execution.execute(c, tmp_path / "run")
    series = run_series(result.table)
    (toy_id,) = [r for r, data in series.items() if data["method"][0] == toy.name]
    data = series[toy_id]
    setup = result.setup
    losses, changes = numpy_sign_gd(setup.problem.X, setup.problem.Y, setup.weights, RATE, STEPS)
    np.testing.assert_allclose(data["loss"], losses, rtol=1e-10)
    np.testing.assert_array_equal(data["toy_sign_changes"], changes)
    assert changes[-1] > 0  # the toy oscillates: the column is not trivially zero
    shapes = [tuple(w.shape) for w in setup.weights]
    per_step = 3 * loss_flops(shapes, 5) + 4 * parameters(shapes)  # k = d_in rows (40 ≥ 5)
    np.testing.assert_array_equal(data["flops"], per_step * np.arange(STEPS + 1))
    gd = next(d for d in series.values() if d["method"][0] == "gd")
    assert np.all(np.isnan(np.asarray(gd.get("toy_sign_changes", [np.nan]), dtype=float)))

    explained = explain(tmp_path / "run", target=0.5, budget_steps=200, figures=False)
    (verdict,) = [v for v in explained.verdicts if v.run == toy_id]
    assert verdict.kind in KINDS and verdict.kind not in ("too short", "diverged")
    assert verdict.step >= STEPS

    assert cli.main(["methods"]) == 0
    listing = capsys.readouterr().out
    assert "toy-sign-gd" in listing and "toy_sign_changes (double)" in listing


def test_toy_method_runs_through_a_sweep_and_the_report(toy, tmp_path):
    plan = sweep.parse(tomllib.loads(SWEEP), source=SWEEP)
    sweep.run(plan, tmp_path, stall_seconds=None)  # in this process
    table = group_files.read(tmp_path)
    assert table.schema.field("toy_sign_changes").type == pa.float64()
    methods = np.asarray(table.column("method").to_pylist())
    changes = np.asarray(table.column("toy_sign_changes").to_pylist(), dtype=float)
    assert np.all(np.isfinite(changes[methods == toy.name]))
    assert np.all(np.isnan(changes[methods == "gd"]))  # null where the method has none
    steps = np.asarray(table.column("step").to_pylist())
    flops = np.asarray(table.column("flops").to_pylist())
    shapes = [(6, 3), (3, 5)]
    per_step = 3 * loss_flops(shapes, None) + 4 * parameters(shapes)
    toy_rows = methods == toy.name
    np.testing.assert_array_equal(flops[toy_rows], per_step * steps[toy_rows])
    assert set(steps[toy_rows]) == set(range(0, STEPS + 1, 5))

    html = write_report(tmp_path).read_text()
    assert f"</span>{toy.name}</td>" in html  # its row in the table, not a name in the scripts

"""sharpness: Lanczos λ_max of the loss's Hessian inside the loop, checked against the dense
Hessian (curvature.py); the run-file key; the edge-of-stability headline on a small network."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

import deeplinear as dl
from deeplinear.core.backend import jax
from deeplinear.diagnostics import curvature
from deeplinear.diagnostics.sharpness import SharpnessProbe
from deeplinear.errors import UsageError
from deeplinear.experiment import config as configs
from deeplinear.experiment import execution
from deeplinear.loop import runner
from deeplinear.methods import make_method
from deeplinear.problems.dense import singular_values, spectral_problem

measure = jax.jit(lambda probe, weights: probe.measure(weights))


def _problem(kind: str, seed: int):
    """(objective, weights): a sample loss at depth 3 or a population loss at depth 2."""
    rng = np.random.RandomState(seed)
    if kind == "samples":
        problem = spectral_problem(4, 3, singular_values(3, 10.0), rng=rng, samples=7)
        shapes = [(3, 5), (5, 2), (2, 4)]
    else:
        problem = spectral_problem(5, 4, singular_values(2, 3.0), rng=rng)
        shapes = [(4, 3), (3, 5)]
    return problem.objective(), tuple(rng.standard_normal(s) for s in shapes)


@pytest.mark.parametrize("kind", ["samples", "population"])
@pytest.mark.parametrize("seed", [0, 1])
def test_lanczos_matches_the_dense_hessian(kind, seed):
    objective, weights = _problem(kind, seed)
    parameters = sum(w.size for w in weights)
    exact = curvature.critical_point(objective, weights, method="dense").hessian_max
    out = measure(SharpnessProbe.for_objective(objective, weights, parameters + 5), weights)
    assert float(out["sharpness"]) == pytest.approx(exact, rel=1e-8)
    assert float(out["sharpness_residual"]) <= 1e-8 * exact
    # fewer steps: a Rayleigh quotient, never above λ_max; its residual bounds the gap
    few = measure(SharpnessProbe.for_objective(objective, weights, 4), weights)
    theta, residual = float(few["sharpness"]), float(few["sharpness_residual"])
    assert theta <= exact * (1 + 1e-12)
    assert residual > 0
    eigenvalues = np.linalg.eigvalsh(np.asarray(curvature._dense_hessian(objective, weights)))
    assert np.min(np.abs(eigenvalues - theta)) <= residual * (1 + 1e-9)


def test_zero_hessian_and_vmap():
    objective, weights = _problem("samples", 2)
    zero = tuple(np.zeros_like(w) for w in weights)  # depth 3 at W = 0: H = 0 (no breakdown NaN)
    out = measure(SharpnessProbe.for_objective(objective, zero, 10), zero)
    assert float(out["sharpness"]) == 0.0 and float(out["sharpness_residual"]) == 0.0
    probe = SharpnessProbe.for_objective(objective, weights, 20)
    batch = [weights, tuple(0.5 * w for w in weights), tuple(2.0 * w for w in weights)]
    stacked = tuple(np.stack(layers) for layers in zip(*batch))
    together = jax.jit(jax.vmap(lambda w: probe.measure(w)))(stacked)
    for i, w in enumerate(batch):
        alone = measure(probe, w)
        assert float(together["sharpness"][i]) == pytest.approx(float(alone["sharpness"]), 1e-12)


def test_probe_refuses_a_bad_iteration_count():
    objective, weights = _problem("samples", 0)
    for bad in (0, 2.5, True):
        with pytest.raises(UsageError, match="sharpness iterations"):
            SharpnessProbe.for_objective(objective, weights, bad)


RUN = """
seed = 3
steps = 6
record_every = 2
checkpoints = 0
[problem]
kind = "spectral"
input = 6
output = 6
samples = 6
whiten = true
law = "gaussian"
[model]
hidden = [4, 5]
[init]
kind = "scaled_gaussian"
[diagnostics]
sharpness = true
sharpness_iterations = 60
[[methods]]
name = "gd"
learning_rates = [1e-3, 2e-3]
"""


def test_run_file_records_sharpness(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(RUN)
    config = configs.load(path)
    result = execution.execute(config, tmp_path / "out")
    setup = result.setup
    X = setup.problem.X
    np.testing.assert_allclose(X @ X.T, 6 * np.eye(6), atol=1e-12)  # whitened: X Xᵀ = n I
    np.testing.assert_allclose(setup.problem.Y, setup.problem.A @ X, atol=1e-12)
    frame = dl.load(tmp_path / "out")
    assert {"sharpness", "sharpness_residual", "mode_learned"} <= set(frame.columns)
    first = frame[frame.step == 0].sharpness.to_numpy()
    exact = curvature.critical_point(setup.objective, setup.weights, method="dense").hessian_max
    np.testing.assert_allclose(first, exact, rtol=1e-8)  # 60 steps ≥ p = 54: exact
    assert frame.sharpness.notna().all() and len(frame) == 2 * 4


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("diagnostics", {"sharpness": "yes"}, "diagnostics.sharpness must be true or false"),
        ("diagnostics", {"every": 2}, "unknown key diagnostics.every"),
        ("diagnostics", {"sharpness": False}, "needs diagnostics.sharpness = true"),
        ("diagnostics", {"sharpness_iterations": 0}, "sharpness_iterations must be ≥ 1"),
        ("problem", {"condition_number": 10.0}, "does not apply to problem.law = 'gaussian'"),
        ("problem", {"vectors": "identity"}, "problem.vectors does not apply"),
        ("problem", {"rank": 3}, "problem.rank must be min"),
    ],
)
def test_bad_keys_are_refused(section, values, message):
    data = tomllib.loads(RUN)
    data[section] |= values
    with pytest.raises(UsageError, match=message):
        configs.parse(data)


def test_edge_of_stability_headline():
    """Cohen et al.'s claim on a depth-8, width-10 deep linear network (their construction:
    X = √n × orthogonal, A Gaussian, N(0, 1/n) layers). GD at η = 1.1e-4 (sharpness at
    initialisation 3.7e3 ≈ 0.20 · 2/η). The stable phase is from the first step t₁ at which
    the sharpness reaches 2/η to the end of the run (step 1200); over it the sharpness stays
    within ±10 % of 2/η, the loss rises at some steps and ends lower than at t₁."""
    data = tomllib.loads(RUN)
    data["problem"] |= {"input": 10, "output": 10, "samples": 10}
    data["model"]["hidden"] = [10] * 7
    data["seed"] = 0
    setup = execution.build(configs.parse(data))
    rate = 1.1e-4
    probe = SharpnessProbe.for_objective(setup.objective, setup.weights, 20)
    result = runner.run(
        make_method("gd"), setup.objective, setup.weights, [rate], 1200, probe=probe
    )
    curve = result.curves[0]
    assert len(curve.loss) == 1201  # no divergence
    ratio = curve.extras["sharpness"] * rate / 2
    loss = curve.loss
    assert ratio[0] < 0.3  # it starts well below 2/η: progressive sharpening
    t1 = int(np.argmax(ratio >= 1.0))
    assert ratio[t1] >= 1.0 and 100 <= t1 <= 600
    phase = slice(t1, None)
    assert np.all(np.abs(ratio[phase] - 1) <= 0.10), (ratio[phase].min(), ratio[phase].max())
    assert np.sum(np.diff(loss[phase]) > 0) >= 3  # non-monotone
    assert loss[-1] < 0.6 * loss[t1]  # and still falling
    # the recorded values are Lanczos values: 20 steps leave residuals ≤ 5 % of λ_max here
    assert np.all(
        curve.extras["sharpness_residual"][phase] <= 0.05 * curve.extras["sharpness"][phase]
    )

"""GD from a decoupled init follows the exact per-mode recursion (Saxe et al. 2014)."""

import tomllib

import numpy as np
import pytest

from deeplinear.diagnostics import theory
from deeplinear.experiment import config, execution
from deeplinear.explain.run_directory import theory_comparison
from deeplinear.store.results import run_series

POPULATION_DEPTH2 = """
seed = 3
steps = 2000
checkpoints = 0
[problem]
kind = "spectral"
input = 5
output = 7
rank = 4
condition_number = 100.0
[model]
hidden = [4]
[init]
kind = "spectral"
strengths = 1e-3
[[methods]]
name = "gd"
learning_rates = [0.05, 0.2]
"""

WHITENED_DEPTH3 = """
seed = 1
steps = 3000
checkpoints = 0
[problem]
kind = "spectral"
input = 6
output = 8
rank = 5
condition_number = 10.0
samples = 200
whiten = true
[model]
hidden = [5, 5]
[init]
kind = "spectral"
strengths = [0.1, 0.05, 0.02, 0.01, 0.005]
[[methods]]
name = "gd"
learning_rates = [1e-3]
"""

WHITENED_DEPTH4 = WHITENED_DEPTH3.replace("hidden = [5, 5]", "hidden = [5, 6, 5]").replace(
    "learning_rates = [1e-3]", "learning_rates = [5e-4]"
)


@pytest.mark.parametrize(
    "text",
    [POPULATION_DEPTH2, WHITENED_DEPTH3, WHITENED_DEPTH4],
    ids=["population-L2", "whitened-L3", "whitened-L4"],
)
def test_gd_follows_the_exact_decoupled_recursion(text):
    c = config.parse(tomllib.loads(text), source=text)
    result = execution.execute(c)
    series = run_series(result.table)
    comparison = theory_comparison(c, result.setup, series)
    assert comparison["applies"]
    for run_id, data in series.items():
        predicted = comparison["runs"][run_id]
        assert predicted["max_mode_error"] <= 1e-10
        loss, initial = data["loss"], data["loss"][0]
        keep = loss > 1e-8 * initial  # above round-off, the loss agrees as well
        rel = np.abs(predicted["predicted_loss"][keep] - loss[keep]) / loss[keep]
        assert rel.max() <= 1e-10
        assert loss[-1] < 1e-4 * initial  # the run got somewhere: the test is not vacuous


def test_theory_refuses_where_it_does_not_apply():
    c = config.load("examples/seed.toml")
    setup = execution.build(c)
    comparison = theory_comparison(c, setup, {})
    assert not comparison["applies"]
    assert "not spectral" in comparison["note"] and "not whitened" in comparison["note"]


def test_gradient_flow_is_the_small_step_limit_of_gd():
    s = np.array([2.0, 0.5])
    layers = np.full((2, 2), np.sqrt(1e-3))
    lr, steps = 1e-4, 40_000
    gd = theory.decoupled_gd(layers, s, lr, steps, c=1.0)
    flow = theory.decoupled_flow(np.prod(layers, axis=0), s, 2, np.array([lr * steps]), c=1.0)
    np.testing.assert_allclose(gd[-1], flow[-1], rtol=1e-3)
    deep_layers = np.full((3, 2), 0.1)  # a₀ = 1e-3 per mode, balanced over three layers
    deep_gd = theory.decoupled_gd(deep_layers, s, lr, 100_000, c=1.0)
    deep = theory.decoupled_flow(np.full(2, 1e-3), s, 3, np.array([0.0, lr * 100_000]), c=1.0)
    np.testing.assert_allclose(deep_gd[-1], deep[-1], rtol=1e-3)
    assert 0.01 < deep[-1][1] / s[1] < 0.99  # mid-transition: a real comparison


def test_gn_predicted_rate():
    assert theory.gn_predicted_rate(2.0, 0.1) == pytest.approx(0.64)

import numpy as np
import pytest

from deeplinear.diagnostics.probes import Probe, gauss_newton_spectrum
from deeplinear.loop import runner
from deeplinear.methods import make_method
from deeplinear.objectives.objective import Objective
from deeplinear.problems.dense import notebook_problem


@pytest.fixture(scope="module")
def seed0():
    return notebook_problem(0)


def test_gn_spectrum_rank_is_parameters_minus_gauge(seed0):
    problem, weights = seed0
    spectrum = gauss_newton_spectrum(weights, problem.objective())
    assert spectrum.parameters == 96 and spectrum.gauge_dimension == 36
    assert spectrum.rank == 60 and spectrum.nullity == 36
    # against a dense reference: eigenvalues of the Hessian of the sample loss at zero residual
    # are those of 2 JᵀJ; here compare with numpy on the full Kronecker Jacobian
    X, W1, W2 = problem.X, *weights
    J = np.hstack((np.kron((W2 @ X).T, np.eye(10)), np.kron(X.T, W1)))
    eig = np.sort(np.linalg.eigvalsh(2 * J.T @ J))[::-1][:60]
    np.testing.assert_allclose(spectrum.eigenvalues, eig, rtol=1e-9)


def test_largest_stable_step_separates_the_notebooks_runs(seed0):
    problem, weights = seed0
    bound = gauss_newton_spectrum(weights, problem.objective()).max_stable_learning_rate
    assert 1e-5 < bound < 1e-4  # GD at 1e-5 is stable, at 1e-4 it diverged (step 7)


def test_probe_measures_modes_layers_and_imbalance(seed0):
    problem, _ = seed0
    probe = Probe.for_problem(problem)
    _, s, _ = problem.modes()
    exact = (problem.A, np.eye(6))
    measured = probe.measure(exact)
    np.testing.assert_allclose(measured["mode_learned"], np.ones(6), atol=1e-12)
    np.testing.assert_allclose(measured["layer_sigma_max"], [s[0], 1.0], rtol=1e-12)
    assert float(measured["imbalance"][0]) == pytest.approx(
        np.linalg.norm(problem.A.T @ problem.A - np.eye(6)), rel=1e-12
    )


def test_imbalance_is_nearly_conserved_at_small_steps(seed0):
    problem, weights = seed0
    probe = Probe.for_problem(problem)
    curve = runner.run(
        make_method("gd"), problem.objective(), weights, [1e-7], 2000, record_every=100, probe=probe
    ).curves[0]
    imbalance = curve.extras["imbalance"][:, 0]
    assert curve.loss[-1] < 0.5 * curve.loss[0]
    assert np.max(np.abs(imbalance - imbalance[0])) < 1e-2 * imbalance[0]


@pytest.mark.parametrize("shape", [(5, 3, 4), (4, 2, 2, 3)])
def test_spectrum_of_zero_weights_does_not_crash(shape):
    """J = 0 at W = 0: rank 0, no λ_min⁺, no stable-step bound (was an IndexError)."""
    weights = tuple(np.zeros((a, b)) for a, b in zip(shape[:-1], shape[1:]))
    objective = Objective.population(np.ones((shape[0], shape[-1])))
    spectrum = gauss_newton_spectrum(weights, objective)
    assert spectrum.rank == 0 and np.isnan(spectrum.lambda_min)
    assert spectrum.max_stable_learning_rate == np.inf

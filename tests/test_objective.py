"""The QR-reduced objective equals the notebook's sample loss, and its gradient too."""

import jax
import numpy as np
import pytest

from deeplinear.objectives.objective import Objective
from deeplinear.problems.dense import NotebookDims, notebook_problem


def sample_loss(weights, X, Y):
    W = weights[0]
    for w in weights[1:]:
        W = W @ w
    return np.sum((W @ X - Y) ** 2)


@pytest.mark.parametrize(
    "dims", [NotebookDims(), NotebookDims(4, 3, 5, 20), NotebookDims(8, 5, 3, 4)], ids=str
)
@pytest.mark.parametrize("seed", [0, 1])
def test_reduced_loss_and_gradient_match_the_sample_form(dims, seed):
    problem, weights = notebook_problem(seed, dims)
    X, Y = problem.X, problem.Y
    Y = Y + 0.1 * np.random.default_rng(seed).standard_normal(Y.shape)  # not realizable
    objective = Objective.from_samples(X, Y)
    expected = sample_loss(weights, X, Y)
    assert float(objective.loss(weights)) == pytest.approx(expected, rel=1e-12)
    grads = jax.grad(objective.loss)(weights)
    direct = jax.grad(lambda w: ((w[0] @ w[1] @ X - Y) ** 2).sum())(weights)
    for g, d in zip(grads, direct):
        np.testing.assert_allclose(g, d, rtol=1e-10, atol=1e-10 * np.abs(d).max())


def test_roundoff_floor_is_what_no_linear_map_reaches():
    problem, _ = notebook_problem(0)
    objective = problem.objective()
    # Y = A X in floating point: the floor is the rounding of Y (5.25e-29), far below any loss
    assert 1e-30 < float(objective.floor) < 1e-27
    # at W = A the loss is the floor plus the round-off of A·Lᵀ
    at_target = float(objective.loss((problem.A, np.eye(6))))
    assert at_target < 1e-24


def test_population_loss():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 4))
    weights = (
        rng.standard_normal((5, 3)),
        rng.standard_normal((3, 2)),
        rng.standard_normal((2, 4)),
    )
    objective = Objective.population(A)
    W = weights[0] @ weights[1] @ weights[2]
    assert float(objective.loss(weights)) == pytest.approx(np.sum((W - A) ** 2), rel=1e-13)
    assert np.isnan(float(objective.notebook_loss(weights)))


def test_notebook_loss_is_the_square_of_the_sum():
    problem, weights = notebook_problem(2)
    objective = problem.objective()
    expected = np.sum(weights[0] @ weights[1] @ problem.X - problem.Y) ** 2
    assert float(objective.notebook_loss(weights)) == pytest.approx(expected, rel=1e-10)

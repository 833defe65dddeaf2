"""The structured minimum-norm Gauss-Newton step equals the notebook's Kronecker + lstsq step."""

import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from deeplinear.core.model import end_to_end
from deeplinear.methods import min_norm_gauss_newton_step
from deeplinear.methods._seed_lm import gauge_is_null_space
from deeplinear.notebook2017.notebook import kronecker_gauss_newton_step
from deeplinear.objectives.objective import Objective
from deeplinear.problems.dense import NotebookDims, notebook_problem

SIZES = [
    NotebookDims(),  # the notebook's 6/6/10, n = 1000
    NotebookDims(4, 3, 5, 200),  # hidden narrower than both sides
    NotebookDims(8, 8, 8, 50),
    NotebookDims(7, 4, 9, 300),
    NotebookDims(5, 7, 9, 300),  # hidden wider than the input: null space beyond the gauge
    NotebookDims(12, 5, 6, 40),
]


def flat(tree):
    return np.concatenate([np.asarray(x).ravel() for x in tree])


# the QR solver applies only where the gauge is the whole null space (hidden ≤ min(in, out))
CASES = [
    (dims, solver)
    for dims in SIZES
    for solver in ("auto", "qr", "svd")
    if solver != "qr" or dims.hidden <= min(dims.input, dims.output)
]


@pytest.mark.parametrize("dims, solver", CASES, ids=str)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_structured_step_equals_kronecker_lstsq(dims, solver, seed):
    problem, weights = notebook_problem(seed, dims)
    expected = flat(kronecker_gauss_newton_step(problem.X, problem.Y, *weights))
    ours = flat(min_norm_gauss_newton_step(weights, problem.objective(), solver))
    assert np.linalg.norm(ours - expected) <= 1e-10 * np.linalg.norm(expected)


@pytest.mark.parametrize(
    "shapes, solver",
    [
        ([(7, 3), (3, 3), (3, 5)], "qr"),
        ([(7, 3), (3, 3), (3, 5)], "svd"),
        ([(7, 4), (4, 3), (3, 5)], "auto"),  # extra null directions beyond the gauge: SVD
        ([(7, 4), (4, 3), (3, 5)], "svd"),
        ([(6, 3), (3, 3), (3, 3), (3, 4)], "auto"),
    ],
)
def test_deep_step_is_the_pseudoinverse_solution(shapes, solver):
    rng = np.random.default_rng(0)
    weights = tuple(rng.standard_normal(s) for s in shapes)
    X = rng.standard_normal((shapes[-1][1], 60))
    Y = rng.standard_normal((shapes[0][0], shapes[-1][1])) @ X
    objective = Objective.from_samples(X, Y)
    vector, unravel = ravel_pytree(weights)

    def residual(v):  # the full sample residual, not the reduced one
        w = unravel(v)
        return (end_to_end(w) @ X - Y).ravel()

    J = np.asarray(jax.jacfwd(residual)(vector))
    full_residual = np.asarray(residual(vector))
    expected = -np.linalg.pinv(J, rcond=1e-10) @ full_residual
    ours = flat(min_norm_gauss_newton_step(weights, objective, solver))
    assert np.linalg.norm(ours - expected) <= 1e-9 * np.linalg.norm(expected)


def test_gauge_dimension_rule():
    shapes = lambda *widths: [np.zeros((a, b)) for a, b in zip(widths, widths[1:])]
    assert gauge_is_null_space(shapes(10, 6, 6))
    assert gauge_is_null_space(shapes(5, 3, 4))
    assert not gauge_is_null_space(shapes(9, 7, 5))
    assert gauge_is_null_space(shapes(7, 3, 3, 5))
    assert not gauge_is_null_space(shapes(7, 4, 3, 5))

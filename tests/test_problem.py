import numpy as np
import pytest

from deeplinear.errors import UsageError
from deeplinear.problems.dense import NotebookDims, Problem, notebook_problem


def test_numpy_draws_are_the_notebooks(reference):
    problem, (W1, W2) = notebook_problem(0)
    for name, ours in {"W1": W1, "W2": W2, "A": problem.A, "X": problem.X, "Y": problem.Y}.items():
        np.testing.assert_array_equal(ours, reference[name], err_msg=name)


def test_same_draws_as_global_numpy_seed():
    np.random.seed(7)
    W1 = np.random.randn(10, 6)
    W2 = np.random.randn(6, 6)
    A = np.linspace(1, 1e-5, 10).reshape(-1, 1) * np.random.rand(10, 6)
    X = np.random.randn(6, 1000)
    problem, weights = notebook_problem(7)
    np.testing.assert_array_equal(weights[0], W1)
    np.testing.assert_array_equal(weights[1], W2)
    np.testing.assert_array_equal(problem.A, A)
    np.testing.assert_array_equal(problem.X, X)


def test_true_spectrum_is_reported():
    problem, _ = notebook_problem(0)
    s = np.linalg.svd(problem.A, compute_uv=False)
    np.testing.assert_allclose(problem.singular_values, s, rtol=1e-14)
    assert problem.rank == 6
    assert problem.condition_number == pytest.approx(s[0] / s[-1], rel=1e-14)
    assert 12 < problem.condition_number < 13  # not the 1e5 the notebook's label suggests


def test_condition_number_ignores_zero_singular_values():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 2)) @ np.diag([10.0, 1.0]) @ rng.standard_normal((2, 4))
    problem = Problem("rank-2", A)
    assert problem.rank == 2
    s = np.linalg.svd(A, compute_uv=False)
    assert problem.condition_number == pytest.approx(s[0] / s[1])


def test_jax_generator_is_deterministic_and_shaped():
    dims = NotebookDims(input=3, hidden=2, output=4, samples=50)
    a, wa = notebook_problem(3, dims, generator="jax")
    b, wb = notebook_problem(3, dims, generator="jax")
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(wa[0], wb[0])
    assert a.A.shape == (4, 3) and a.X.shape == (3, 50) and wa[1].shape == (2, 3)
    np.testing.assert_allclose(a.Y, a.A @ a.X)
    # row scaling: the last row of A is scaled by 1e-5, uniform entries in [0, 1)
    assert np.all(a.A[-1] <= 1e-5) and np.all(a.A >= 0)
    c, _ = notebook_problem(3, dims, generator="numpy")
    assert not np.allclose(a.X, c.X)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": 0, "generator": "torch"}, "generator"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(UsageError, match=message):
        notebook_problem(**kwargs)


@pytest.mark.parametrize("field", ["input", "hidden", "output", "samples"])
def test_bad_dims(field):
    with pytest.raises(UsageError, match=f"dims.{field}"):
        NotebookDims(**{field: 0})

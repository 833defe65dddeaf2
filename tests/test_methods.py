"""Each method against an independent plain-NumPy update, and the registry's errors."""

import numpy as np
import pytest

from deeplinear import runner
from deeplinear.errors import UsageError
from deeplinear.methods import METHODS, make_method
from deeplinear.problem import NotebookDims, notebook_problem

DIMS = NotebookDims(4, 3, 5, 30)


def numpy_losses(problem, weights, steps, update):
    """Losses before each update of ``update(t, weights, grads)`` on the sample loss."""
    X, Y = problem.X, problem.Y
    W1, W2 = (w.copy() for w in weights)
    losses = []
    for t in range(steps + 1):
        E = W1 @ W2 @ X - Y
        losses.append(np.sum(E**2))
        grads = (2 * E @ (W2 @ X).T, 2 * W1.T @ E @ X.T)
        W1, W2 = update(t, (W1, W2), grads)
    return np.array(losses)


def adam_update(lr, b1=0.9, b2=0.999, eps=1e-8):
    m, v = [0, 0], [0, 0]

    def update(t, ws, gs):
        out = []
        for i, (w, g) in enumerate(zip(ws, gs)):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat, v_hat = m[i] / (1 - b1 ** (t + 1)), v[i] / (1 - b2 ** (t + 1))
            out.append(w - lr * m_hat / (np.sqrt(v_hat) + eps))
        return out

    return update


@pytest.mark.parametrize(
    "name, rate, update",
    [
        ("gd", 1e-3, lambda t, ws, gs: [w - 1e-3 * g for w, g in zip(ws, gs)]),
        ("adam", 1e-2, adam_update(1e-2)),
    ],
)
def test_optax_methods_match_numpy(name, rate, update):
    problem, weights = notebook_problem(0, DIMS)
    expected = numpy_losses(problem, weights, 20, update)
    curve = runner.run(make_method(name), problem.objective(), weights, [rate], 20).curves[0]
    np.testing.assert_allclose(curve.loss, expected, rtol=1e-11)


def test_tf1_gd_rounds_the_learning_rate_through_float32():
    problem, weights = notebook_problem(0, DIMS)
    rate = 1e-3
    lr32 = float(np.float32(rate))
    expected = numpy_losses(
        problem, weights, 20, lambda t, ws, gs: [w - lr32 * g for w, g in zip(ws, gs)]
    )
    curve = runner.run(make_method("tf1-gd"), problem.objective(), weights, [rate], 20).curves[0]
    np.testing.assert_allclose(curve.loss, expected, rtol=1e-12)
    plain = runner.run(make_method("gd"), problem.objective(), weights, [rate], 20).curves[0]
    assert not np.allclose(plain.loss[1:], curve.loss[1:], rtol=1e-12, atol=0)


def test_registry_lists_every_method_with_its_description():
    for name, cls in METHODS.items():
        assert cls.name == name and cls.description and cls.reference


def test_unknown_method_suggests_the_closest():
    with pytest.raises(UsageError, match="did you mean 'adam'"):
        make_method("adma")


@pytest.mark.parametrize(
    "name, hyper, field",
    [
        ("adam", {"b1": 1.0}, "adam.b1"),
        ("adam", {"eps": -1.0}, "adam.eps"),
        ("tf1-adam", {"b2": "x"}, "tf1-adam.b2"),
        ("seed-lm", {"solver": "cholesky"}, "seed-lm.solver"),
        ("gd", {"momentum": 0.9}, "momentum"),
    ],
)
def test_bad_hyperparameters_name_the_field(name, hyper, field):
    with pytest.raises(UsageError, match=field):
        make_method(name, **hyper)

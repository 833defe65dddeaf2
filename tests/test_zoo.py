"""The optimizer zoo: each method against an independent reference."""

import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from deeplinear.core.backend import jax, jnp
from deeplinear.core.model import end_to_end
from deeplinear.errors import UsageError
from deeplinear.loop import runner
from deeplinear.methods import METHODS, make_method
from deeplinear.methods._levenberg_marquardt import cg_solve, rebalance, schur_solve
from deeplinear.objectives.objective import Objective
from deeplinear.problems.dense import NotebookDims, notebook_problem

SMALL = NotebookDims(4, 3, 5, 30)


@pytest.fixture(scope="module")
def small():
    problem, weights = notebook_problem(0, SMALL)
    return problem, weights


def numpy_run(problem, weights, steps, update):
    """Losses before each of ``steps`` updates ``update(t, (W1, W2), grads)`` of the sample loss."""
    X, Y = problem.X, problem.Y
    W = [w.copy() for w in weights]
    losses = []
    for t in range(steps + 1):
        E = W[0] @ W[1] @ X - Y
        losses.append(np.sum(E**2))
        if t < steps:
            W = update(t, W, [2 * E @ (W[1] @ X).T, 2 * W[0].T @ E @ X.T])
    return np.array(losses)


def optax_like(kind, lr, **h):
    state = {}

    def update(t, ws, gs):
        out = []
        for i, (w, g) in enumerate(zip(ws, gs)):
            if kind == "momentum":
                m = state[i] = h["b"] * state.get(i, 0) + g
                out.append(w - lr * m)
            elif kind == "nesterov":
                m = state[i] = h["b"] * state.get(i, 0) + g
                out.append(w - lr * (g + h["b"] * m))
            elif kind == "rmsprop":
                nu = state[i] = h["d"] * state.get(i, 0) + (1 - h["d"]) * g * g
                out.append(w - lr * g / np.sqrt(nu + 1e-8))
            elif kind == "adagrad":
                s = state[i] = state.get(i, 0.1) + g * g
                out.append(w - lr * g / np.sqrt(s + 1e-7))
            elif kind == "adamw":
                m, v = state.get(i, (0, 0))
                m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
                state[i] = (m, v)
                m_hat, v_hat = m / (1 - 0.9 ** (t + 1)), v / (1 - 0.999 ** (t + 1))
                out.append(w - lr * (m_hat / (np.sqrt(v_hat) + 1e-8) + 1e-2 * w))
        return out

    return update


@pytest.mark.parametrize(
    "name, hyper, rate, reference",
    [
        ("momentum", {"momentum": 0.8}, 1e-3, optax_like("momentum", 1e-3, b=0.8)),
        ("nesterov", {"momentum": 0.8}, 1e-3, optax_like("nesterov", 1e-3, b=0.8)),
        ("rmsprop", {"decay": 0.9}, 1e-2, optax_like("rmsprop", 1e-2, d=0.9)),
        ("adagrad", {}, 1e-1, optax_like("adagrad", 1e-1)),
        ("adamw", {"weight_decay": 1e-2}, 1e-2, optax_like("adamw", 1e-2)),
    ],
)
def test_first_order_methods_match_numpy(small, name, hyper, rate, reference):
    problem, weights = small
    expected = numpy_run(problem, weights, 15, reference)
    curve = runner.run(make_method(name, **hyper), problem.objective(), weights, [rate], 15)
    np.testing.assert_allclose(curve.curves[0].loss, expected, rtol=1e-10)


def test_cosine_schedule_scales_the_step(small):
    problem, weights = small
    lr, steps = 1e-3, 10
    factor = [0.5 * (1 + np.cos(np.pi * t / steps)) for t in range(steps)]  # alpha = 0
    expected = numpy_run(
        problem, weights, steps, lambda t, ws, gs: [w - lr * factor[t] * g for w, g in zip(ws, gs)]
    )
    method = make_method("gd", schedule="cosine", decay_steps=steps, decay_factor=1e-300)
    curve = runner.run(method, problem.objective(), weights, [lr], steps).curves[0]
    np.testing.assert_allclose(curve.loss, expected, rtol=1e-10)


def grams_step(weights, grads, S, kind, lr):
    W1, W2 = weights
    g1, g2 = grads
    if kind == "scaled-gd":
        return (W1 - lr * g1 @ np.linalg.inv(W2 @ W2.T), W2 - lr * np.linalg.inv(W1.T @ W1) @ g2)
    return (
        W1 - lr / 2 * g1 @ np.linalg.inv(W2 @ S @ W2.T),
        W2 - lr / 2 * np.linalg.inv(W1.T @ W1) @ g2 @ np.linalg.inv(S),
    )


@pytest.mark.parametrize("kind", ["scaled-gd", "natural-gradient"])
def test_preconditioned_steps_match_the_formulas(small, kind):
    problem, weights = small
    objective = problem.objective()
    grads = [np.asarray(g) for g in jax.grad(objective.loss)(weights)]
    S = problem.X @ problem.X.T
    expected = grams_step(weights, grads, S, kind, 1e-2)
    method = make_method(kind)
    state = method.init(weights, objective, 1e-2)
    got, _ = method.step(weights, state, objective, objective.loss(weights), tuple(grads))
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-9)


def test_als_sweep_matches_numpy_and_solves_exact_factorization():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((6, 3)) @ rng.standard_normal((3, 5))  # rank 3
    weights = (rng.standard_normal((6, 3)), rng.standard_normal((3, 5)))
    objective = Objective.population(A)
    method = make_method("als")
    got, _ = method.step(weights, method.init(weights, objective, 1.0), objective, None, None)
    W1 = A @ np.linalg.pinv(weights[1])
    W2 = np.linalg.pinv(W1) @ A
    np.testing.assert_allclose(got[0], W1, rtol=1e-10)
    np.testing.assert_allclose(got[1], W2, rtol=1e-10)
    assert float(objective.loss(got)) < 1e-24 * float(objective.loss(weights))


def dense_damped(weights, objective, lam):
    flat, unravel = ravel_pytree(tuple(jnp.asarray(w) for w in weights))
    J = np.asarray(jax.jacfwd(lambda v: objective.residual(unravel(v)).ravel())(flat))
    r = np.asarray(objective.residual(weights)).ravel()
    U, s, Vt = np.linalg.svd(J, full_matrices=False)
    return -Vt.T @ ((s / (s**2 + lam)) * (U.T @ r)), J


@pytest.mark.parametrize("dims", [NotebookDims(), SMALL, NotebookDims(7, 4, 9, 300)], ids=str)
@pytest.mark.parametrize("population", [False, True])
def test_lm_and_cg_steps_equal_the_dense_damped_solve(dims, population):
    problem, weights = notebook_problem(1, dims)
    objective = Objective.population(problem.A) if population else problem.objective()
    weights = tuple(jnp.asarray(w) for w in weights)
    for lam in (1e2, 1e-2):
        expected, _ = dense_damped(weights, objective, lam)
        schur = ravel_pytree(schur_solve(weights, objective, lam)[0])[0]
        assert np.linalg.norm(schur - expected) <= 1e-9 * np.linalg.norm(expected)
        cg, ok, _ = cg_solve(weights, objective, lam, 1e-12, 2000)
        assert bool(ok)
        cg = ravel_pytree(cg)[0]
        assert np.linalg.norm(cg - expected) <= 1e-7 * np.linalg.norm(expected)


def test_tiny_damping_step_has_the_right_effect():
    """At λ → 0 the gauge part is undetermined; what the step does to the residual is not."""
    problem, weights = notebook_problem(0)
    objective = problem.objective()
    weights = tuple(jnp.asarray(w) for w in weights)
    expected, J = dense_damped(weights, objective, 1e-9)
    ours = np.asarray(ravel_pytree(schur_solve(weights, objective, 1e-9)[0])[0])
    np.testing.assert_allclose(
        J @ ours, J @ expected, rtol=1e-9, atol=1e-9 * np.abs(J @ expected).max()
    )
    assert np.linalg.norm(ours) <= np.linalg.norm(expected) * (1 + 1e-6)  # no gauge component


def test_lm_reaches_1e20_in_20_iterations_on_the_seed():
    problem, weights = notebook_problem(0)
    curve = runner.run(make_method("lm"), problem.objective(), weights, [1.0], 20).curves[0]
    assert curve.loss.min() <= 1e-20 * curve.loss[0]
    assert np.argmax(curve.loss <= 1e-20 * curve.loss[0]) <= 20


def test_rebalance_keeps_the_product_and_balances():
    rng = np.random.default_rng(1)
    weights = tuple(jnp.asarray(rng.standard_normal(s)) for s in [(9, 4), (4, 4), (4, 6)])
    balanced = rebalance(weights)
    np.testing.assert_allclose(end_to_end(balanced), end_to_end(weights), rtol=1e-12, atol=1e-12)
    for a, b in zip(balanced[:-1], balanced[1:]):
        np.testing.assert_allclose(a.T @ a, b @ b.T, atol=1e-12)


def test_singular_solve_is_rejected_not_a_crash():
    problem, _ = notebook_problem(0)
    zeros = (np.zeros((10, 6)), np.zeros((6, 6)))  # J = 0: nothing to solve for
    curve = runner.run(make_method("lm"), problem.objective(), zeros, [1.0], 5).curves[0]
    assert curve.diverged_at is None and np.all(curve.loss == curve.loss[0])
    assert curve.extras["rejected_steps"][-1] == 5


@pytest.mark.parametrize("name", ["optimistix-lm", "optimistix-gn", "optimistix-dogleg"])
def test_optimistix_peers_converge_and_report_status(name):
    problem, weights = notebook_problem(0)
    curve = runner.run(make_method(name), problem.objective(), weights, [1.0], 30).curves[0]
    assert curve.loss.min() < 1e-20 * curve.loss[0]
    assert np.all(curve.extras["optimistix_result"] == 0)


def test_converged_maps_agree_with_scipy():
    problem, weights = notebook_problem(2)
    objective = problem.objective()
    ours = runner.run(make_method("lm"), objective, weights, [1.0], 30)
    for name in ("scipy-lm", "scipy-trf"):
        theirs = runner.run(make_method(name), objective, weights, [1.0], 200)
        a = np.asarray(end_to_end(tuple(w[0] for w in ours.final_weights)))
        b = np.asarray(end_to_end(tuple(w[0] for w in theirs.final_weights)))
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * np.abs(problem.A).max())
        assert theirs.curves[0].loss.min() < 1e-20 * theirs.curves[0].loss[0]


# the baselines of measured problems refuse a fully observed one (tests/test_baselines.py)
MEASURED_ONLY = {"nuclear-norm", "soft-impute"}


@pytest.mark.parametrize("name", sorted(set(METHODS) - {"scipy-lm", "scipy-trf"} - MEASURED_ONLY))
def test_every_method_runs_at_depth_three(name):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((6, 3)) @ rng.standard_normal((3, 5))
    weights = tuple(0.5 * rng.standard_normal(s) for s in [(6, 3), (3, 3), (3, 5)])
    rate = {"momentum": 2e-3, "nesterov": 2e-3}.get(name, 1e-2)
    if (
        name in ("seed-lm", "als", "lm", "gn-cg", "natural-gradient", "lbfgs")
        or "optimistix" in name
    ):
        rate = 0.5 if name == "natural-gradient" else 1.0
    curve = runner.run(make_method(name), Objective.population(A), weights, [rate], 20).curves[0]
    assert curve.diverged_at is None and curve.loss[-1] < curve.loss[0], name


@pytest.mark.parametrize(
    "name, hyper, field",
    [
        ("momentum", {"momentum": 1.0}, "momentum.momentum"),
        ("lm", {"damping": 0.0}, "lm.damping"),
        ("gn-cg", {"cg_rtol": 0.0}, "gn-cg.cg_rtol"),
        ("gd", {"schedule": "step"}, "gd.schedule"),
        ("lbfgs", {"schedule": "cosine"}, "lbfgs.schedule"),
        ("optimistix-gn", {"linear_solver": "lu"}, "optimistix-gn.linear_solver"),
    ],
)
def test_bad_hyperparameters(name, hyper, field):
    with pytest.raises(UsageError, match=field.replace(".", r"\.")):
        make_method(name, **hyper)

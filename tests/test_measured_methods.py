"""Built-in methods on measured problems (matrix completion and sensing, issue #10).

References are independent: NumPy's ``lstsq`` row by row for ALS, the dense Jacobian
(``jax.jacfwd``) and its minimum-norm least-squares solution for the Gauss-Newton step, and the
known truth M for recovery.
"""

import math

import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from deeplinear.core.backend import jax, jnp
from deeplinear.errors import UsageError
from deeplinear.loop import runner
from deeplinear.methods import METHODS, cost, make_method
from deeplinear.methods import _measured as measured
from deeplinear.objectives import measurement
from deeplinear.objectives.measurement import Sensing


def truth(rng, n1, n2, r, kappa=3.0):
    U = np.linalg.qr(rng.standard_normal((n1, r)))[0]
    V = np.linalg.qr(rng.standard_normal((n2, r)))[0]
    s = np.linspace(1.0, 1.0 / kappa, r) * math.sqrt(n1 * n2)
    return U, s, V


def completion(seed=0, n1=40, n2=30, r=2, p=0.5):
    rng = np.random.default_rng(seed)
    U, s, V = truth(rng, n1, n2, r)
    M = (U * s) @ V.T
    rows, cols = np.nonzero(rng.random((n1, n2)) < p)
    objective = jax.tree_util.tree_map(
        jnp.asarray, measurement.completion(rows, cols, M[rows, cols], (n1, n2))
    )
    return objective, M, (U, s, V), rng


def sensing(seed=0, n1=12, n2=10, r=2):
    rng = np.random.default_rng(seed)
    U, s, V = truth(rng, n1, n2, r)
    M = (U * s) @ V.T
    m = 5 * (n1 + n2) * r
    A = rng.standard_normal((m, n1 * n2)) / math.sqrt(m)
    objective = Sensing(jnp.asarray(A), jnp.asarray(A @ M.ravel()), jnp.ones(m), jnp.asarray(0.0))
    return objective, M, (U, s, V), rng


def near_truth(factors, rng, noise=0.05):
    """Balanced factors of M, each perturbed by noise · √σ₁ (a spectral-like start)."""
    U, s, V = factors
    root = np.sqrt(s)
    left = U * root + noise * root[0] * rng.standard_normal(U.shape)
    right = (V * root).T + noise * root[0] * rng.standard_normal((s.size, V.shape[0]))
    return left, right


def recovery(weights, M):
    W = np.asarray(weights[0]) @ np.asarray(weights[1])
    return np.linalg.norm(W - M) / np.linalg.norm(M)


def test_als_sweep_equals_numpy_lstsq_row_by_row():
    objective, _, _, rng = completion(seed=1, n1=30, n2=20, r=2, p=0.5)
    W1, W2 = rng.standard_normal((30, 3)), rng.standard_normal((3, 20))
    new = jax.jit(measured.als_sweep)((jnp.asarray(W1), jnp.asarray(W2)), objective, 1.0)
    rows, cols = np.asarray(objective.rows), np.asarray(objective.cols)
    values = np.asarray(objective.values)
    expected1 = np.empty_like(W1)
    for i in range(30):  # each row of W1 against the columns of W2 it is observed in
        k = rows == i
        expected1[i] = np.linalg.lstsq(W2[:, cols[k]].T, values[k], rcond=None)[0]
    expected2 = np.empty_like(W2)
    for j in range(20):  # then each column of W2 against the new W1
        k = cols == j
        expected2[:, j] = np.linalg.lstsq(expected1[rows[k]], values[k], rcond=None)[0]
    for got, want in zip(new, (expected1, expected2)):
        np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-10 * np.abs(want).max())


def test_gn_cg_step_is_the_dense_minimum_norm_gauss_newton_step():
    objective, _, factors, rng = completion(seed=2, n1=12, n2=10, r=2, p=0.7)
    weights = tuple(jnp.asarray(w) for w in near_truth(factors, rng, noise=0.3))
    flat, unravel = ravel_pytree(weights)
    residual = lambda v: objective.residual(unravel(v))
    J = np.asarray(jax.jacfwd(residual)(flat))
    expected = np.linalg.lstsq(J, -np.asarray(residual(flat)), rcond=None)[0]
    lam = 1e-13 * np.linalg.norm(J, 2) ** 2  # damping → 0
    delta, ok, steps = jax.jit(measured.cg_solve, static_argnums=(3, 4))(
        weights, objective, lam, 1e-14, 400
    )
    got = np.asarray(ravel_pytree(delta)[0])
    assert bool(ok) and 0 < int(steps) < 400
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-8 * np.abs(expected).max())


METHOD_RATES = {  # learning rates in the lab's normalisation (no ½, no 1/p): η_paper / (2 s)
    "scaled-gd": 0.5,
    "precgd": 0.5,
    "als": 1.0,
    "gn-cg": 1.0,
    "lm": 1.0,
}


@pytest.mark.parametrize("kind", ["completion", "sensing"])
def test_methods_recover_a_well_posed_low_rank_matrix(kind):
    objective, M, factors, rng = completion() if kind == "completion" else sensing()
    start = near_truth(factors, rng)
    assert recovery(start, M) > 1e-2
    scale = 0.5 if kind == "completion" else 1.0  # p, or ≈ Σ‖A_k‖²/(n1 n2) for sensing
    for name, rate in METHOD_RATES.items():
        if kind == "sensing" and name == "lm":
            continue  # on a measured problem lm is gn-cg's solve with a tighter tolerance
        steps = {"scaled-gd": 150, "precgd": 150, "als": 40}.get(name, 12)
        rate = rate / (2 * scale) if name in ("scaled-gd", "precgd") else rate
        batch = runner.run(make_method(name), objective, start, [rate], steps, record_every=steps)
        final = [w[0] for w in batch.final_weights]
        assert recovery(final, M) < 1e-8, (kind, name, recovery(final, M))


def test_natural_gradient_refuses_a_measured_problem_in_one_line():
    objective, _, factors, rng = completion(n1=8, n2=6)
    start = near_truth(factors, rng)
    with pytest.raises(UsageError, match="natural-gradient cannot run on this problem") as error:
        runner.run(make_method("natural-gradient"), objective, start, [1.0], 1)
    assert "\n" not in str(error.value) and "covariance" in str(error.value)


def test_als_refuses_layers_too_wide_for_its_dense_solve():
    objective, _, _, _ = sensing(n1=12, n2=10)
    shapes = [(12, 400), (400, 10)]  # 4800 unknowns in the first layer's vec-form solve
    assert "4800" in make_method("als").supports(objective, shapes)
    assert make_method("als").supports(objective, [(12, 2), (2, 10)]) is None


@pytest.mark.parametrize("dense", [False, True])
def test_every_method_has_finite_positive_flops_and_memory_on_measurements(dense):
    k = cost.Measurements(5000, dense)
    for shapes in ([(100, 10), (10, 80)], [(100, 10), (10, 10), (10, 80)]):
        for name in METHODS:
            method = make_method(name)
            per_step, per_cg = cost.step_flops(method, shapes, k)
            assert math.isfinite(per_step) and per_step > 0, name
            assert math.isfinite(per_cg) and per_cg >= 0, name
            values = method.memory_values(shapes, k)
            assert math.isfinite(values) and values > 0, name
        # a measured loss is charged its gather (or the dense operator), not the n2 columns
        F = cost.loss_flops(shapes, k)
        assert (F > 2 * 5000 * 100 * 80) == dense


def test_rows_of_names_the_measurements():
    objective, *_ = completion(n1=8, n2=6)
    assert cost.rows_of(objective) == cost.Measurements(objective.values.shape[0], False)
    objective, *_ = sensing(n1=4, n2=3)
    assert cost.rows_of(objective).dense

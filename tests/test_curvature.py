import numpy as np
import pytest

from deeplinear.core.backend import jax, jnp
from deeplinear.diagnostics.curvature import critical_point, saddle_escape_prediction
from deeplinear.diagnostics.probes import gauss_newton_spectrum
from deeplinear.errors import UsageError
from deeplinear.objectives.objective import Objective
from deeplinear.problems.dense import notebook_problem


def random_case(seed, output, hidden, inputs, samples=None, zero=False):
    """A target, an objective (population if samples is None) and Gaussian weights."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((output, inputs))
    if samples is None:
        objective = Objective.population(A)
    else:
        X = rng.standard_normal((inputs, samples))
        objective = Objective.from_samples(X, A @ X + 0.1 * rng.standard_normal((output, samples)))
    dims = [output, *hidden, inputs]
    weights = tuple(rng.standard_normal((a, b)) / np.sqrt(b) for a, b in zip(dims, dims[1:]))
    return objective, tuple(0 * w for w in weights) if zero else weights


def minimum_case(seed, output=7, rank=3, inputs=5):
    """A depth-2 exact factorisation of a rank-3 target: H ⪰ 0 with a gauge null space."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((output, rank)))
    V, _ = np.linalg.qr(rng.standard_normal((inputs, rank)))
    s = np.array([3.0, 1.0, 0.2])
    return Objective.population((U * s) @ V.T), (U * np.sqrt(s), np.sqrt(s)[:, None] * V.T)


def zero_layer(case, index):
    """The case with one layer set to zero: a rank-deficient point, not a critical one."""
    objective, weights = case
    return objective, tuple(0 * w if i == index else w for i, w in enumerate(weights))


CASES = {
    "depth2-population": lambda: random_case(0, 5, [3], 4),
    "depth2-samples": lambda: random_case(1, 5, [3], 4, samples=20),
    "depth3-population": lambda: random_case(2, 6, [4, 3], 5),
    "depth3-samples": lambda: random_case(3, 6, [4, 3], 5, samples=30),
    "depth4-samples": lambda: random_case(4, 4, [3, 3, 2], 5, samples=12),
    "depth2-zero": lambda: random_case(5, 5, [3], 4, zero=True),
    "depth3-zero": lambda: random_case(6, 6, [4, 3], 5, zero=True),  # H = 0
    "depth3-rank-deficient": lambda: zero_layer(random_case(7, 6, [4, 3], 5), 1),
    "depth2-minimum": lambda: minimum_case(8),
}


@pytest.fixture(scope="module")
def dense():
    """``critical_point(method="dense")``: jax.hessian and numpy's eigh, one per case."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = critical_point(*CASES[name](), method="dense")
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(CASES))
def test_lanczos_matches_the_dense_hessian(name, dense):
    objective, weights = CASES[name]()
    reference = dense(name)
    point = critical_point(objective, weights, method="lanczos")
    scale = max(abs(reference.hessian_min), abs(reference.hessian_max), 1e-300)
    assert point.method == "lanczos" and reference.method == "dense"
    assert point.parameters == reference.parameters == sum(w.size for w in weights)
    assert abs(point.hessian_min - reference.hessian_min) <= 1e-6 * scale
    assert abs(point.hessian_max - reference.hessian_max) <= 1e-6 * scale
    np.testing.assert_allclose(point.grad_norm, reference.grad_norm, rtol=1e-14)
    assert point.negative_directions is None and point.hessian_vector_products > 0
    assert reference.negative_directions is not None and reference.hessian_vector_products == 0


def test_zero_hessian_and_auto_method(dense):
    point = dense("depth3-zero")  # every second derivative of W1 W2 W3 vanishes at 0
    assert point.hessian_min == point.hessian_max == point.negative_directions == 0
    assert critical_point(*CASES["depth2-samples"]()).method == "dense"  # p = 27 ≤ 2000


def test_at_a_minimum_the_hessian_is_gauss_newton(dense):
    objective, weights = CASES["depth2-minimum"]()
    point = dense("depth2-minimum")
    spectrum = gauss_newton_spectrum(weights, objective)  # 2 JᵀJ, by an SVD of the Jacobian
    np.testing.assert_allclose(point.hessian_max, spectrum.lambda_max, rtol=1e-12)
    assert abs(point.hessian_min) < 1e-12 * point.hessian_max
    assert point.grad_norm < 1e-13 and point.negative_directions == 0


@pytest.mark.parametrize("method", ["dense", "lanczos"])
def test_direction_is_a_unit_eigenvector_of_the_smallest_eigenvalue(method):
    objective, weights = random_case(9, 6, [4, 3], 5, samples=30)
    point = critical_point(objective, weights, method=method)
    assert [d.shape for d in point.direction] == [w.shape for w in weights]
    flat = np.concatenate([d.ravel() for d in point.direction])
    np.testing.assert_allclose(np.linalg.norm(flat), 1.0, rtol=1e-12)
    # H d by finite differences of the gradient, independent of both code paths
    grad = jax.grad(objective.loss)
    h = 1e-6
    plus = grad(tuple(w + h * d for w, d in zip(weights, point.direction)))
    minus = grad(tuple(w - h * d for w, d in zip(weights, point.direction)))
    Hd = np.concatenate([np.ravel(a - b) / (2 * h) for a, b in zip(plus, minus)])
    scale = max(abs(point.hessian_min), abs(point.hessian_max))
    np.testing.assert_allclose(Hd, point.hessian_min * flat, atol=1e-6 * scale)


def test_notebook_problem_at_zero_is_a_strict_saddle_with_36_negative_directions():
    problem, (W1, W2) = notebook_problem(0)
    zero = (np.zeros_like(W1), np.zeros_like(W2))
    point = critical_point(problem.objective(), zero)
    assert point.method == "dense" and point.parameters == 96
    assert point.grad_norm == 0.0
    # H = [[0, K], [Kᵀ, 0]] with ‖K‖ = 2σ_max(T L): spectrum ±2σ_i(TL), each h = 6 times
    assert point.negative_directions == 36 and point.is_strict_saddle
    objective = problem.objective()
    sigma = np.linalg.svd(np.asarray(objective.target @ objective.factor), compute_uv=False)
    np.testing.assert_allclose(
        [point.hessian_min, point.hessian_max], [-2 * sigma[0], 2 * sigma[0]]
    )
    lanczos = critical_point(objective, zero, method="lanczos")
    np.testing.assert_allclose(lanczos.hessian_min, point.hessian_min, rtol=1e-10)
    np.testing.assert_allclose(lanczos.hessian_max, point.hessian_max, rtol=1e-10)


def test_results_are_deterministic():
    objective, weights = random_case(10, 6, [4, 3], 5)
    a = critical_point(objective, weights, method="lanczos")
    b = critical_point(objective, list(weights), method="lanczos")
    assert a.row() == b.row()
    for x, y in zip(a.direction, b.direction):
        np.testing.assert_array_equal(x, y)


def test_prediction_matches_gd_on_a_one_dimensional_saddle():
    lam, lr, delta, size = -3.0, 0.01, 1e-6, 1e-2  # f(x) = λ x²/2, GD: x ← (1 − ηλ) x
    predicted = saddle_escape_prediction(lam, lr, delta, size)
    x, steps = delta, 0
    while abs(x) < size:
        x -= lr * lam * x
        steps += 1
    assert steps == np.ceil(predicted)
    np.testing.assert_allclose(predicted, np.log(size / delta) / np.log(1 + lr * 3.0), rtol=1e-14)
    assert saddle_escape_prediction(0.0, lr, delta, size) == np.inf
    assert saddle_escape_prediction(2.0, lr, delta, size) == np.inf
    assert saddle_escape_prediction(lam, lr, size, delta) == 0.0
    assert saddle_escape_prediction(lam, lr, delta, 0.0) == 0.0


def test_prediction_matches_gd_leaving_the_notebook_saddle():
    problem, (W1, W2) = notebook_problem(0)
    objective = problem.objective()
    zero = (np.zeros_like(W1), np.zeros_like(W2))
    point = critical_point(objective, zero)
    lr, delta, size = 1e-5, 1e-8, 1e-3
    predicted = saddle_escape_prediction(point.hessian_min, lr, delta, size)
    step = jax.jit(lambda w: jax.tree.map(lambda a, g: a - lr * g, w, jax.grad(objective.loss)(w)))
    weights, steps = tuple(jnp.asarray(delta * d) for d in point.direction), 0
    while np.sqrt(sum(float(jnp.sum(w**2)) for w in weights)) < size:
        weights = step(weights)
        steps += 1
    assert 50 < steps == np.ceil(predicted)


def test_bad_input_says_the_fix():
    objective, weights = random_case(11, 5, [3], 4)
    with pytest.raises(UsageError, match="method must be one of"):
        critical_point(objective, weights, method="arnoldi")
    with pytest.raises(UsageError, match="W1's columns must equal W2's rows"):
        critical_point(objective, (weights[0], weights[1].T))
    with pytest.raises(UsageError, match="W1 needs 5 rows and WL 4 columns"):
        critical_point(objective, (weights[0][:4], weights[1]))
    with pytest.raises(UsageError, match="tuple"):
        critical_point(objective, weights[0])
    with pytest.raises(UsageError, match="max_iterations"):
        critical_point(objective, weights, max_iterations=0)
    with pytest.raises(UsageError, match="NaN or inf"):
        critical_point(objective, (weights[0], np.full_like(weights[1], np.nan)))
    objective, weights = CASES["depth3-samples"]()  # 51 parameters: more than one restart
    with pytest.raises(UsageError, match=r"did not find the .* raise max_iterations"):
        critical_point(objective, weights, method="lanczos", max_iterations=1, tol=1e-14)
    with pytest.raises(UsageError, match="learning_rate must be a finite number > 0"):
        saddle_escape_prediction(-1.0, 0.0, 1e-3, 1.0)

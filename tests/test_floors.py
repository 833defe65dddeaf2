"""The reachable minimum and honest round-off, against exact rational arithmetic and NumPy."""

from fractions import Fraction

import numpy as np
import pytest

from deeplinear.core import accurate
from deeplinear.core.accurate import irreducible_loss
from deeplinear.diagnostics.floors import reachable_minimum
from deeplinear.loop import runner
from deeplinear.methods import make_method
from deeplinear.problems.dense import Problem, notebook_problem, spectral_problem


def fractions(a) -> list[list[Fraction]]:
    return [[Fraction(float(v)) for v in row] for row in np.atleast_2d(a)]


def exact_loss(weights, X, Y) -> Fraction:
    """‖W1 ⋯ WL X − Y‖² in exact rational arithmetic (every float64 is a dyadic rational)."""
    product = fractions(weights[0])
    for m in [*weights[1:], X]:
        m = fractions(m)
        product = [[sum(a * b for a, b in zip(row, col)) for col in zip(*m)] for row in product]
    return sum(
        (p - y) ** 2 for prow, yrow in zip(product, fractions(Y)) for p, y in zip(prow, yrow)
    )


def exact_minimum(X, Y) -> Fraction:
    """min_W ‖W X − Y‖² = ‖Y‖² − tr(C S⁻¹ Cᵀ), S = X Xᵀ, C = Y Xᵀ, by Gauss-Jordan in ℚ."""
    Xf, Yf = fractions(X), fractions(Y)
    n = len(Xf)
    S = [[sum(a * b for a, b in zip(Xf[i], Xf[j])) for j in range(n)] for i in range(n)]
    C = [[sum(a * b for a, b in zip(y, Xf[j])) for j in range(n)] for y in Yf]
    M = [S[i][:] + [c[i] for c in C] for i in range(n)]
    for c in range(n):
        pivot = next(r for r in range(c, n) if M[r][c] != 0)
        M[c], M[pivot] = M[pivot], M[c]
        M[c] = [v / M[c][c] for v in M[c]]
        for r in range(n):
            if r != c and M[r][c] != 0:
                M[r] = [a - M[r][c] * b for a, b in zip(M[r], M[c])]
    Z = [row[n:] for row in M]  # S⁻¹ Cᵀ
    trace = sum(C[k][i] * Z[i][k] for k in range(len(C)) for i in range(n))
    return sum(v * v for row in Yf for v in row) - trace


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_irreducible_loss_is_exact(seed):
    """The notebook's floor is the rounding of Y = A·X: ~5e-29, not the 7e-27 float64 gives."""
    problem, _ = notebook_problem(seed)
    truth = float(exact_minimum(problem.X, problem.Y))
    value, _ = irreducible_loss(problem.X, problem.Y)
    assert abs(value - truth) <= 1e-3 * truth  # measured: agreement to every printed digit
    naive = np.sum(
        (problem.Y - problem.Y @ np.linalg.qr(problem.X.T)[0] @ np.linalg.qr(problem.X.T)[0].T) ** 2
    )
    assert naive > 10 * truth  # what the lab printed before: rounding, not the floor


def test_double_double_losses_agree_with_exact_arithmetic():
    """At the seed's initial weights and at a converged LM iterate, within the stated bound."""
    problem, weights = notebook_problem(0)
    result = runner.run(make_method("lm"), problem.objective(), weights, [1.0], 60)
    final = tuple(np.asarray(w)[0] for w in result.final_weights)
    for w in (weights, final):
        truth = float(exact_loss(w, problem.X, problem.Y))
        bound = accurate.loss_error_bound(w, problem.X, problem.Y)
        assert abs(accurate.loss(w, problem.X, problem.Y) - truth) <= max(bound, 1e-15 * truth)
    assert bound <= 1e-28  # the bound the lab states near convergence at the seed's size
    in_loop = float(result.curves[0].loss[-1])
    floor = reachable_minimum(problem, [10, 6, 6])
    assert abs(in_loop - truth) <= floor.resolution  # the loop's value, within its resolution


def eckart_young(X, Y, k):
    """Reduced-rank regression by another route: whiten with S^{1/2}, truncate the OLS map."""
    S = X @ X.T
    ols = np.linalg.solve(S, X @ Y.T).T
    evals, evecs = np.linalg.eigh(S)
    root = (evecs * np.sqrt(evals)) @ evecs.T
    sigma = np.linalg.svd(ols @ root, compute_uv=False)
    return np.sum((Y - ols @ X) ** 2) + np.sum(sigma[k:] ** 2)


@pytest.mark.parametrize(
    "seed, widths", [(0, [10, 3, 6]), (1, [10, 4, 2, 6]), (2, [10, 6, 1, 6]), (3, [10, 5, 6])]
)
def test_width_below_rank_gives_the_eckart_young_floor(seed, widths):
    problem, _ = notebook_problem(seed)
    floor = reachable_minimum(problem, widths)
    truth = eckart_young(problem.X, problem.Y, min(widths))
    assert floor.value == pytest.approx(truth, rel=1e-10)
    assert floor.kinds == ("rank",) and floor.width == min(widths)


def test_population_rank_floor_and_a_full_width_net():
    rng = np.random.default_rng(4)
    problem = spectral_problem(7, 9, np.array([3.0, 2.0, 1.0, 0.5]), rng=rng)
    assert reachable_minimum(problem, [9, 2, 7]).value == pytest.approx(1.25, rel=1e-12)
    full = reachable_minimum(problem, [9, 4, 7])
    assert full.value == 0 and full.kinds == ("round-off",)


@pytest.mark.parametrize("noise, samples, seed", [(0.1, 200, 0), (1.0, 200, 1), (0.3, 50, 2)])
def test_noise_floor_is_the_least_squares_residual(noise, samples, seed):
    rng = np.random.default_rng(seed)
    problem = spectral_problem(
        6, 10, np.geomspace(1, 0.1, 6), rng=rng, samples=samples, noise=noise
    )
    residual = np.linalg.lstsq(problem.X.T, problem.Y.T, rcond=None)[1].sum()
    floor = reachable_minimum(problem, [10, 6, 6])
    assert floor.value == pytest.approx(residual, rel=1e-10)
    assert floor.kinds == ("noise",)
    assert floor.resolution < 1e-10 * floor.value


@pytest.mark.parametrize(
    "A", [np.zeros((5, 4)), np.outer(np.arange(1.0, 6), np.ones(4)), np.eye(5, 4)]
)
def test_zero_and_rank_deficient_targets(A):
    problem = Problem("t", A)
    floor = reachable_minimum(problem, [5, 2, 4])
    sigma = np.linalg.svd(A, compute_uv=False)
    assert floor.value == pytest.approx(np.sum(sigma[2:] ** 2), abs=1e-15)
    assert floor.resolution > 0 and np.isfinite(floor.resolution)

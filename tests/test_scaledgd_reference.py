"""The NumPy ScaledGD reference (benchmarks/scaledgd_reference.py, issue #10) at a small size."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import scaledgd_reference as ref

N, R, P, SEED, TOL = 200, 5, 0.3, 0, 1e-12


@pytest.fixture(scope="module")
def counts():
    """Iterations to TOL; GD at κ = 10 is capped at 2× its κ = 1 count (None: not reached)."""
    out = {}
    for kappa in (1, 10):
        prob = ref.completion_problem(N, R, P, kappa, SEED)
        init = prob.spectral_init(R)
        out[kappa] = {
            "scaledgd": ref.iterations_to(ref.run(prob, R, "scaledgd", tol=TOL, init=init), TOL)
        }
        cap = 1000 if kappa == 1 else 2 * out[1]["gd"]
        out[kappa]["gd"] = ref.iterations_to(
            ref.run(prob, R, "gd", max_iter=cap, tol=TOL, init=init), TOL
        )
    return out


def test_scaledgd_iterations_do_not_depend_on_kappa(counts):
    s1, s10 = counts[1]["scaledgd"], counts[10]["scaledgd"]
    assert s1 is not None and s10 is not None
    assert abs(s10 - s1) < 0.2 * min(s1, s10)


def test_gd_iterations_grow_with_kappa(counts):
    # at κ = 1 GD and ScaledGD take nearly the same steps (RᵀR ≈ σ₁ I)
    assert counts[1]["gd"] is not None
    assert counts[10]["gd"] is None  # not reached in 2× the κ = 1 count


@pytest.mark.parametrize("which", ["completion", "sensing"])
def test_gradient_matches_finite_differences(which):
    rng = np.random.default_rng(1)
    if which == "completion":
        prob = ref.completion_problem(30, 3, 0.4, 5.0, SEED)
    else:
        prob = ref.sensing_problem(12, 3, 5 * 12 * 3, 5.0, SEED)
    n1, n2 = prob.M.shape
    L, R_ = rng.standard_normal((n1, 3)), rng.standard_normal((n2, 3))
    dL, dR = rng.standard_normal((n1, 3)), rng.standard_normal((n2, 3))
    gL, gR = prob.gradient(L, R_)
    analytic = float(np.sum(gL * dL) + np.sum(gR * dR))
    h = 1e-5
    numeric = (prob.loss(L + h * dL, R_ + h * dR) - prob.loss(L - h * dL, R_ - h * dR)) / (2 * h)
    assert abs(numeric - analytic) <= 1e-6 * abs(analytic)
    # each block on its own, too
    for gi, d, side in ((gL, dL, 0), (gR, dR, 1)):
        shift = [np.zeros_like(L), np.zeros_like(R_)]
        shift[side] = h * d
        plus = prob.loss(L + shift[0], R_ + shift[1])
        minus = prob.loss(L - shift[0], R_ - shift[1])
        assert abs((plus - minus) / (2 * h) - np.sum(gi * d)) <= 1e-6 * abs(np.sum(gi * d))

"""The completion baselines (``methods/_baselines.py``): nuclear-norm minimization (cvxpy, SCS)
and soft-impute, each checked against facts computed here with dense NumPy/SciPy: a dual
certificate that the truth is the unique minimum-nuclear-norm interpolant, the penalized problem's
KKT conditions, and soft-impute's fixed-point equation.

SCS runs at eps_abs = eps_rel = 1e-9 on problems whose entries are O(1): its solutions are exact
to ~1e-10 here, so the tolerances below (1e-6 on recovery, values and KKT residuals) are loose
enough not to depend on the platform's SCS build and tight enough to fail on any modelling error
(a wrong ½, a wrong index order, a dropped measurement changes them at O(1e-2) or more).
"""

import numpy as np
import pytest

from deeplinear.diagnostics.probes import RecoveryProbe
from deeplinear.errors import UsageError
from deeplinear.experiment import config as configs
from deeplinear.experiment import execution
from deeplinear.loop import runner
from deeplinear.methods import _baselines, make_method
from deeplinear.objectives.objective import Objective
from deeplinear.problems.measured import completion_problem, sensing_problem, target_factors
from deeplinear.store import frames

N, RANK = 20, 2


def small_completion(observations=240, noise=0.0, seed=0, shape=(N, N)):
    rng = np.random.RandomState(seed)
    truth = target_factors(rng, shape, target="gaussian_product", rank=RANK, frobenius_norm=10.0)
    problem = completion_problem(rng, shape, truth, observations=observations, noise=noise)
    return problem, rng


def small_weights(rng, widths, scale=1e-3):
    return tuple(scale * rng.standard_normal(s) for s in zip(widths, widths[1:]))


def product(weights) -> np.ndarray:
    return np.linalg.multi_dot([np.asarray(w) for w in weights])


def tangent_projector(U, V):
    """P_T(X) = UUᵀX + XVVᵀ − UUᵀXVVᵀ and its complement, for orthonormal U, V."""
    Pu, Pv = U @ U.T, V @ V.T

    def inside(X):
        return Pu @ X + X @ Pv - Pu @ X @ Pv

    return inside, lambda X: X - inside(X)


def test_nuclear_norm_recovers_a_completion_its_dual_certificate_says_is_exact():
    """240 of 400 entries of a rank-2 20 × 20 matrix. Independently of any solver: Y supported
    on Ω with P_T(Y) = U Vᵀ and ‖P_T⊥(Y)‖₂ < 1 certifies M as the unique minimum-nuclear-norm
    interpolant (Candès & Recht 2009, Lemma 3.1 with P_Ω injective on T). Then SCS's solution
    must be M: recovery, value ‖W‖_* = ‖M‖_* and constraint residuals to 1e-6."""
    problem, rng = small_completion()
    M = problem.dense_truth()
    obs = problem.measurements
    rows, cols = obs.rows[obs.weights > 0], obs.cols[obs.weights > 0]
    U, V = problem.U, problem.V
    inside, outside = tangent_projector(U, V)
    # min-norm y with P_T(P_Ω(y)) = U Vᵀ: a dense least-squares problem over the 240 entries
    basis = np.zeros((rows.size, N, N))
    basis[np.arange(rows.size), rows, cols] = 1.0
    operator = np.stack([inside(B).ravel() for B in basis], axis=1)
    y = np.linalg.lstsq(operator, (U @ V.T).ravel(), rcond=None)[0]
    Y = np.zeros((N, N))
    Y[rows, cols] = y
    assert np.linalg.norm(inside(Y) - U @ V.T) < 1e-10
    assert np.linalg.norm(outside(Y), 2) < 0.95  # a strict certificate

    widths = [N, 3, N]  # wider than the rank: the third singular direction is padding
    probe = RecoveryProbe.for_problem(problem, widths)
    weights = small_weights(rng, widths)
    method = make_method("nuclear-norm")
    assert method.solver == "SCS" and method.tolerance == 1e-9
    result = runner.run(method, problem.objective(), weights, [1.0], 10, probe=probe)
    curve = result.curves[0]
    assert list(curve.steps) == [0, 1]
    W = product(w[0] for w in result.final_weights)
    error = np.linalg.norm(W - M) / np.linalg.norm(M)
    assert error < 1e-6
    assert curve.extras["recovery_error"][1] == pytest.approx(error, rel=1e-6, abs=1e-12)
    assert curve.extras["recovery_error"][0] == pytest.approx(1.0, abs=1e-3)
    assert np.abs(W[rows, cols] - M[rows, cols]).max() < 1e-6 * np.abs(M).max()
    sigma = np.linalg.svd(W, compute_uv=False)
    assert sigma.sum() == pytest.approx(np.linalg.svd(M, compute_uv=False).sum(), rel=1e-6)
    assert curve.extras["solver_status"][1] == _baselines.SOLVER_STATUS["optimal"]
    assert np.isnan(curve.extras["solver_status"][0])
    assert curve.extras["solution_rank"][1] == RANK
    assert curve.extras["truncated_sigma"][1] < 1e-6  # σ₄/σ₁ of the solver's W: round-off
    assert curve.extras["solver_iterations"][1] >= 1 and curve.extras["solve_seconds"][1] > 0
    assert curve.loss[1] < 1e-10 * curve.loss[0]
    # balanced: W_1ᵀW_1 = W_2W_2ᵀ
    W1, W2 = (np.asarray(w[0]) for w in result.final_weights)
    np.testing.assert_allclose(W1.T @ W1, W2 @ W2.T, atol=1e-10 * np.abs(M).max())


def test_nuclear_norm_keeps_the_top_triplets_when_the_width_is_narrower():
    """Width 1 < rank 2: the final weights are the solution's best rank-1 part, and
    ``truncated_sigma`` records σ₂/σ₁ (of M, since the solution is M)."""
    problem, rng = small_completion()
    widths = [N, 1, N]
    curve, final, _ = make_method("nuclear-norm").run_one(
        problem.objective(), small_weights(rng, widths), 1
    )
    s = problem.s
    assert curve.extras["truncated_sigma"][1] == pytest.approx(s[1] / s[0], rel=1e-6)
    best = s[0] * np.outer(problem.U[:, 0], problem.V[:, 0])
    np.testing.assert_allclose(product(final), best, atol=1e-6 * s[0])


def test_penalized_nuclear_norm_meets_its_kkt_conditions():
    """With noise and λ > 0, W minimizes ½‖P_Ω(W − Y)‖² + λ‖W‖_* iff G = P_Ω(Y − W)/λ is a
    subgradient of ‖·‖_* at W: P_T(G) = U_W V_Wᵀ and ‖P_T⊥(G)‖₂ ≤ 1 (Watson 1992)."""
    problem, rng = small_completion(noise=0.05, seed=1)
    lam = 0.3
    widths = [N, N, N]
    method = make_method("nuclear-norm", penalty=lam)
    curve, final, _ = method.run_one(problem.objective(), small_weights(rng, widths), 1)
    W = product(final)
    obs = problem.measurements
    rows, cols, values = obs.rows, obs.cols, obs.values
    G = np.zeros((N, N))
    G[rows, cols] = (values - W[rows, cols]) / lam
    u, s, vt = np.linalg.svd(W)
    r = int(np.sum(s > 1e-6 * s[0]))
    assert 0 < r < N and curve.extras["solution_rank"][1] == r
    inside, outside = tangent_projector(u[:, :r], vt[:r].T)
    assert np.linalg.norm(inside(G) - u[:, :r] @ vt[:r]) < 1e-5
    assert np.linalg.norm(outside(G), 2) <= 1 + 1e-6
    # the equality-constrained solution is a different point (the penalty is used)
    exact = product(make_method("nuclear-norm").run_one(problem.objective(), final, 1)[1])
    assert np.linalg.norm(exact - W) > 1e-2 * np.linalg.norm(W)


def test_nuclear_norm_on_sensing_recovers_a_rank_one_matrix():
    """⟨A_k, W⟩ = y_k for 40 Gaussian operators on 8 × 6 (rank 1: 13 degrees of freedom): the
    operator's row-major flattening must match cvxpy's (a transposed order fails at O(1))."""
    rng = np.random.RandomState(2)
    shape = (8, 6)
    truth = target_factors(rng, shape, np.array([3.0]))
    problem = sensing_problem(rng, shape, truth, measurements=40)
    widths = [8, 2, 6]
    curve, final, _ = make_method("nuclear-norm").run_one(
        problem.objective(), small_weights(rng, widths), 1
    )
    M = problem.dense_truth()
    assert np.linalg.norm(product(final) - M) < 1e-6 * np.linalg.norm(M)
    assert curve.extras["solver_status"][1] == 0 and curve.extras["solution_rank"][1] == 1


def test_baselines_refuse_problems_they_do_not_solve():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4, 3))
    weights = small_weights(rng, [4, 2, 3])
    for name in ("nuclear-norm", "soft-impute"):
        with pytest.raises(UsageError, match=f"{name} cannot run on this problem"):
            runner.run(make_method(name), Objective.population(A), weights, [1.0], 1)
    problem = sensing_problem(np.random.RandomState(0), (4, 3), target_factors(
        np.random.RandomState(0), (4, 3), np.array([1.0])), measurements=10)  # fmt: skip
    with pytest.raises(UsageError, match="soft-impute needs a completion problem"):
        runner.run(make_method("soft-impute"), problem.objective(), weights, [1.0], 1)
    with pytest.raises(UsageError, match=r"nuclear-norm\.solver"):
        make_method("nuclear-norm", solver="ECOS")


def soft_impute_fixed_point_error(problem, final, lam):
    """‖S_λ(P_Ω(M) + P_Ω⊥(Z)) − Z‖_F / ‖Z‖_F with a dense LAPACK SVD."""
    Z = product(final)
    obs = problem.measurements
    X = Z.copy()
    X[obs.rows, obs.cols] = obs.values
    u, s, vt = np.linalg.svd(X, full_matrices=False)
    shrunk = (u * np.maximum(s - lam, 0.0)) @ vt
    return np.linalg.norm(shrunk - Z) / np.linalg.norm(Z)


@pytest.mark.parametrize("path", ["dense", "arpack"])
def test_soft_impute_stops_at_its_fixed_point(path, monkeypatch):
    """Converged, Z = S_λ(P_Ω(M) + P_Ω⊥(Z)) to 1e-8 (dense NumPy SVD), with λ = shrinkage ·
    σ₁(P_Ω(M)) computed here; both SVD routes (LAPACK on a small dense X, ARPACK on the sparse
    + low-rank operator) reach the same point."""
    if path == "arpack":
        monkeypatch.setattr(_baselines, "DENSE_ENTRIES", 0)
    problem, rng = small_completion(observations=360, noise=0.02, seed=3, shape=(N, 30))
    widths = [N, 6, 30]  # rank cap 6 (7 < min(n)/2 triplets: ARPACK when not dense)
    method = make_method("soft-impute", shrinkage=0.2, path=3, tolerance=1e-12)
    curve, final, _ = method.run_one(problem.objective(), small_weights(rng, widths), 3000)
    obs = problem.measurements
    P = np.zeros((N, 30))
    P[obs.rows, obs.cols] = obs.values
    lam = 0.2 * np.linalg.norm(P, 2)
    assert curve.extras["shrinkage"][-1] == pytest.approx(lam, rel=1e-10)
    assert curve.extras["relative_change"][-1] <= 1e-12 and curve.steps[-1] < 3000
    assert curve.extras["truncated_sigma"][-1] == 0.0  # the cap does not bind
    assert soft_impute_fixed_point_error(problem, final, lam) < 1e-8
    assert curve.extras["solution_rank"][-1] == np.linalg.matrix_rank(product(final), 1e-10)
    # the path: λ decreases from its first value, in 3 geometric steps to 0.2 λ_max
    levels = np.unique(curve.extras["shrinkage"][1:])
    np.testing.assert_allclose(np.sort(levels), lam / 0.2 * np.geomspace(0.2, 1, 4)[:3])


def test_soft_impute_recovers_an_easy_completion():
    """Noise-free, 60 % observed, small λ: recovery to 1e-4 and the loss down by 1e-8."""
    problem, rng = small_completion()
    widths = [N, 4, N]
    probe = RecoveryProbe.for_problem(problem, widths)
    method = make_method("soft-impute", shrinkage=1e-6, path=6, tolerance=1e-10)
    curve, final, seconds = method.run_one(
        problem.objective(), small_weights(rng, widths), 5000, record_every=100, probe=probe
    )
    M = problem.dense_truth()
    error = np.linalg.norm(product(final) - M) / np.linalg.norm(M)
    assert error < 1e-4
    assert curve.extras["recovery_error"][-1] == pytest.approx(error, rel=1e-6)
    assert curve.loss[-1] < 1e-8 * curve.loss[0]
    assert np.all(np.diff(curve.seconds) >= 0) and seconds == curve.seconds[-1]


RUN_FILE = """seed = 0
steps = 300
record_every = 10
checkpoints = 0
[problem]
kind = "completion"
rows = 20
cols = 20
rank = 2
law = "linear"
observations = 240
[model]
hidden = [3]
[init]
kind = "gaussian"
scale = 1e-2
[[methods]]
name = "gd"
learning_rates = [0.05]
[[methods]]
name = "nuclear-norm"
learning_rates = [1.0]
[[methods]]
name = "soft-impute"
learning_rates = [1.0]
shrinkage = 1e-3
path = 3
"""


def test_a_run_file_runs_both_baselines_beside_gd(tmp_path):
    path = tmp_path / "baselines.toml"
    path.write_text(RUN_FILE)
    execution.execute(configs.load(path), tmp_path / "out")
    frame = frames.load(tmp_path / "out")
    assert set(frame["method"]) == {"gd", "nuclear-norm", "soft-impute"}
    nuclear = frame[frame["method"] == "nuclear-norm"]
    assert list(nuclear["step"]) == [0, 1] and nuclear["recovery_error"].iloc[-1] < 1e-6
    assert nuclear["solver_status"].iloc[-1] == 0
    soft = frame[frame["method"] == "soft-impute"]
    assert soft["shrinkage"].notna().iloc[1:].all() and soft["solver_status"].isna().all()
    assert soft["loss"].iloc[-1] < 1e-3 * soft["loss"].iloc[0]
    assert soft["recovery_error"].iloc[-1] < 0.05


def test_the_time_estimate_charges_the_nuclear_norm_one_solve():
    """budget: a baseline that solves once costs the same for 10 and 10 000 steps (it was
    charged steps × solves: an Arora sweep estimated at 5 h)."""
    from deeplinear.experiment import budget
    from deeplinear.methods import make_method

    d = budget.Dims((100, 100, 100), None, False, 2000, False)
    method = make_method("nuclear-norm")
    short = budget.batch(method, d, 1, 10, 10)[2]
    long = budget.batch(method, d, 1, 10_000, 10_000)[2]
    assert long == pytest.approx(short, rel=1e-9)
    gd = make_method("gd")
    assert budget.batch(gd, d, 1, 10_000, 10_000)[2] > 100 * budget.batch(gd, d, 1, 10, 10)[2]

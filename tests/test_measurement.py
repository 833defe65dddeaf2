"""Completion and sensing: losses, gradients, adjoints and the recovery probe against dense NumPy;
the sampling laws; run-file and .npz inputs, good and (generated) bad."""

import math
import subprocess
import sys
import tomllib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deeplinear.core.backend import jax, jnp
from deeplinear.diagnostics.probes import RecoveryProbe, effective_rank
from deeplinear.errors import UsageError
from deeplinear.experiment import config, execution
from deeplinear.objectives import measurement
from deeplinear.objectives.measurement import Completion, count, is_measured, sampling_scale
from deeplinear.problems.measured import (
    capacity,
    completion_problem,
    npz_measured_problem,
    sample_entries,
    sensing_problem,
    target_factors,
)

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _problem(kind="completion", shape=(30, 20), rank=3, seed=0, **kw):
    rng = np.random.RandomState(seed)
    truth = target_factors(rng, shape, np.linspace(1, 0.2, rank))
    if kind == "completion":
        return completion_problem(rng, shape, truth, probability=kw.get("p", 0.4))
    return sensing_problem(rng, shape, truth, measurements=kw.get("m", 200))


def _weights(shape, widths, seed=1, scale=0.5):
    rng = np.random.RandomState(seed)
    dims = [shape[0], *widths, shape[1]]
    return tuple(scale * rng.standard_normal((a, b)) for a, b in zip(dims, dims[1:]))


def _dense_loss(problem, weights):
    """Σ over the measurements of (⟨A_k, W⟩ − y_k)², with W formed densely."""
    W = weights[0]
    for w in weights[1:]:
        W = W @ w
    obs = problem.measurements
    keep = obs.weights > 0
    if problem.kind == "completion":
        pred = W[obs.rows[keep], obs.cols[keep]]
    else:
        pred = obs.operators[keep] @ W.reshape(-1)
    return np.sum((pred - obs.values[keep]) ** 2)


@pytest.mark.parametrize("kind", ["completion", "sensing"])
@pytest.mark.parametrize("widths", [[4], [5, 3]])
def test_loss_and_gradient_match_dense_numpy_and_finite_differences(kind, widths):
    problem = _problem(kind)
    objective = problem.objective()
    weights = _weights(problem.shape, widths)
    loss = float(objective.loss(tuple(map(jnp.asarray, weights))))
    assert loss == pytest.approx(_dense_loss(problem, weights), rel=1e-13)
    grads = jax.grad(objective.loss)(tuple(map(jnp.asarray, weights)))
    rng = np.random.RandomState(2)
    for layer in range(len(weights)):  # central differences along a random direction
        d = rng.standard_normal(weights[layer].shape)
        h = 1e-6
        plus = list(weights)
        minus = list(weights)
        plus[layer] = weights[layer] + h * d
        minus[layer] = weights[layer] - h * d
        numeric = (_dense_loss(problem, plus) - _dense_loss(problem, minus)) / (2 * h)
        assert float(np.sum(np.asarray(grads[layer]) * d)) == pytest.approx(numeric, rel=1e-6)


@pytest.mark.parametrize("kind", ["completion", "sensing"])
def test_adjoint_products_match_the_dense_adjoint(kind):
    problem = _problem(kind)
    objective = problem.objective()
    n1, n2 = problem.shape
    obs = problem.measurements
    rng = np.random.RandomState(3)
    r = rng.standard_normal(obs.values.shape) * (obs.weights > 0)
    dense = np.zeros((n1, n2))
    if kind == "completion":
        np.add.at(dense, (obs.rows, obs.cols), r)
    else:
        dense = (r @ obs.operators).reshape(n1, n2)
    B, C = rng.standard_normal((n2, 4)), rng.standard_normal((n1, 4))
    got = objective.adjoint_product(jnp.asarray(r), jnp.asarray(B), n1)
    np.testing.assert_allclose(got, dense @ B, rtol=1e-12, atol=1e-12)
    got = objective.adjoint_t_product(jnp.asarray(r), jnp.asarray(C), n2)
    np.testing.assert_allclose(got, dense.T @ C, rtol=1e-12, atol=1e-12)
    assert is_measured(objective) and count(objective) == problem.count
    expected = problem.count / (n1 * n2) if kind == "completion" else 1.0
    tolerance = 1e-12 if kind == "completion" else 0.05  # Σ‖A_k‖²/(n1 n2) ≈ 1 ± O(1/√(m n))
    assert float(sampling_scale(objective, problem.shape)) == pytest.approx(expected, rel=tolerance)


@pytest.mark.parametrize("widths", [[3], [6, 3]])
@pytest.mark.parametrize("distance", [1.0, 1e-6, 1e-12])
def test_recovery_probe_matches_dense_numpy_near_and_far(widths, distance):
    """‖W − M‖/‖M‖ by QR, no dense W: equal to the dense value to 1e-9 relative even at 1e-12,
    where ‖W‖² − 2⟨W, M⟩ + ‖M‖² would have lost every digit."""
    problem = _problem(shape=(30, 20), rank=3)
    U, s, V = problem.modes()
    rng = np.random.RandomState(4)
    dims = [30, *widths, 20]
    # weights whose product is M + distance · noise: M's factors spread over the layers
    first = np.zeros((30, dims[1]))
    first[:, :3] = U * np.sqrt(s)
    middle = [np.eye(a, b) for a, b in zip(dims[1:-2], dims[2:-1])]
    last = np.zeros((dims[-2], 20))
    last[:3] = (V * np.sqrt(s)).T
    weights = [first, *middle, last]
    weights[0] = weights[0] + distance * rng.standard_normal(weights[0].shape)
    probe = RecoveryProbe.for_problem(problem, dims)
    out = probe.measure(tuple(map(jnp.asarray, weights)))
    W = weights[0]
    for w in weights[1:]:
        W = W @ w
    M = problem.dense_truth()
    dense = np.linalg.norm(W - M) / np.linalg.norm(M)
    assert float(out["recovery_error"]) == pytest.approx(dense, rel=1e-9 if distance < 1 else 1e-12)
    sigma = np.linalg.svd(W, compute_uv=False)
    shown = np.asarray(out["singular_values"])
    np.testing.assert_allclose(shown, sigma[: shown.size], rtol=1e-10, atol=1e-13 * sigma[0])
    top = sigma[: min(dims)]
    p = top / top.sum()
    p = p[p > 0]
    assert float(out["effective_rank"]) == pytest.approx(np.exp(-np.sum(p * np.log(p))), rel=1e-9)
    learned = np.einsum("ir,ij,jr->r", U, W, V) / s
    np.testing.assert_allclose(out["mode_learned"], learned, rtol=1e-10, atol=1e-12)
    _assert_layer_columns(out, weights)


def _assert_layer_columns(out, weights):
    """Layer σ and imbalance against NumPy on the dense layers."""
    sig = [np.linalg.svd(w, compute_uv=False) for w in weights]
    np.testing.assert_allclose(out["layer_sigma_max"], [x[0] for x in sig], rtol=1e-10)
    np.testing.assert_allclose(
        out["layer_sigma_min"], [x[-1] for x in sig], rtol=1e-8, atol=1e-12 * sig[0][0]
    )
    imbalance = [np.linalg.norm(a.T @ a - b @ b.T) for a, b in zip(weights[:-1], weights[1:])]
    np.testing.assert_allclose(out["imbalance"], imbalance, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("shape, width", [((30, 20), 3), ((4, 5), 7), ((9, 3), 5)])
def test_two_layer_columns_from_r_factors_match_numpy(shape, width):
    """Depth 2 takes the layers' σ and imbalance from the recovery QRs' R factors, also when a
    layer is wide (n1 or n2 below the width: R is then short and wide)."""
    problem = _problem(shape=shape, rank=2)
    weights = _weights(shape, [width])
    probe = RecoveryProbe.for_problem(problem, [shape[0], width, shape[1]])
    out = probe.measure(tuple(map(jnp.asarray, weights)))
    _assert_layer_columns(out, weights)


def test_effective_rank_is_the_entropy_rank():
    assert float(effective_rank(jnp.array([1.0, 0.0, 0.0]))) == pytest.approx(1.0)
    assert float(effective_rank(jnp.array([2.0, 2.0, 2.0, 2.0]))) == pytest.approx(4.0)


def test_bernoulli_sample_counts_padding_and_determinism():
    shape = (200, 150)
    p = 0.1
    first = _draw_completion(shape, p, seed=5)
    again = _draw_completion(shape, p, seed=5)
    np.testing.assert_array_equal(first.measurements.rows, again.measurements.rows)
    n = shape[0] * shape[1]
    # the count is Binomial(n, p): within 5 standard deviations of n p
    assert abs(first.count - n * p) < 5 * math.sqrt(n * p * (1 - p))
    assert first.measurements.rows.size == capacity(shape, p) >= first.count
    keep = first.measurements.weights > 0
    pairs = first.measurements.rows[keep].astype(int) * shape[1] + first.measurements.cols[keep]
    assert np.unique(pairs).size == first.count  # distinct entries
    assert np.all(first.measurements.values[~keep] == 0)
    # two seeds stack into one batch (same capacity)
    other = _draw_completion(shape, p, seed=6)
    assert other.measurements.rows.shape == first.measurements.rows.shape


def _draw_completion(shape, p, seed):
    rng = np.random.RandomState(seed)
    truth = target_factors(rng, shape, [1.0, 0.5])
    return completion_problem(rng, shape, truth, probability=p)


def test_exact_counts_and_the_large_path_are_distinct_and_uniform():
    rng = np.random.RandomState(0)
    index = sample_entries(rng, (1000, 1000), observations=20_000)
    assert index.size == np.unique(index).size == 20_000
    # uniform: each tenth of the index range holds about a tenth (chi-square, 9 dof, p ≈ 1e-6)
    counts = np.bincount(index * 10 // 1_000_000, minlength=10)
    assert np.sum((counts - 2000) ** 2 / 2000) < 45
    big = sample_entries(np.random.RandomState(0), (10_000, 10_000), probability=1e-4)
    assert big.size == 10_000 == np.unique(big).size


def test_gaussian_product_target_has_the_frobenius_norm_and_rank():
    rng = np.random.RandomState(0)
    U, s, V = target_factors(rng, (40, 30), target="gaussian_product", rank=4, frobenius_norm=100.0)
    M = (U * s) @ V.T
    assert np.linalg.norm(M) == pytest.approx(100.0, rel=1e-13)
    np.testing.assert_allclose(U.T @ U, np.eye(4), atol=1e-13)
    assert np.sum(np.linalg.svd(M, compute_uv=False) > 1e-10) == 4


def test_rademacher_vectors_are_orthonormal():
    rng = np.random.RandomState(0)
    U, _, V = target_factors(rng, (50, 40), np.linspace(1, 0.1, 5), vectors="rademacher")
    np.testing.assert_allclose(U.T @ U, np.eye(5), atol=1e-13)
    np.testing.assert_allclose(V.T @ V, np.eye(5), atol=1e-13)


def _run_file(**problem):
    base = {
        "seed": 0,
        "steps": 20,
        "checkpoints": 0,
        "problem": {"kind": "completion", "rows": 40, "cols": 30, "rank": 2, "probability": 0.5},
        "model": {"hidden": [2]},
        "init": {"kind": "spectral_estimate"},
        "methods": [{"name": "scaled-gd", "learning_rates": [1.0]}],
    }
    base["problem"].update(problem)
    return base


def test_spectral_estimate_is_the_top_svd_of_the_rescaled_observations():
    cfg = config.parse(_run_file())
    setup = execution.build(cfg)
    problem = setup.problem
    obs = problem.measurements
    keep = obs.weights > 0
    dense = np.zeros(problem.shape)
    dense[obs.rows[keep], obs.cols[keep]] = obs.values[keep] / problem.fraction
    U, s, Vt = np.linalg.svd(dense)
    W = setup.weights[0] @ setup.weights[1]
    np.testing.assert_allclose(W, (U[:, :2] * s[:2]) @ Vt[:2], rtol=1e-10, atol=1e-12)
    # balanced: W1ᵀW1 = W2W2ᵀ
    np.testing.assert_allclose(
        setup.weights[0].T @ setup.weights[0], setup.weights[1] @ setup.weights[1].T, atol=1e-12
    )
    assert isinstance(setup.objective, Completion)
    assert setup.probe is not None


def test_end_to_end_scale_sets_the_product_norm():
    cfg = config.parse(
        _run_file()
        | {"init": {"kind": "gaussian", "scale": 0.1, "end_to_end": 1e-3}}
        | {"model": {"hidden": [10, 10]}}
    )
    weights = execution.build(cfg).weights
    assert np.linalg.norm(weights[0] @ weights[1] @ weights[2]) == pytest.approx(1e-3, rel=1e-12)


def test_npz_round_trip_with_truth(tmp_path):
    problem = _problem()
    obs = problem.measurements
    keep = obs.weights > 0
    np.savez(
        tmp_path / "obs.npz",
        rows=obs.rows[keep],
        cols=obs.cols[keep],
        values=obs.values[keep],
        shape=np.array(problem.shape),
        truth=problem.dense_truth(),
    )
    read = npz_measured_problem(tmp_path / "obs.npz", "completion")
    assert read.shape == problem.shape and read.count == problem.count
    np.testing.assert_allclose(read.dense_truth(), problem.dense_truth(), atol=1e-13)
    weights = _weights(problem.shape, [3])
    assert _dense_loss(read, weights) == pytest.approx(_dense_loss(problem, weights), rel=1e-14)


# bad inputs -----------------------------------------------------------------------------------

BAD_VALUES = st.sampled_from([-1, 0, 1.5, math.nan, math.inf, "x", True, [1], {"a": 1}, 10**12])


@SETTINGS
@given(
    key=st.sampled_from(
        ["rows", "cols", "rank", "probability", "observations", "condition_number", "noise",
         "frobenius_norm", "largest_singular_value", "vectors", "target", "law", "measurements",
         "oversampling", "min_per_line"]
    ),
    value=BAD_VALUES,
)  # fmt: skip
def test_generated_bad_measured_run_files_are_refused(key, value):
    data = _run_file()
    if key == "measurements":
        data["problem"] = {"kind": "sensing", "rows": 10, "cols": 10, "rank": 2}
    if key in ("observations", "oversampling"):
        data["problem"].pop("probability")
    data["problem"][key] = value
    try:
        cfg = config.parse(data)
    except UsageError as error:
        text = str(error)
        assert "\n" not in text and ("problem" in text or "init" in text), text
        return
    # accepted: then it must be a valid value that builds (e.g. rank 1, probability 1)
    execution.build(cfg)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"probability": 0.5, "observations": 10}, "exactly one of problem.probability"),
        ({"probability": 2.0}, "problem.probability must be in (0, 1]"),
        ({"rank": 50}, "problem.rank must be ≤ 30"),
        ({"observations": 5000, "probability": None}, "problem.observations must be ≤"),
        ({"target": "gaussian_product", "condition_number": 3}, "does not apply"),
        ({"path": "x.npz"}, "does not apply with problem.path"),
        ({"rows": None}, "problem.rows is missing"),
        ({"oversampling": 1.5}, "exactly one of problem.probability"),
        ({"oversampling": 0, "probability": None}, "problem.oversampling"),
        ({"oversampling": -1.5, "probability": None}, "problem.oversampling"),
        ({"oversampling": 9.0, "probability": None}, "ρ ≤ 8.824 for rank 2"),
        # 40 × 30, rank 2, ρ = 1.05: 143 entries, and 3 in each of 40 rows needs 120 (fine), 4
        # needs 160: refused before any sampling
        ({"oversampling": 1.05, "probability": None, "min_per_line": 4}, "needs at least 4"),
        ({"min_per_line": 31}, "problem.min_per_line must be ≤ 30"),
        ({"min_per_line": 0}, "problem.min_per_line"),
    ],
)
def test_measured_run_file_cases(change, words):
    data = _run_file()
    for key, value in change.items():
        if value is None:
            data["problem"].pop(key)
        else:
            data["problem"][key] = value
    with pytest.raises(UsageError, match=None) as caught:
        config.parse(data)
    assert words in str(caught.value)


def test_spectral_estimate_needs_a_measured_problem():
    data = _run_file()
    data["problem"] = {"kind": "spectral", "input": 5, "output": 5, "samples": 20}
    with pytest.raises(UsageError, match="spectral_estimate"):
        config.parse(data)


NPZ_CORRUPTIONS = [
    ("rows", lambda a: a + 1000, "rows must be integers in"),
    ("cols", lambda a: -a - 1, "cols must be integers in"),
    ("rows", lambda a: a + 0.5, "rows must be integers in"),
    ("values", lambda a: a[:-1], "the same length"),
    ("shape", lambda a: np.array([3.0]), "shape must be two positive integers"),
    ("shape", lambda a: np.array([0, 5]), "shape must be two positive integers"),
    ("truth", lambda a: a[:, :-1], "truth has shape"),
    ("values", lambda a: a * np.nan, "non-finite"),
    ("rows", lambda a: a.astype(complex), "complex"),
    ("rows", lambda a: np.concatenate([a[:1], a[:-1]]), "listed twice"),
    ("values", None, "has no 'values'"),
]


@pytest.mark.parametrize("name, corrupt, words", NPZ_CORRUPTIONS)
def test_bad_completion_npz_files_are_refused(tmp_path, name, corrupt, words):
    problem = _problem()
    obs = problem.measurements
    keep = obs.weights > 0
    arrays = {
        "rows": obs.rows[keep],
        "cols": obs.cols[keep],
        "values": obs.values[keep],
        "shape": np.array(problem.shape),
        "truth": problem.dense_truth(),
    }
    if name == "rows" and "twice" in words:
        arrays["cols"] = np.concatenate([arrays["cols"][:1], arrays["cols"][:-1]])
    if corrupt is None:
        arrays.pop(name)
    else:
        arrays[name] = corrupt(arrays[name])
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UsageError) as caught:
        npz_measured_problem(tmp_path / "bad.npz", "completion")
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_a_bad_measured_run_file_exits_2_with_one_line(tmp_path):
    data = _run_file(probability=1.5)
    lines = ["seed = 0", "steps = 20", "[problem]"]
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in data["problem"].items()]
    lines += ["[model]", "hidden = [2]", "[[methods]]", 'name = "gd"', "learning_rates = [0.1]"]
    path = tmp_path / "bad.toml"
    path.write_text("\n".join(lines) + "\n")
    tomllib.loads(path.read_text())  # valid TOML: the refusal is the field's
    done = subprocess.run(
        [sys.executable, "-m", "deeplinear.cli", "run", str(path), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "problem.probability" in done.stderr
    assert not (tmp_path / "out").exists()


def test_dl_run_takes_a_measured_problem_and_records_recovery():
    import deeplinear as dl

    problem = _problem(shape=(30, 20), rank=2)
    U, s, V = problem.spectral_estimate(2)
    weights = (U * np.sqrt(s), (V * np.sqrt(s)).T)
    result = dl.run("gd", problem, weights=weights, steps=5, learning_rates=[0.1])
    frame = result.to_frame()
    W = weights[0] @ weights[1]
    M = problem.dense_truth()
    first = frame["recovery_error"].iloc[0]
    assert first == pytest.approx(np.linalg.norm(W - M) / np.linalg.norm(M), rel=1e-12)
    assert frame["loss"].iloc[0] == pytest.approx(_dense_loss(problem, weights), rel=1e-13)
    assert np.isnan(frame["loss_notebook"]).all()


# -- Ω laid out by line -------------------------------------------------------------------------


def _grams_by_loop(lines, others, values, weights, features, n):
    """Σ over each line's entries of w f fᵀ and w y f, one entry at a time (NumPy)."""
    d = features.shape[1]
    G, b = np.zeros((n, d, d)), np.zeros((n, d))
    for i, j, y, w in zip(lines, others, values, weights):
        G[i] += w * np.outer(features[j], features[j])
        b[i] += w * y * features[j]
    return G, b


@SETTINGS
@given(
    n1=st.integers(1, 9),
    n2=st.integers(1, 9),
    m=st.integers(1, 60),
    padding=st.integers(0, 7),
    d=st.integers(1, 4),
    seed=st.integers(0, 10**6),
    crowded=st.booleans(),
)
def test_line_sums_equal_the_sums_entry_by_entry(n1, n2, m, padding, d, seed, crowded):
    """Every row's and column's Gram and right-hand side from the ``Lines`` equal the sums entry
    by entry: repeated entries, lines with no entry, one line holding most of Ω (its slots
    overflow), weights other than 0/1 and zero-weight padding at (0, 0)."""
    rng = np.random.default_rng(seed)
    rows = np.zeros(m, int) if crowded else rng.integers(0, n1, m)
    rows[: m // 3] = rng.integers(0, n1, m // 3)
    cols = rng.integers(0, n2, m)
    values, weights = rng.standard_normal(m), rng.uniform(0.1, 3.0, m)
    pad = np.zeros(padding, int)
    rows, cols = np.concatenate([rows, pad]), np.concatenate([cols, pad])
    values = np.concatenate([values, rng.standard_normal(padding)])
    weights = np.concatenate([weights, np.zeros(padding)])
    obs = measurement.completion(rows, cols, values, (n1, n2), weights)
    for lines, n, index, other_index, width in (
        (obs.by_row, n1, rows, cols, n2),
        (obs.by_col, n2, cols, rows, n1),
    ):
        assert lines.others.shape == measurement.line_shape(n, m + padding)
        features = rng.standard_normal((width, d))
        G, b = measurement.line_sums(jax.tree_util.tree_map(jnp.asarray, lines), features, n)
        G_ref, b_ref = _grams_by_loop(index, other_index, values, weights, features, n)
        scale = 1 + np.abs(G_ref).max()
        np.testing.assert_allclose(np.asarray(G), G_ref, rtol=0, atol=1e-13 * scale)
        np.testing.assert_allclose(np.asarray(b), b_ref, rtol=0, atol=1e-13 * scale * 10)


def test_lines_of_two_draws_stack_and_a_users_completion_is_laid_out():
    """Two Bernoulli draws of one shape (different counts, one capacity) give ``Lines`` of one
    shape, so seeds stack into a batch; a ``Completion`` built without them gets them."""
    a, b = (_problem(shape=(40, 30), seed=s, p=0.3).measurements for s in (0, 1))
    assert count(a) != count(b)
    shapes = lambda obs: [np.shape(x) for x in jax.tree_util.tree_leaves(obs)]
    assert shapes(a) == shapes(b)
    bare = Completion(a.rows, a.cols, a.values, a.weights, a.floor)
    laid = measurement.laid_out(bare, (40, 30))
    for x, y in zip(jax.tree_util.tree_leaves(laid), jax.tree_util.tree_leaves(a)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_a_completion_run_names_the_conditioning_of_m_not_a(tmp_path):
    """``deeplinear run`` prints κ of the matrix the run fits: M over its rank for a completion
    (it said "true κ(A)", the notebook's symbol), "unknown" for an .npz without a truth."""
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((30, 2)))
    V, _ = np.linalg.qr(rng.standard_normal((20, 2)))
    rows, cols = np.nonzero(rng.random((30, 20)) < 0.6)
    values = np.einsum("kr,r,kr->k", U[rows], [4.0, 1.0], V[cols])
    arrays = {"rows": rows, "cols": cols, "values": values, "shape": np.array([30, 20])}
    np.savez(tmp_path / "given.npz", **arrays, U=U, s=np.array([4.0, 1.0]), V=V)
    np.savez(tmp_path / "bare.npz", **arrays)
    one = (rows != 7) | (cols == cols[rows == 7][0])  # row 7 keeps one entry: < r = 2
    short = {key: arrays[key][one] for key in ("rows", "cols", "values")}
    np.savez(tmp_path / "short.npz", **short, shape=arrays["shape"], U=U, s=[4.0, 1.0], V=V)
    cases = (("given", "true κ(M) = 4 (over its rank 2)"), ("bare", "κ(M) unknown"),
             ("short", "true κ(M) = 4"))  # fmt: skip
    for name, words in cases:
        path = tmp_path / f"{name}.toml"
        path.write_text(
            f'steps = 3\ncheckpoints = 0\n[problem]\nkind = "completion"\npath = "{name}.npz"\n'
            '[model]\nhidden = [2]\n[[methods]]\nname = "als"\nlearning_rates = [1.0]\n'
        )
        command = [sys.executable, "-m", "deeplinear.cli", "run", str(path), "--out"]
        done = subprocess.run([*command, str(tmp_path / name)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        header = done.stdout.splitlines()[0]
        assert words in header and "κ(A)" not in header, header
        assert "als: 1 run × 3 steps" in done.stderr, done.stderr  # it said "1 runs"
        said = done.stdout.splitlines()[1]  # identifiability, as explain says it
        assert said.startswith("not identifiable: row 7 with") == (name == "short"), said


def test_oversampling_draws_rho_times_the_degrees_of_freedom():
    """ρ = 1.5 at 40 × 30, rank 2: round(1.5 · 2 · 68) = 204 distinct entries, and the summary
    reports the ρ drawn (counted from the entries themselves)."""
    data = _run_file(oversampling=1.5)
    data["problem"].pop("probability")
    setup = execution.build(config.parse(data))
    obs = setup.problem.measurements
    keep = np.asarray(obs.weights) > 0
    assert keep.sum() == 204 == np.unique(obs.rows[keep] * 30 + obs.cols[keep]).size
    summary = execution.problem_summary(setup)
    assert summary["oversampling"] == pytest.approx(204 / (2 * 68)) and summary["draws"] == 1


def test_min_per_line_draws_again_until_every_row_and_column_is_covered():
    """At ρ = 1.1 (150 entries on 40 + 30 lines) the first draw of seed 0 leaves lines with
    fewer than 2 entries; with min_per_line = 2 the sample is drawn again until none does, and
    the draws are counted. Checked against the counts of the entries themselves."""
    shape, rank = (40, 30), 2
    plain = _run_file(oversampling=1.1)
    plain["problem"].pop("probability")
    first = execution.build(config.parse(plain)).problem.measurements
    rows_count = np.bincount(first.rows[first.weights > 0], minlength=shape[0])
    cols_count = np.bincount(first.cols[first.weights > 0], minlength=shape[1])
    assert min(rows_count.min(), cols_count.min()) < 2  # the case the option is for
    covered = dict(plain, problem=dict(plain["problem"], min_per_line=2))
    setup = execution.build(config.parse(covered))
    obs, keep = setup.problem.measurements, setup.problem.measurements.weights > 0
    assert np.bincount(obs.rows[keep], minlength=shape[0]).min() >= 2
    assert np.bincount(obs.cols[keep], minlength=shape[1]).min() >= 2
    assert keep.sum() == round(1.1 * rank * (70 - rank))
    assert execution.problem_summary(setup)["draws"] > 1


# -- identifiability ------------------------------------------------------------------------------


def test_identifiability_counts_at_their_boundaries_and_the_non_uniqueness_they_claim():
    """A row with r − 1 entries: M is not determined — built here, a second rank-r matrix
    that agrees on every observed entry and differs in that row; with r entries the row is
    fine. ρ exactly 1 passes, one entry fewer does not."""
    from deeplinear.diagnostics.identifiability import identifiability, line_counts

    def counted_at(rows, cols, weights, shape, rank):
        return identifiability(*line_counts(rows, cols, weights, shape), shape, rank)

    rng = np.random.default_rng(0)
    n1, n2, r = 12, 10, 3
    U, V = rng.standard_normal((n1, r)), rng.standard_normal((n2, r))
    mask = np.ones((n1, n2), bool)
    mask[4, r - 1 :] = False  # row 4: r − 1 entries
    rows, cols = np.nonzero(mask)
    counts = counted_at(rows, cols, np.ones(rows.size), (n1, n2), r)
    assert not counts.identifiable and counts.short_rows.tolist() == [4]
    assert counts.short_cols.size == 0 and "row 4 with fewer than r = 3" in counts.lines()[0]
    seen = V[cols[rows == 4]]  # the r − 1 feature rows row 4 is observed through
    z = np.linalg.svd(seen)[2][-1]  # ⊥ to all of them
    other = U.copy()
    other[4] += z
    M, M2 = U @ V.T, other @ V.T
    assert np.allclose(M[mask], M2[mask], atol=1e-12) and not np.allclose(M, M2)
    mask[4, r - 1] = True  # r entries: this row is no longer short
    rows, cols = np.nonzero(mask)
    assert counted_at(rows, cols, np.ones(rows.size), (n1, n2), r).identifiable
    # ρ: r (n1 + n2 − r) = 57 entries exactly (each line ≥ r), then one fewer; padding ignored
    dof = r * (n1 + n2 - r)
    grid = np.zeros((n1, n2), bool)
    for i in range(n1):
        grid[i, [(i + k) % n2 for k in range(r)]] = True
    extra = [(i, j) for i in range(n1) for j in range(n2) if not grid[i, j]]
    for i, j in extra[: dof - grid.sum()]:
        grid[i, j] = True
    rows, cols = np.nonzero(grid)
    weights = np.ones(rows.size)
    exact = counted_at(rows, cols, weights, (n1, n2), r)
    assert exact.oversampling == 1.0 and exact.identifiable
    weights[rows.size - 1] = 0.0  # now padding
    short = counted_at(rows, cols, weights, (n1, n2), r)
    assert short.count == dof - 1 and not short.identifiable
    assert short.lines()[0].startswith(f"not identifiable: ρ = {(dof - 1) / dof:.3g} < 1")

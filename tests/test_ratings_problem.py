"""A ratings problem against independent NumPy: the ALS-WR penalty and its gradient, ALS-WR's
sweeps, the baseline predictors, the held-out RMSE/MAE of the clipped predictions; the held-out
ratings never in the loss; the refusals (one line, exit 2, before anything compiles)."""

import json
import subprocess
import sys
import tomllib

import numpy as np
import pytest

from deeplinear import sweep
from deeplinear.core.backend import jax, jnp
from deeplinear.experiment import config as configs
from deeplinear.experiment import execution
from deeplinear.methods import make_method
from deeplinear.problems.ratings import baseline_predictors
from deeplinear.problems.ratings_data import write_ratings
from deeplinear.problems.ratings_synthetic import synthetic_ratings
from deeplinear.report.sweep_report import write_report

SYNTHETIC = "{users = 120, items = 90, ratings = 3000, rank = 3, noise = 0.5, seed = 1}"


def run_file(extra: str = "", method: str = "als", hidden: str = "[4]", steps: int = 6) -> str:
    return f"""
seed = 0
steps = {steps}
record_every = 1
[problem]
kind = "ratings"
synthetic = {SYNTHETIC}
validation_fraction = 0.1
test_fraction = 0.1
{extra}
[model]
hidden = {hidden}
[[methods]]
name = "{method}"
learning_rates = [1.0]
"""


def setup_of(text: str, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(text)
    return execution.build(configs.load(path))


def test_penalty_and_its_gradient_match_numpy(tmp_path):
    setup = setup_of(run_file("regularization = 0.3"), tmp_path)
    objective, (W1, W2) = setup.objective, tuple(np.asarray(w) for w in setup.weights)
    obs = setup.problem.measurements
    rows, cols, y = np.asarray(obs.rows), np.asarray(obs.cols), np.asarray(obs.values)
    n_u = np.bincount(rows, minlength=W1.shape[0])
    n_i = np.bincount(cols, minlength=W2.shape[1])
    residual = np.einsum("ka,ak->k", W1[rows], W2[:, cols]) - y
    expected = np.sum(residual**2) + 0.3 * (n_u @ np.sum(W1**2, 1) + n_i @ np.sum(W2**2, 0))
    assert float(objective.loss(setup.weights)) == pytest.approx(expected, rel=1e-12)
    g1, g2 = jax.grad(objective.loss)(tuple(jnp.asarray(w) for w in (W1, W2)))
    d1 = np.zeros_like(W1)
    np.add.at(d1, rows, 2 * residual[:, None] * W2[:, cols].T)
    d2 = np.zeros_like(W2)
    np.add.at(d2.T, cols, 2 * residual[:, None] * W1[rows])
    assert np.allclose(g1, d1 + 2 * 0.3 * n_u[:, None] * W1, rtol=1e-10, atol=1e-10)
    assert np.allclose(g2, d2 + 2 * 0.3 * n_i[None, :] * W2, rtol=1e-10, atol=1e-10)


def numpy_als_wr(W1, W2, rows, cols, y, lam, sweeps):
    """Zhou et al.'s ALS-WR: each row of U (then of V) the ridge solution with λ n_u I."""
    U, V = W1.copy(), W2.T.copy()
    for _ in range(sweeps):
        for u in range(U.shape[0]):
            k = rows == u
            F = V[cols[k]]
            U[u] = np.linalg.solve(F.T @ F + lam * k.sum() * np.eye(F.shape[1]), F.T @ y[k])
        for i in range(V.shape[0]):
            k = cols == i
            F = U[rows[k]]
            V[i] = np.linalg.solve(F.T @ F + lam * k.sum() * np.eye(F.shape[1]), F.T @ y[k])
    return U, V


def test_als_with_regularization_is_als_wr(tmp_path):
    setup = setup_of(run_file("regularization = 0.1"), tmp_path)
    obs = setup.problem.measurements
    rows, cols, y = (np.asarray(a) for a in (obs.rows, obs.cols, obs.values))
    W1, W2 = (np.asarray(w) for w in setup.weights)
    from deeplinear.loop import runner

    result = runner.run(make_method("als"), setup.objective, setup.weights, [1.0], 3)
    U, V = numpy_als_wr(W1, W2, rows, cols, y, 0.1, 3)
    got = [np.asarray(w)[0] for w in result.final_weights]
    assert np.allclose(got[0] @ got[1], U @ V.T, rtol=1e-9, atol=1e-9)


def test_baseline_predictors_solve_the_ridge_problem():
    rng = np.random.default_rng(4)
    users, items = rng.integers(0, 30, 400), rng.integers(0, 20, 400)
    ratings = rng.integers(1, 6, 400).astype(float)
    for lam in (0.0, 2.5):
        mu, b, c = baseline_predictors(users, items, ratings, (30, 20), lam)
        # the normal equations of min Σ (r − μ − b_u − c_i)² + λ(‖b‖² + ‖c‖²), μ the mean
        A = np.zeros((400, 50))
        A[np.arange(400), users] = 1
        A[np.arange(400), 30 + items] = 1
        residual = ratings - mu - A @ np.r_[b, c]
        gradient = -A.T @ residual + lam * np.r_[b, c]
        assert np.abs(gradient).max() < 1e-8
        if lam > 0:  # unique: the dense solve agrees
            x = np.linalg.solve(A.T @ A + lam * np.eye(50), A.T @ (ratings - mu))
            assert np.allclose(np.r_[b, c], x, atol=1e-9)


def test_held_out_errors_are_the_clipped_predictions_errors(tmp_path):
    setup = setup_of(run_file(), tmp_path)
    problem = setup.problem
    measured = setup.probe.measure(setup.weights)
    W = np.asarray(setup.weights[0]) @ np.asarray(setup.weights[1])
    for split in ("train", "validation", "test"):
        rows, cols, ratings, baseline, weights = problem.splits[split]
        keep = weights > 0  # padding (weight 0) to the size the fractions fix
        rows, cols, ratings, baseline = rows[keep], cols[keep], ratings[keep], baseline[keep]
        predicted = np.clip(baseline + W[rows, cols], *problem.scale)
        rmse = np.sqrt(np.mean((predicted - ratings) ** 2))
        assert float(measured[f"{split}_rmse"]) == pytest.approx(rmse, rel=1e-12)
        mae = np.mean(np.abs(predicted - ratings))
        assert float(measured[f"{split}_mae"]) == pytest.approx(mae, rel=1e-12)
    # the loss sums the training residuals only: no held-out pair is a measurement
    obs = problem.measurements
    trained = set(zip(np.asarray(obs.rows).tolist(), np.asarray(obs.cols).tolist()))
    for split in ("validation", "test"):
        rows, cols, _, _, weights = problem.splits[split]
        held = zip(rows[weights > 0].tolist(), cols[weights > 0].tolist())
        assert trained.isdisjoint(held) and weights.sum() == problem.about[split] > 0
    assert len(trained) == problem.about["train"] == len(problem.splits["train"][0])


def test_a_ratings_file_is_read_and_its_ids_kept(tmp_path):
    table = synthetic_ratings(users=50, items=40, ratings=800, rank=2, noise=0.4, seed=2)
    write_ratings(table, tmp_path / "r.csv")
    text = run_file().replace(f"synthetic = {SYNTHETIC}", 'path = "r.csv"')
    setup = setup_of(text, tmp_path)
    assert setup.problem.shape == (table.n_users, table.n_items)
    assert list(setup.problem.user_ids) == list(table.user_ids)
    assert sum(setup.problem.about[k] for k in ("train", "validation", "test")) <= 800


def cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "deeplinear.cli", *args], capture_output=True, text=True, cwd=cwd
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (run_file('path = "nowhere.tsv"'), "exactly one of problem.path"),
        (run_file().replace("test_fraction = 0.1", "test_fraction = 0.95"), "must be < 1"),
        (run_file("regularization = 0.1", method="gn-cg"), "would ignore problem.regularization"),
        (run_file("regularization = 0.1", hidden="[4, 4]"), "two layers only"),
        (run_file("regularization = -1"), "problem.regularization"),
        (run_file("scale = [5, 1]"), "finite with lo < hi"),
        # the generator's own rule (every user rates), said before anything runs, by its key
        (run_file().replace("ratings = 3000", "ratings = 100"), "problem.synthetic.ratings"),
    ],
)
def test_bad_ratings_input_is_one_line_before_anything_runs(text, words, tmp_path):
    (tmp_path / "run.toml").write_text(text)
    done = cli("run", "run.toml", "--out", "out", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_missing_ratings_file_names_the_field(tmp_path):
    text = run_file().replace(f"synthetic = {SYNTHETIC}", 'path = "gone.tsv"')
    (tmp_path / "run.toml").write_text(text)
    done = cli("run", "run.toml", "--out", "out", cwd=tmp_path)
    assert done.returncode == 2 and "problem.path" in done.stderr and "gone.tsv" in done.stderr


SWEEP = f"""
name = "ratings sweep"
seeds = 2
targets = [1e-3]
steps = 8
record_every = 1
select = "validation"
[problem]
kind = "ratings"
synthetic = {SYNTHETIC}
validation_fraction = 0.1
test_fraction = 0.1
[model]
hidden = [2]
[axes]
"problem.regularization" = [0.01, 0.3]
"model.hidden" = [[2], [6]]
[[methods]]
name = "als"
learning_rates = [1.0]
"""


def test_a_sweep_selects_by_validation_and_reports_one_test_error(tmp_path):
    plan = sweep.parse(tomllib.loads(SWEEP), source=SWEEP)
    sweep.run(plan, tmp_path)
    write_report(tmp_path)
    document = json.loads((tmp_path / "summary.json").read_text())
    rows = document["rows"]
    assert len(rows) == 4 and all("validation_rmse" in r for r in rows)
    chosen = [r for r in rows if r.get("selected")]
    assert len(chosen) == 1 and "test_rmse" in chosen[0]
    assert chosen[0]["validation_rmse"]["median"] == min(
        r["validation_rmse"]["median"] for r in rows
    )
    assert all("test_rmse" not in r for r in rows if not r.get("selected"))  # no leakage
    (held,) = [a for a in document["answers"] if a["measure"] == "held-out"]
    assert chosen[0]["axis_point"] in held["text"] and "test RMSE" in held["text"]


def test_run_and_explain_say_the_split_the_baselines_and_the_held_out_verdict(tmp_path):
    (tmp_path / "run.toml").write_text(run_file("regularization = 0.05", steps=30))
    done = cli("run", "run.toml", "--out", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "train, " in done.stdout and "the biases alone: validation RMSE" in done.stdout
    assert "validation " in done.stdout.splitlines()[-3]  # the RMSEs at the last record
    done = cli("explain", "out", "--budget", "0", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    verdicts = json.loads((tmp_path / "out" / "verdicts.json").read_text())["verdicts"]
    (held,) = [v["held_out"] for v in verdicts]
    assert held["kind"] in (
        "optimization-limited", "statistical floor", "overfitting", "unstable"
    )  # fmt: skip
    assert f"held-out: {held['kind']}" in done.stdout and (tmp_path / "out/held_out.png").exists()


def test_each_seed_holds_out_other_ratings_of_the_same_sizes(tmp_path):
    first = setup_of(run_file(), tmp_path).problem
    second = setup_of(run_file().replace("\nseed = 0", "\nseed = 1"), tmp_path).problem
    fixed = run_file("split_seed = 0").replace("\nseed = 0", "\nseed = 1")
    fixed = setup_of(fixed, tmp_path).problem
    for split in ("validation", "test"):
        a, b, c = (p.splits[split] for p in (first, second, fixed))
        assert a[0].shape == b[0].shape  # padded to round(f · m): the seeds stack
        assert set(zip(a[0].tolist(), a[1].tolist())) != set(zip(b[0].tolist(), b[1].tolist()))
        assert np.array_equal(a[0], c[0]) and np.array_equal(a[1], c[1])  # split_seed fixes it

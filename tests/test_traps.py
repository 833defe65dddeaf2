"""The classic traps of "floor or slow?", each with its truth computed independently in NumPy.

Plateaus (Saxe et al.), exact and strict saddles, a width below the target's rank, label noise
and a spiking Adam: the cases where a simple rule on the loss curve gets the verdict wrong.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from deeplinear.experiment import config as configs
from deeplinear.experiment import execution
from deeplinear.explain import explain
from deeplinear.notebook2017 import notebook
from deeplinear.problems.dense import notebook_problem
from deeplinear.verdict import KINDS

PLATEAU_PROBLEM = """
[problem]
kind = "spectral"
input = 6
output = 6
rank = 3
singular_values = [1.0, 0.3, 0.1]
vectors = "{vectors}"
samples = "population"
"""


def run_and_explain(tmp_path, text: str, **options):
    """Write the run file, run it, explain it: (setup, verdicts.json entries, Explanation)."""
    path = tmp_path / "run.toml"
    path.write_text(text)
    config = configs.load(path)
    execution.execute(config, tmp_path / "out")
    result = explain(tmp_path / "out", figures=False, **options)
    payload = json.loads((tmp_path / "out" / "verdicts.json").read_text())
    return execution.build(config), payload["verdicts"], result


def layer_gradients(weights, residual_map):
    """∇ of ‖W1 ⋯ WL − A‖² (or of the sample loss through ``residual_map``) for every layer."""
    lefts = [np.eye(weights[0].shape[0])]
    for w in weights[:-1]:
        lefts.append(lefts[-1] @ w)
    rights = [np.eye(weights[-1].shape[1])]
    for w in weights[:0:-1]:
        rights.insert(0, w @ rights[0])
    G = residual_map(lefts[-1] @ weights[-1])
    return [2 * left.T @ G @ right.T for left, right in zip(lefts, rights)]


def numpy_gd_first_below(weights, A, lr, goal, max_steps):
    """Plain NumPy GD on the population loss ‖W1 ⋯ WL − A‖²: the first step with loss ≤ goal."""
    weights = [np.array(w, dtype=np.float64) for w in weights]
    for step in range(max_steps + 1):
        product = weights[0]
        for w in weights[1:]:
            product = product @ w
        if np.sum((product - A) ** 2) <= goal:
            return step
        grads = layer_gradients(weights, lambda W: W - A)
        weights = [w - lr * g for w, g in zip(weights, grads)]
    raise AssertionError("the NumPy run did not reach the goal: lengthen it")


PLATEAUS = [
    ("depth 2, spectral 1e-4", "[6]", 'kind = "spectral"\nstrengths = 1e-4', "identity", 1e-3, 500),
    (
        "depth 3, spectral 1e-4",
        "[6, 6]",
        'kind = "spectral"\nstrengths = 1e-4',
        "random",
        1e-2,
        300,
    ),
    (
        "depth 2, Gaussian 1e-6",
        "[6]",
        'kind = "scaled_gaussian"\nscale = 1e-6',
        "random",
        2e-3,
        500,
    ),
]


@pytest.mark.parametrize("name, hidden, init, vectors, lr, steps", PLATEAUS)
def test_a_plateau_recorded_while_flat_is_slow_not_stuck(
    tmp_path, name, hidden, init, vectors, lr, steps
):
    text = (
        f"seed = 3\nsteps = {steps}\ncheckpoints = 0\n"
        + PLATEAU_PROBLEM.format(vectors=vectors)
        + f"[model]\nhidden = {hidden}\n[init]\n{init}\n"
        + f'[[methods]]\nname = "gd"\nlearning_rates = [{lr}]\n'
    )
    setup, (verdict,), _ = run_and_explain(tmp_path, text)
    initial = setup.objective.loss(setup.weights)
    truth = numpy_gd_first_below(
        setup.weights, setup.problem.A, lr, 1e-10 * float(initial), 400_000
    )
    assert verdict["kind"] == "plateau" and verdict["eta_method"] == "measured", verdict["headline"]
    low, high = verdict["eta_steps"]
    assert low <= truth - steps <= high, (verdict["headline"], truth)
    if "spectral" in name:  # the exact decoupled recursion predicts the same step
        assert abs(verdict["theory_steps"] - (truth - steps)) <= 2


def dense_hessian_min(weights, residual_map, h=1e-5) -> float:
    """Smallest eigenvalue of the Hessian by central differences of the NumPy gradient."""
    sizes = [w.size for w in weights]
    flat = np.concatenate([w.ravel() for w in weights])

    def grad(v):
        parts = np.split(v, np.cumsum(sizes)[:-1])
        ws = [p.reshape(w.shape) for p, w in zip(parts, weights)]
        return np.concatenate([g.ravel() for g in layer_gradients(ws, residual_map)])

    H = np.empty((flat.size, flat.size))
    for i in range(flat.size):
        e = np.zeros(flat.size)
        e[i] = h
        H[:, i] = (grad(flat + e) - grad(flat - e)) / (2 * h)
    return float(np.linalg.eigvalsh((H + H.T) / 2)[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_an_exact_saddle_at_zero_weights(tmp_path, seed):
    """W1 = W2 = 0: gradient exactly 0, Hessian eigenvalues ±2σ_i(Y Xᵀ), 36 of them negative."""
    np.savez(tmp_path / "zero.npz", W1=np.zeros((10, 6)), W2=np.zeros((6, 6)))
    text = (
        f'seed = {seed}\nsteps = 200\ncheckpoints = 2\n[problem]\nkind = "notebook"\n'
        "input = 6\noutput = 10\nsamples = 1000\n[model]\nhidden = [6]\n"
        '[init]\nkind = "npz"\npath = "zero.npz"\n'
        '[[methods]]\nname = "gd"\nlearning_rates = [1e-5]\n'
    )
    _, (verdict,), result = run_and_explain(tmp_path, text)
    problem, _ = notebook_problem(seed)
    closed_form = -2 * np.linalg.svd(problem.Y @ problem.X.T, compute_uv=False)[0]
    assert verdict["kind"] == "saddle", verdict["headline"]
    assert verdict["grad_norm"] == 0.0
    assert verdict["hessian_min"] == pytest.approx(closed_form, rel=1e-6)
    assert "36 negative Hessian eigenvalues" in result.verdicts[0].evidence[0]
    escape = verdict["escape"]
    assert escape["measured_steps"] is not None
    assert 0.7 < escape["measured_steps"] / escape["predicted_steps"] < 1.4


@pytest.mark.parametrize("hidden, lr", [("[6]", 0.05), ("[6, 6]", 0.1)])
def test_a_mode_started_at_zero_stops_at_a_strict_saddle(tmp_path, hidden, lr):
    """Decoupled init with mode 3 exactly 0: the other modes converge, mode 3 never starts."""
    text = (
        "seed = 0\nsteps = 2000\nrecord_every = 10\ncheckpoints = 0\n"
        + PLATEAU_PROBLEM.format(vectors="identity")
        + f'[model]\nhidden = {hidden}\n[init]\nkind = "spectral"\nstrengths = [0.1, 0.1, 0.0]\n'
        + f'[[methods]]\nname = "gd"\nlearning_rates = [{lr}]\n'
    )
    setup, (verdict,), _ = run_and_explain(tmp_path, text, budget_steps=20_000)
    assert verdict["kind"] == "saddle", verdict["headline"]
    assert verdict["excess_loss"] == pytest.approx(0.1**2, rel=1e-6)  # mode 3's s² is left
    depth = len(setup.weights)  # GD keeps a balanced decoupled start balanced: b_i = s_i^(1/L)
    layer = np.diag(np.r_[np.array([1.0, 0.3]) ** (1 / depth), np.zeros(4)])
    A = setup.problem.A
    truth = dense_hessian_min([layer] * depth, lambda W: W - A)
    assert verdict["hessian_min"] == pytest.approx(truth, rel=1e-6)


WIDTH = [
    ("notebook seed 0, width 3, lm", "notebook", 0, "[3]", "lm", 1.0, 100),
    ("notebook seed 1, widths 4-2, lm", "notebook", 1, "[4, 2]", "lm", 1.0, 150),
    ("population rank 6, width 3, gd", "spectral", 2, "[3]", "gd", 0.05, 3000),
]


@pytest.mark.parametrize("name, kind, seed, hidden, method, lr, steps", WIDTH)
def test_width_below_rank_converges_to_the_eckart_young_floor(
    tmp_path, name, kind, seed, hidden, method, lr, steps
):
    problem = (
        '[problem]\nkind = "notebook"\ninput = 6\noutput = 10\nsamples = 1000\n'
        if kind == "notebook"
        else '[problem]\nkind = "spectral"\ninput = 8\noutput = 8\nrank = 6\n'
        'condition_number = 4.0\nsamples = "population"\n'
    )
    init = '[init]\nkind = "orthogonal"\n'
    text = (
        f"seed = {seed}\nsteps = {steps}\ncheckpoints = 0\n{problem}[model]\nhidden = {hidden}\n"
        f'{init}[[methods]]\nname = "{method}"\nlearning_rates = [{lr}]\n'
    )
    setup, (verdict,), _ = run_and_explain(tmp_path, text)
    k = min(setup.widths)
    if setup.problem.X is None:
        sigma = np.linalg.svd(setup.problem.A, compute_uv=False)
        truth = np.sum(sigma[k:] ** 2)
    else:  # reduced-rank regression: whiten with S^{1/2}, truncate the OLS map
        X, Y = setup.problem.X, setup.problem.Y
        S = X @ X.T
        ols = np.linalg.solve(S, X @ Y.T).T
        evals, evecs = np.linalg.eigh(S)
        sigma = np.linalg.svd(ols @ (evecs * np.sqrt(evals)) @ evecs.T, compute_uv=False)
        truth = np.sum((Y - ols @ X) ** 2) + np.sum(sigma[k:] ** 2)
    assert verdict["kind"] == "converged", verdict["headline"]
    assert verdict["floor"]["kinds"] == ["rank"]
    assert verdict["floor"]["value"] == pytest.approx(truth, rel=1e-10)
    assert verdict["target_reachable"] is False and verdict["eta_steps"] is None


NOISE = [(0.1, 200, 0, 1e-3), (1.0, 200, 1, 1e-3), (0.3, 50, 2, 3e-3)]


@pytest.mark.parametrize("noise, samples, seed, lr", NOISE)
def test_label_noise_is_a_floor_and_never_converged_early(tmp_path, noise, samples, seed, lr):
    text = (
        f"seed = {seed}\nsteps = 2000\ncheckpoints = 0\n"
        '[problem]\nkind = "spectral"\ninput = 6\noutput = 10\nrank = 6\n'
        f"condition_number = 10.0\nsamples = {samples}\nnoise = {noise}\n"
        '[model]\nhidden = [6]\n[init]\nkind = "orthogonal"\n'
        f'[[methods]]\nname = "gd"\nlearning_rates = [{lr / samples}]\n'
    )
    setup, (verdict,), _ = run_and_explain(tmp_path, text)
    X, Y = setup.problem.X, setup.problem.Y
    residual = float(np.linalg.lstsq(X.T, Y.T, rcond=None)[1].sum())
    assert verdict["floor"]["value"] == pytest.approx(residual, rel=1e-10)
    assert verdict["floor"]["kinds"] == ["noise"]
    from deeplinear.store.results import read_table, run_series
    from deeplinear.verdict import classify

    floor = setup.floor
    data = next(iter(run_series(read_table(tmp_path / "out" / "curves.parquet")[0]).values()))
    initial_excess = data["loss"][0] - residual
    for end in np.linspace(5, len(data["step"]), 40).astype(int):
        kind, _ = classify(data["step"][:end], data["loss"][:end], floor)
        if kind == "converged":
            assert data["loss"][end - 1] - residual <= 1e-6 * initial_excess
    assert verdict["kind"] == "converged" and verdict["excess_loss"] <= 1e-6 * initial_excess


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_spiking_adam_gets_no_measured_eta_narrower_than_its_spread(tmp_path, seed):
    """tf1-adam η = 0.1 touches 1e-10 and spikes back: its crossing step is chaotic."""
    text = (
        f"seed = {seed}\nsteps = 3000\ncheckpoints = 0\n"
        '[problem]\nkind = "notebook"\ninput = 6\noutput = 10\nsamples = 1000\n'
        '[model]\nhidden = [6]\n[init]\nkind = "notebook"\n'
        '[[methods]]\nname = "tf1-adam"\nlearning_rates = [0.1]\n'
    )
    _, (verdict,), _ = run_and_explain(tmp_path, text, budget_steps=30_000)
    problem, weights = notebook_problem(seed)
    rng = np.random.default_rng(seed + 10)
    crossings = []
    for _ in range(4):  # the notebook's own Adam, in NumPy, from inits perturbed at 1e-12
        start = [w * (1 + 1e-12 * rng.standard_normal(w.shape)) for w in weights]
        loss = notebook.adam(problem.X, problem.Y, *start, 0.1, 9000).loss
        hit = np.flatnonzero(loss <= 1e-10 * loss[0])
        crossings.append(hit[0] if hit.size else np.inf)
    spread = max(crossings) - min(crossings)
    assert spread > 10  # the truth: the crossing step moves under 1e-12 perturbations
    if verdict["eta_method"] == "measured" and verdict["kind"] != "unstable":
        low, high = verdict["eta_steps"]
        assert high - low >= spread / 4, verdict["headline"]
    else:
        assert verdict["kind"] == "unstable", verdict["headline"]


def test_explain_reports_progress_while_it_continues(tmp_path, monkeypatch):
    import deeplinear.explain.run_directory as explaining

    monkeypatch.setattr(explaining, "PROGRESS_SECONDS", 0.0)
    text = (
        "seed = 0\nsteps = 300\ncheckpoints = 0\n"
        + PLATEAU_PROBLEM.format(vectors="identity")
        + '[model]\nhidden = [6]\n[init]\nkind = "spectral"\nstrengths = 1e-4\n'
        + '[[methods]]\nname = "gd"\nlearning_rates = [1e-3]\n'
    )
    path = tmp_path / "run.toml"
    path.write_text(text)
    execution.execute(configs.load(path), tmp_path / "out")
    lines = []
    explain(tmp_path / "out", figures=False, progress=lines.append)
    assert lines and lines[-1].startswith("explain: continuing seed0/gd/0.001 — step ")


def test_a_theory_that_does_not_match_says_so(tmp_path):
    """η above the stable step: the exact recursion and the run part ways; no "matches to 1.0"."""
    example = Path(__file__).parent.parent / "examples" / "deep_decoupled.toml"
    text = (
        example.read_text()
        .replace("learning_rates = [0.05, 0.1]", "learning_rates = [0.9]")
        .replace("steps = 4000", "steps = 200")
    )
    _, (verdict,), result = run_and_explain(tmp_path, text, budget_steps=0)
    assert verdict["kind"] == "diverged"
    assert result.theory["note"].startswith("the exact decoupled GD recursion does NOT match")
    assert result.theory["max_mode_error"] > 1e-6


TARGETS = {
    "zero": np.zeros((5, 4)),
    "rank 1": np.outer(np.arange(1.0, 6.0), np.ones(4)),
    "full": np.random.default_rng(0).standard_normal((5, 4)),
}
INITS = {
    "zero": (np.zeros((5, 3)), np.zeros((3, 4))),
    "rank 1": (np.outer(np.ones(5), [1.0, 0, 0]), np.zeros((3, 4))),
    "gaussian": None,
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("init", INITS)
def test_run_and_explain_survive_zero_and_rank_deficient_targets_and_inits(tmp_path, target, init):
    np.savez(tmp_path / "target.npz", A=TARGETS[target])
    if INITS[init] is None:
        init_text = 'kind = "gaussian"'
    else:
        np.savez(tmp_path / "init.npz", W1=INITS[init][0], W2=INITS[init][1])
        init_text = 'kind = "npz"\npath = "init.npz"'
    text = (
        'steps = 100\ncheckpoints = 3\n[problem]\nkind = "npz"\npath = "target.npz"\n'
        f"[model]\nhidden = [3]\n[init]\n{init_text}\n"
        '[[methods]]\nname = "gd"\nlearning_rates = [0.01]\n'
        '[[methods]]\nname = "lm"\nlearning_rates = [1.0]\nsteps = 20\n'
    )
    _, verdicts, _ = run_and_explain(tmp_path, text, budget_steps=5000)
    sigma = np.linalg.svd(TARGETS[target], compute_uv=False)
    for verdict in verdicts:
        assert verdict["kind"] in KINDS
        assert verdict["floor"]["value"] == pytest.approx(np.sum(sigma[3:] ** 2), abs=1e-12)
        if INITS[init] is not None and init == "zero" and target != "zero":
            assert verdict["kind"] == "saddle" and verdict["grad_norm"] == 0.0, verdict

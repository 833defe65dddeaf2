"""Run files end to end, the controlled problems and the initializations."""

import tomllib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from deeplinear.experiment import config, execution
from deeplinear.notebook2017.reproduce import reproduce
from deeplinear.problems import initialization as init
from deeplinear.problems.dense import singular_values, spectral_problem

SHARED = [
    "run_id",
    "run",
    "method",
    "learning_rate",
    "seed",
    "step",
    "loss",
    "grad_norm",
    "loss_notebook",
    "variant",
    "batch_size",
]


def test_reproduce_runs_the_seed_example_as_its_run_file():
    """``reproduce``'s loop batches are examples/seed.toml (less its Gauss-Newton checkpoints);
    with the 2017 rcond alone the modern LM batch is not run."""
    from deeplinear.notebook2017 import experiment

    example = tomllib.loads(Path("examples/seed.toml").read_text())
    assert experiment.run_file(0, "modern") == {**example, "checkpoints": 0}
    assert experiment.run_file(0, "both") == experiment.run_file(0, "modern")
    only_2017 = experiment.run_file(7, "2017")
    assert only_2017["seed"] == 7 and only_2017["methods"] == example["methods"][:-1]


def test_seed_example_equals_reproduce(tmp_path):
    c = config.load("examples/seed.toml")
    result = execution.execute(c, tmp_path / "run")
    expected = reproduce(0, write=False).table
    got = pq.read_table(tmp_path / "run" / "curves.parquet")
    for column in SHARED:
        a, b = expected.column(column).to_numpy(), got.column(column).to_numpy()
        if column == "variant":  # reproduce labels its LM runs; values are what matter
            continue
        np.testing.assert_array_equal(a, b, err_msg=column)
    for column in ("mode_learned", "layer_sigma_min", "layer_sigma_max", "imbalance"):
        assert column in got.column_names
    assert (tmp_path / "run" / "config.toml").read_text() == c.source
    assert (tmp_path / "run" / "gn_spectrum.parquet").is_file()
    assert len(list((tmp_path / "run" / "state").iterdir())) == 3
    assert result.setup.probe.s.shape == (6,)


@pytest.mark.parametrize("law", ["geometric", "linear", [3.0, 2.0, 0.5]])
def test_spectral_problem_has_exactly_the_chosen_spectrum(law):
    values = singular_values(3, 1e4, law)
    rng = np.random.default_rng(0)
    problem = spectral_problem(6, 8, values, rng=rng)
    np.testing.assert_allclose(problem.singular_values[:3], values, rtol=1e-12)
    assert problem.rank == 3
    expected_kappa = 1e4 if isinstance(law, str) else 6.0
    assert problem.condition_number == pytest.approx(expected_kappa, rel=1e-10)


def test_whitened_samples_and_irreducible_noise():
    rng = np.random.default_rng(1)
    values = singular_values(4, 10.0)
    problem = spectral_problem(4, 6, values, rng=rng, samples=50, whiten=True, noise=0.1)
    np.testing.assert_allclose(problem.X @ problem.X.T, 50 * np.eye(4), atol=1e-10)
    objective = problem.objective()
    noise_part = problem.Y - problem.A @ problem.X
    unreachable = noise_part - noise_part @ problem.X.T @ problem.X / 50
    assert float(objective.floor) == pytest.approx(np.sum(unreachable**2), rel=1e-10)
    assert float(objective.floor) > 0.1**2 * 6 * (50 - 4) * 0.5  # a real noise floor


def test_init_kinds():
    rng = np.random.default_rng(2)
    widths = [7, 4, 4, 5]
    balanced = init.initial_weights("balanced", widths, rng, scale=0.5)
    for a, b in zip(balanced[:-1], balanced[1:]):
        np.testing.assert_allclose(a.T @ a, b @ b.T, atol=1e-12)
    ortho = init.initial_weights("orthogonal", widths, rng, scale=2.0)
    for w in ortho:
        small = min(w.shape)
        np.testing.assert_allclose(np.linalg.svd(w, compute_uv=False), np.full(small, 2.0))
    scaled = init.initial_weights("scaled_gaussian", [300, 200, 100], rng)
    assert np.std(scaled[0]) == pytest.approx(1 / np.sqrt(200), rel=0.05)
    U, V = (np.linalg.qr(rng.standard_normal((n, 3)))[0] for n in (7, 5))
    spectral = init.initial_weights(
        "spectral", widths, rng, modes=(U, np.ones(3), V), strengths=[0.1, 0.2, 0.3]
    )
    W = spectral[0] @ spectral[1] @ spectral[2]
    np.testing.assert_allclose(U.T @ W @ V, np.diag([0.1, 0.2, 0.3]), atol=1e-14)


def test_jax_generator_is_reproducible():
    text = (
        Path("examples/seed.toml").read_text().replace('generator = "numpy"', 'generator = "jax"')
    )
    a = execution.build(config.parse(tomllib.loads(text), source=text))
    b = execution.build(config.parse(tomllib.loads(text), source=text))
    np.testing.assert_array_equal(a.problem.X, b.problem.X)
    numpy_setup = execution.build(config.load("examples/seed.toml"))
    assert not np.allclose(a.problem.X, numpy_setup.problem.X)


def test_labels_name_the_hyperparameters_that_differ_from_the_defaults():
    """Two variants of one method in a run file never share a legend label."""
    from deeplinear.experiment.execution import run_info
    from deeplinear.methods import make_method

    plain = run_info(make_method("scaled-gd"), 0, 10.0, {})
    projected = run_info(make_method("scaled-gd", projection=1.0), 0, 10.0, {"projection": 1.0})
    default = run_info(make_method("scaled-gd", damping=0.0), 0, 10.0, {"damping": 0.0})
    assert plain.run == default.run == "ScaledGD step=10"  # a default given is no variant
    assert projected.run == "ScaledGD(projection=1) step=10"
    both = run_info(
        make_method("scaled-gd", projection=1.5, damping=0.1), 0, 2.0,
        {"projection": 1.5, "damping": 0.1},
    )  # fmt: skip
    assert both.run == "ScaledGD(damping=0.1, projection=1.5) step=2"
    assert len({plain.run_id, projected.run_id, both.run_id}) == 3


def test_run_reproduce_and_explain_report_one_final_loss(tmp_path, capsys):
    """``deeplinear run``'s table, ``reproduce``'s table and ``explain`` report the converged LM
    run's final loss as one number: the final weights' double-double loss
    (``floors.reported_loss``), not the loop's float64 value (1.9e-27 against 7.0e-27); the
    table's metadata stores it, and float64 ``loss`` stays in the rows."""
    import json

    from deeplinear.cli import main
    from deeplinear.explain import explain
    from deeplinear.notebook2017.summary import run_table

    label = "LM step=0.2"
    out = tmp_path / "run"
    assert main(["run", "examples/seed.toml", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    (row,) = [line for line in printed if line.startswith(label + " ")]
    reproduced = reproduce(0, write=False)
    value, bound = reproduced.final_losses[label]
    assert bound is not None and bound <= 1e-28  # the double-double loss, not float64
    (expected,) = [line for line in run_table(reproduced.table, reproduced.final_losses)
                   if line.startswith(label + " ")]  # fmt: skip
    assert row.split()[:3] == expected.split()[:3]  # run, final loss
    assert row.split()[3].rstrip("*") == expected.split()[3]  # best loss (* : at the floor)
    assert float(row.split()[2]) == pytest.approx(value, rel=1e-3)

    table = pq.read_table(out / "curves.parquet")
    meta = json.loads(table.schema.metadata[b"deeplinear"])
    run_id = table.filter(pc_equal(table, label)).column("run_id")[0].as_py()
    stored = meta["final_loss"][run_id]
    assert stored["how"] == "double-double"
    assert stored["value"] == value and stored["bound"] == bound
    float64 = table.filter(pc_equal(table, label)).column("loss").to_numpy()[-1]
    assert float64 != value  # the rows keep the loop's own value

    explain(out, budget_steps=0, figures=False)
    verdicts = json.loads((out / "verdicts.json").read_text())["verdicts"]
    (lm,) = [v for v in verdicts if v["run"] == run_id]
    assert lm["kind"] == "converged"
    assert lm["excess_loss"] + lm["floor"]["value"] == pytest.approx(value, rel=1e-12)
    assert f"loss {value:.3g} in double-double" in lm["headline"]


def pc_equal(table, label):
    import pyarrow.compute as pc

    return pc.equal(table.column("run"), label)

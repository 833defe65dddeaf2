"""Deep matrix factorization (Arora, Cohen, Hu & Luo 2019) at a small size, through a sweep: a
30 × 30 target of rank 2 (M = U Vᵀ, ‖M‖_F = 30), 280 of its 900 entries observed (2.4× the
116 degrees of freedom), Gaussian initialization with ‖W1⋯WL‖_F = 1e-3, GD at 1e-2.

Measured on 6 seeds (0–5) before writing this test: after 1000 steps depth 3 is at recovery
error 2.3e-4 … 1.1e-2 and effective rank 1.93–2.00, depth 2 at 0.088 … 0.157 and 2.32–2.80 —
a factor ≥ 8 in the error on every seed. The test asserts a factor 5 on each of 3 seeds at 800
steps, and the lower effective rank. The sweep also checks what measured problems need from
``sweep``: the recovery columns in the group files, several seeds' problems in one batch,
``learning_rate_scaling = "per_sample"`` dividing by the observations, ``only_at``.
"""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest

from deeplinear import sweep
from deeplinear.core.backend import jax, jnp
from deeplinear.errors import UsageError
from deeplinear.objectives.measurement import entries
from deeplinear.store import groups as group_files

SWEEP = """
seeds = 3
targets = [1e-6]
steps = 800
record_every = 200
select = "final_loss"
[problem]
kind = "completion"
rows = 30
cols = 30
rank = 2
target = "gaussian_product"
frobenius_norm = 30.0
observations = 280
[model]
hidden = [30]
[init]
kind = "gaussian"
end_to_end = 1e-3
[axes]
"model.hidden" = [[30], [30, 30]]
[[methods]]
name = "gd"
learning_rates = [2.8]
learning_rate_scaling = "per_sample"
"""

NUCLEAR = """
[[methods]]
name = "nuclear-norm"
learning_rates = [1.0]
steps = 200
only_at = {"model.hidden" = [[30]]}
"""


@pytest.fixture(scope="module")
def finals(tmp_path_factory):
    """The last row of every run of the small sweep (run here, in this process)."""
    out = tmp_path_factory.mktemp("deep")
    plan = sweep.parse(tomllib.loads(SWEEP), source=SWEEP)
    sweep.run(plan, out)
    table = group_files.read(out).to_pandas()
    assert table["recovery_error"].notna().all() and table["effective_rank"].notna().all()
    last = table.sort_values("step").groupby("run_id").tail(1)
    last = last.assign(depth=[len(json.loads(h)) + 1 for h in last["axis:model.hidden"]])
    return {(int(r.depth), int(r.seed)): r for r in last.itertuples()}


def test_depth_three_recovers_where_depth_two_does_not(finals):
    for seed in range(3):
        deep, shallow = finals[3, seed], finals[2, seed]
        assert deep.recovery_error < shallow.recovery_error / 5, seed
        assert deep.effective_rank < shallow.effective_rank, seed
        assert 1.5 < deep.effective_rank < 2.2  # ≈ the target's rank 2
        assert deep.step == shallow.step == 800


def test_the_rate_is_given_per_observation(finals):
    # 2.8 per sample ÷ 280 observations: the lab's 1e-2 (its loss sums, theirs averages)
    rates = [r.learning_rate for r in finals.values()]
    assert rates == pytest.approx([2.8 / 280] * len(rates), rel=1e-15)


def test_recovery_columns_are_the_dense_values(finals, tmp_path):
    """The group file's recovery error and effective rank at the end against NumPy on the
    rebuilt problem and the continued weights: the first row (the initialization) exactly."""
    from deeplinear.experiment import execution

    plan = sweep.parse(tomllib.loads(SWEEP), source=SWEEP)
    group = plan.groups[1]  # depth 3
    setup = execution.build(plan.run_config(group, 0))
    W = np.linalg.multi_dot([np.asarray(w) for w in setup.weights])
    M = setup.problem.dense_truth()
    assert np.linalg.norm(W) == pytest.approx(1e-3, rel=1e-12)
    probe = setup.probe.measure(tuple(jnp.asarray(w) for w in setup.weights))
    dense = np.linalg.norm(W - M) / np.linalg.norm(M)
    assert float(probe["recovery_error"]) == pytest.approx(dense, rel=1e-12)
    s = np.linalg.svd(W, compute_uv=False)
    p = s / s.sum()
    assert float(probe["effective_rank"]) == pytest.approx(np.exp(-np.sum(p * np.log(p))), rel=1e-9)


def test_only_at_runs_a_method_at_the_named_points():
    text = SWEEP + NUCLEAR
    plan = sweep.parse(tomllib.loads(text), source=text)
    names = [g.name for g in plan.groups]
    assert names == [
        "model.hidden=[30]|gd",
        "model.hidden=[30]|nuclear-norm",
        "model.hidden=[30,30]|gd",
    ]
    # the gd groups are the ones the sweep without the baseline has (same files: resumable)
    alone = sweep.parse(tomllib.loads(SWEEP), source=SWEEP)
    assert {g.id for g in alone.groups} <= {g.id for g in plan.groups}


@pytest.mark.parametrize(
    "only, words",
    [
        ('{"model.depth" = [[30]]}', "is not an axis of the sweep"),
        ('{"model.hidden" = [[31]]}', "is not a value of"),
        ('{"model.hidden" = []}', "non-empty list"),
        ("[1]", "must be a table"),
    ],
)
def test_bad_only_at(only, words):
    text = SWEEP + NUCLEAR.replace('{"model.hidden" = [[30]]}', only)
    with pytest.raises(UsageError, match=words):
        sweep.parse(tomllib.loads(text), source=text)


def test_sample_count_of_measured_problems():
    assert sweep.sample_count({"kind": "completion", "observations": 280}) == 280
    completion = {"kind": "completion", "probability": 0.25, "rows": 40, "cols": 10}
    assert sweep.sample_count(completion) == pytest.approx(100)
    assert sweep.sample_count({"kind": "sensing", "measurements": 500}) == 500
    assert sweep.sample_count({"kind": "completion", "path": "x.npz"}) is None
    assert sweep.sample_count({"kind": "notebook", "samples": "population"}) is None
    assert sweep.sample_count({"kind": "notebook"}) == 1000


def test_per_sample_refused_where_the_count_is_unknown(tmp_path):
    text = SWEEP.replace(
        'kind = "completion"\nrows = 30\ncols = 30\nrank = 2\ntarget = "gaussian_product"\n'
        "frobenius_norm = 30.0\nobservations = 280",
        'kind = "completion"\npath = "obs.npz"',
    )
    rng = np.random.default_rng(0)
    rows, cols = np.divmod(rng.choice(900, 280, replace=False), 30)
    np.savez(
        tmp_path / "obs.npz", rows=rows, cols=cols, values=rng.standard_normal(280), shape=[30, 30]
    )
    with pytest.raises(UsageError, match="per_sample"):
        sweep.parse(tomllib.loads(text), source=text, base_dir=tmp_path)


@pytest.mark.parametrize("depth", [2, 3])
def test_dense_and_gathered_entries_agree_with_their_gradients(depth):
    """``measurement.entries``: the dense product indexed and the O(m d) gather give the same
    values and gradients (the dense one is taken when ≥ 1/16 of the entries are observed)."""
    rng = np.random.default_rng(depth)
    shapes = [(12, 5)] + [(5, 5)] * (depth - 2) + [(5, 9)]
    weights = tuple(jnp.asarray(rng.standard_normal(s)) for s in shapes)
    picked = np.divmod(rng.choice(108, 40, replace=False), 9)
    rows, cols = (jnp.asarray(a) for a in picked)
    values = jnp.asarray(rng.standard_normal(40))

    def loss(w, dense):
        left = w[0]
        for x in w[1:-1]:
            left = left @ x
        return jnp.sum((entries(left, w[-1], rows, cols, dense) - values) ** 2)

    a, ga = jax.value_and_grad(loss)(weights, True)
    b, gb = jax.value_and_grad(loss)(weights, False)
    W = np.linalg.multi_dot([np.asarray(w) for w in weights])
    assert float(a) == pytest.approx(np.sum((W[picked] - np.asarray(values)) ** 2), rel=1e-13)
    assert float(b) == pytest.approx(float(a), rel=1e-13)
    for x, y in zip(ga, gb):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)

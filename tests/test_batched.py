"""The throughput kernel computes exactly what ``gd`` computes, run by run."""

import functools

import numpy as np
import pytest

from deeplinear.core.backend import jax, jnp
from deeplinear.diagnostics.probes import Probe
from deeplinear.loop import fast_gd, runner
from deeplinear.methods import GD, TF1GD, Adam, make_method
from deeplinear.objectives.objective import Objective
from deeplinear.problems.dense import notebook_problem


def test_batched_gd_equals_the_compiled_loop():
    problems = [notebook_problem(seed) for seed in range(4)]
    rates = np.array([1e-6, 1e-5, 2e-6, 5e-6])
    objectives = [p.objective() for p, _ in problems]
    stack = lambda xs: jnp.asarray(np.stack(xs))
    W1, W2 = (stack([w[i] for _, w in problems]) for i in (0, 1))
    L = stack([o.factor for o in objectives])
    T = stack([o.target for o in objectives])
    out = fast_gd.gd(W1, W2, L, T, jnp.asarray(rates), 50, tile=2)
    losses = fast_gd.loss(
        *(jnp.moveaxis(x, 0, -1) for x in (*out, L, T)),
        jnp.asarray([float(o.floor) for o in objectives]),
    )
    for i, ((_, w), objective) in enumerate(zip(problems, objectives)):
        curve = runner.run(make_method("gd"), objective, w, [rates[i]], 50).curves[0]
        np.testing.assert_allclose(float(losses[i]), curve.loss[-1], rtol=1e-12)


def test_pallas_kernel_equals_the_xla_kernel():
    """On a CPU the Pallas kernel runs in Pallas's interpreter: same lowering input as on a GPU.
    The batch (5) is not a multiple of the block (8): padding runs must not leak into results."""
    rng = np.random.default_rng(3)
    W1, W2, L, T = (
        jnp.asarray(scale * rng.standard_normal(shape))
        for scale, shape in ((1, (5, 3, 2)), (1, (5, 2, 2)), (3, (5, 4, 2)), (1, (5, 3, 4)))
    )
    lr = jnp.asarray([1e-3, 2e-3, 5e-4, 1e-3, 3e-3])
    expected = fast_gd.gd(W1, W2, L, T, lr, 6)
    got = fast_gd.gd_pallas(W1, W2, L, T, lr, 6, block=8)
    for ours, theirs, start in zip(got, expected, (W1, W2)):
        assert float(jnp.max(jnp.abs(theirs - start))) > 1e-3  # the steps moved the weights
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-13)


def test_batched_gd_pads_and_splits_like_plain_numpy():
    """7 runs over every local device with tiles of 3: padding runs must not leak into results.
    Reference: the update written out in NumPy, run by run."""
    rng = np.random.default_rng(5)
    W1, W2, L, T = (
        scale * rng.standard_normal(shape)
        for scale, shape in ((1, (7, 10, 6)), (1, (7, 6, 6)), (3, (7, 8, 6)), (1, (7, 10, 8)))
    )
    lr = np.linspace(1e-5, 4e-5, 7)
    got = fast_gd.gd(*map(jnp.asarray, (W1, W2, L, T, lr)), 20, tile=3)
    for r in range(7):
        w1, w2 = W1[r], W2[r]
        for _ in range(20):
            G = 2 * (w1 @ w2 @ L[r].T - T[r]) @ L[r]
            w1, w2 = w1 - lr[r] * G @ w2.T, w2 - lr[r] * w1.T @ G
        assert np.max(np.abs(w1 - W1[r])) > 1e-3  # the steps moved the weights
        np.testing.assert_allclose(got[0][r], w1, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(got[1][r], w2, rtol=1e-12, atol=1e-13)


RATES = [1e-6, 1e-5, 3e-5, 6e-5]  # the last diverges within 10 steps on every seed


def _stack(trees):
    return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def _batch(shared: bool):
    """The notebook problem at seed 0 (shared), or seeds 0-2 × RATES (one problem per member)."""
    if shared:
        problem, weights = notebook_problem(0)
        return problem.objective(), weights, RATES, Probe.for_problem(problem)
    problems = [notebook_problem(seed) for seed in range(3) for _ in RATES]
    return (
        _stack([p.objective() for p, _ in problems]),
        _stack([w for _, w in problems]),
        RATES * 3,
        _stack([Probe.for_problem(p) for p, _ in problems]),
    )


def _plain(monkeypatch, *args, **options):
    """``runner.run`` with the fast path turned off (however the runner calls it)."""
    with monkeypatch.context() as patch:
        patch.setattr(fast_gd, "recorded_gd", lambda *a, **k: None)
        return runner.run(*args, **options)


def _same_rows(plain, fast):
    assert len(plain.curves) == len(fast.curves)
    for a, b in zip(plain.curves, fast.curves):
        np.testing.assert_array_equal(a.steps, b.steps)  # a diverged run ends at the same step
        for name in ("loss", "grad_norm"):
            np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-12, err_msg=name)
        # differences of large terms (the notebook's squared sum, the imbalance): to 1e-12 of
        # the column's largest value
        # rows before a divergence blows the iterates up (past 1e6 × the initial loss, the
        # SVDs of the exploding layers are not reproducible to rounding in either path)
        columns = {"loss_notebook": a.loss_notebook, **a.extras}
        assert a.extras.keys() == b.extras.keys()
        kept = np.abs(a.loss) < 1e6 * a.loss[0]
        for name, theirs in columns.items():
            ours = (b.loss_notebook if name == "loss_notebook" else b.extras[name])[kept]
            theirs = theirs[kept]
            scale = np.max(np.abs(theirs[np.isfinite(theirs)]), initial=0.0)
            np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12 * scale, err_msg=name)
        assert b.seconds.shape == a.seconds.shape and np.all(np.diff(b.seconds) >= 0)


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per-member"])
@pytest.mark.parametrize("method", [GD(), TF1GD()], ids=["gd", "tf1-gd"])
def test_recorded_gd_gives_the_plain_loops_rows(monkeypatch, method, shared):
    """Rows, probe extras, FLOPs, final weights and optimizer states as ``runner.run`` gives
    them: a record every step (20 steps, one program), and every 10 (50 steps in chunks of 30:
    two programs, the last one shorter); a diverging rate among them."""
    objective, weights, rates, probe = _batch(shared)
    for every, steps, chunk in ((1, 20, 1000), (10, 50, 30)):
        options = dict(record_every=every, chunk_steps=chunk, probe=probe, shared=shared)
        plain = _plain(monkeypatch, method, objective, weights, rates, steps, **options)
        fast = fast_gd.recorded_gd(
            method, objective, weights, rates, steps, kernel="xla", **options
        )
        _same_rows(plain, fast)
        assert plain.curves[3].diverged_at is not None  # the diverging rate was tested
        assert plain.curves[0].diverged_at is None
        assert len(plain.curves[0].steps) == steps // every + 1
        finite = [c.diverged_at is None for c in plain.curves]
        for ours, theirs in zip(fast.final_weights, plain.final_weights):
            ours, theirs = np.asarray(ours)[finite], np.asarray(theirs)[finite]
            scale = np.max(np.abs(theirs))  # entries near 0: to 1e-12 of the largest
            np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12 * scale)
        same = jax.tree_util.tree_map(np.array_equal, fast.final_state, plain.final_state)
        assert all(jax.tree_util.tree_leaves(same))  # a state explain can continue from


def test_recorded_gd_population_loss_and_progress(monkeypatch):
    """The population loss (L = I), no probe, progress reported per chunk."""
    problem, weights = notebook_problem(1)
    objective = Objective.population(np.asarray(problem.A))
    calls = []
    options = dict(record_every=10, chunk_steps=40)
    plain = _plain(monkeypatch, GD(), objective, weights, [1e-3, 2e-3], 100, **options)
    fast = fast_gd.recorded_gd(
        GD(),
        objective,
        weights,
        [1e-3, 2e-3],
        100,
        progress=lambda *a: calls.append(a),
        kernel="xla",
        **options,
    )
    _same_rows(plain, fast)
    assert calls == [(40, 100), (80, 100), (100, 100)]


def test_recorded_gd_declines_where_it_does_not_apply_or_loses():
    objective, weights, rates, _ = _batch(True)
    run = functools.partial(
        fast_gd.recorded_gd, objective=objective, learning_rates=rates, steps=20
    )
    assert run(Adam(), weights=weights, record_every=10) is None  # not GD
    assert run(GD(schedule="cosine"), weights=weights, record_every=10) is None  # not constant
    assert run(GD(), weights=weights, record_every=10, keep_weights=True) is None
    three = (weights[0], weights[1], np.eye(6))
    assert run(GD(), weights=three, record_every=10, kernel="xla") is None  # depth 3
    assert run(GD(), weights=weights, record_every=10) is None  # too small to gain: measured
    assert run(GD(), weights=weights, record_every=10, kernel="xla") is not None


def test_the_fast_path_is_taken_where_it_was_measured_to_win():
    assert fast_gd.wins(10_000, 3000, 10)  # ×2.2 end to end on the 2-core CPU
    assert not fast_gd.wins(120, 3000, 10)  # the seed_fair group: the build costs more
    assert not fast_gd.wins(10_000, 3000, 1)  # a record every step: records dominate
    assert not fast_gd.wins(8, 10**7, 10)  # tiles of padding
    assert not fast_gd.wins(10_000, 3000, 10, probe=_batch(True)[3])  # the probe's SVDs dominate


@pytest.mark.parametrize(
    "params",
    [
        dict(block=8, num_warps=1),
        dict(block=8, num_warps=1, hoist_m=True),
        dict(block=8, num_warps=1, k_registers=True),
        dict(block=4, num_warps=1, hoist_m=True, k_registers=True),
        dict(block=8, num_warps=1, registers=True),
        dict(block=8, num_warps=1, registers=True, k_registers=True, hoist_m=True),
    ],
    ids=["scratch-k", "hoisted-m", "k-in-registers", "both", "weights-in-registers", "all"],
)
def test_pallas_variants_equal_numpy(params):
    """Every ``gd_pallas`` variant the GPU session sweeps, in Pallas's interpreter, against the
    update written out in NumPy; 5 runs, not a multiple of the block."""
    rng = np.random.default_rng(7)
    W1, W2, L, T = (
        scale * rng.standard_normal(shape)
        for scale, shape in ((1, (5, 3, 2)), (1, (5, 2, 2)), (3, (5, 4, 2)), (1, (5, 3, 4)))
    )
    lr = np.linspace(1e-3, 3e-3, 5)
    got = fast_gd.gd_pallas(*map(jnp.asarray, (W1, W2, L, T, lr)), 4, **params)
    for r in range(5):
        w1, w2 = W1[r], W2[r]
        for _ in range(4):
            G = 2 * (w1 @ w2 @ L[r].T - T[r]) @ L[r]
            w1, w2 = w1 - lr[r] * G @ w2.T, w2 - lr[r] * w1.T @ G
        assert np.max(np.abs(w1 - W1[r])) > 1e-3  # the steps moved the weights
        np.testing.assert_allclose(got[0][r], w1, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(got[1][r], w2, rtol=1e-12, atol=1e-13)


def test_recorded_gd_through_the_pallas_kernel(monkeypatch):
    """The GPU's fast path (Pallas, here interpreted) gives the plain loop's rows too: 3 small
    problems (3 outputs, 2 inputs, width 2, 5 samples) × 2 rates, one problem per member."""
    rng = np.random.default_rng(11)
    members = []
    for _ in range(3):
        X, Y = rng.standard_normal((2, 5)), rng.standard_normal((3, 5))
        weights = (0.5 * rng.standard_normal((3, 2)), 0.5 * rng.standard_normal((2, 2)))
        members += [(Objective.from_samples(X, Y), weights)] * 2
    objective, weights = _stack([o for o, _ in members]), _stack([w for _, w in members])
    rates = [1e-2, 3e-2] * 3
    options = dict(record_every=5, shared=False)
    plain = _plain(monkeypatch, GD(), objective, weights, rates, 10, **options)
    fast = fast_gd.recorded_gd(GD(), objective, weights, rates, 10, kernel="pallas", **options)
    _same_rows(plain, fast)


def test_runner_takes_the_fast_path_where_it_wins(monkeypatch):
    """``runner.run`` hands constant-step GD to ``recorded_gd`` when ``wins`` says so (forced
    here: the real thresholds need 1e7 run-steps), with the plain loop's rows; ``fast=False``
    and any other method keep the plain loop."""
    problem, weights = notebook_problem(0)
    objective, rates = problem.objective(), [1e-6, 3e-6, 1e-5]
    taken = []
    recorded_gd = fast_gd.recorded_gd

    def spy(*args, **options):
        result = recorded_gd(*args, **options)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(fast_gd, "wins", lambda *args: True)
    monkeypatch.setattr(fast_gd, "recorded_gd", spy)
    fast = runner.run(GD(), objective, weights, rates, 40, record_every=10)
    assert taken == [True]
    plain = runner.run(GD(), objective, weights, rates, 40, record_every=10, fast=False)
    assert taken == [True]  # not asked
    _same_rows(plain, fast)
    runner.run(Adam(), objective, weights, rates, 40, record_every=10)
    assert taken == [True, False]  # asked, declined: not constant-step GD

"""The compiled loop: rows, chunking, recording and divergence."""

import numpy as np
import pytest

from deeplinear.errors import UsageError
from deeplinear.loop import runner
from deeplinear.methods import make_method
from deeplinear.problems.dense import NotebookDims, notebook_problem

DIMS = NotebookDims(4, 3, 5, 30)


@pytest.fixture(scope="module")
def setup():
    problem, weights = notebook_problem(1, DIMS)
    return problem.objective(), weights


def test_rows_cover_steps_zero_to_n(setup):
    objective, weights = setup
    result = runner.run(make_method("gd"), objective, weights, [1e-4, 2e-4], 50)
    assert len(result.curves) == 2
    for curve in result.curves:
        np.testing.assert_array_equal(curve.steps, np.arange(51))
        assert curve.diverged_at is None
        assert np.all(np.diff(curve.seconds) >= 0)
    assert result.curves[0].loss[0] == result.curves[1].loss[0]
    assert result.compile_seconds > 0 and result.run_seconds > 0


def test_chunking_does_not_change_results(setup):
    objective, weights = setup
    method = make_method("adam")
    whole = runner.run(method, objective, weights, [1e-2], 60, chunk_steps=1000).curves[0]
    parts = runner.run(method, objective, weights, [1e-2], 60, chunk_steps=25).curves[0]
    np.testing.assert_array_equal(whole.loss, parts.loss)
    np.testing.assert_array_equal(whole.grad_norm, parts.grad_norm)


def test_a_slow_chunk_is_followed_by_shorter_ones_with_the_same_rows(setup, monkeypatch):
    """A chunk over 2 · CHUNK_SECONDS shortens the rest (so a slow batch reports its steps every
    few seconds); the steps are the same steps, to the bit."""
    from deeplinear.loop import programs

    assert programs.shortened([40, 40, 20], 40, 1.0) == [40, 40, 20]  # fast: as planned
    assert programs.shortened([40, 40, 20], 40, 10.0) == [5] * 20  # 10 s: 8× shorter
    assert programs.shortened([40, 7], 40, 5.0) == [10] * 4 + [7]
    objective, weights = setup
    method = make_method("adam")
    whole = runner.run(method, objective, weights, [1e-2], 60, chunk_steps=25).curves[0]
    monkeypatch.setattr(programs, "CHUNK_SECONDS", 1e-9)  # every chunk "slow"
    counts = []
    short = runner.run(
        method, objective, weights, [1e-2], 60, chunk_steps=25, fast=False,
        progress=lambda done, total: counts.append(done),
    ).curves[0]  # fmt: skip
    assert counts[:3] == [25, 26, 27] and counts[-1] == 60  # one record per chunk after the first
    np.testing.assert_array_equal(whole.loss, short.loss)
    np.testing.assert_array_equal(whole.grad_norm, short.grad_norm)
    assert np.all(np.diff(short.seconds) >= 0)


def test_record_every_keeps_every_kth_step(setup):
    objective, weights = setup
    method = make_method("gd")
    every = runner.run(method, objective, weights, [1e-4], 60).curves[0]
    sparse = runner.run(method, objective, weights, [1e-4], 60, record_every=10).curves[0]
    np.testing.assert_array_equal(sparse.steps, np.arange(0, 61, 10))
    np.testing.assert_allclose(sparse.loss, every.loss[::10], rtol=1e-13)


def test_divergence_ends_the_run_at_the_first_non_finite_loss(setup):
    objective, weights = setup
    result = runner.run(make_method("gd"), objective, weights, [1e-4, 10.0], 100, chunk_steps=20)
    stable, diverged = result.curves
    assert stable.diverged_at is None and len(stable.steps) == 101
    assert diverged.diverged_at is not None and diverged.diverged_at < 20
    assert not np.isfinite(diverged.loss[-1]) and np.all(np.isfinite(diverged.loss[:-1]))


def test_all_diverged_stops_early(setup):
    objective, weights = setup
    result = runner.run(make_method("gd"), objective, weights, [10.0], 10_000, chunk_steps=100)
    assert result.curves[0].diverged_at < 100


@pytest.mark.parametrize(
    "rates, kwargs",
    [
        ([1e-3], {"steps": 0}),
        ([1e-3], {"steps": 10, "record_every": 3}),
        ([-1e-3], {"steps": 10}),
        ([np.nan], {"steps": 10}),
        ([], {"steps": 10}),
    ],
)
def test_bad_arguments(setup, rates, kwargs):
    objective, weights = setup
    with pytest.raises(UsageError):
        runner.run(make_method("gd"), objective, weights, rates, **kwargs)


def test_flops_column_counts_steps_and_cg_iterations(setup):
    objective, weights = setup
    gd = runner.run(make_method("gd"), objective, weights, [1e-4], 10).curves[0]
    flops = gd.extras["flops"]
    assert flops[0] == 0 and np.allclose(np.diff(flops), flops[1])
    cg = runner.run(make_method("gn-cg"), objective, weights, [1.0], 5).curves[0]
    assert np.all(np.diff(cg.extras["flops"]) > 0) and cg.extras["cg_steps"][-1] > 0

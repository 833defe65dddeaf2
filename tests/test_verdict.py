"""Verdicts: classes on curves with known answers, and honest ETAs on the notebook's GD."""

import numpy as np
import pytest

from deeplinear import runner
from deeplinear.diagnostics import roundoff_floor
from deeplinear.explain import Continuation
from deeplinear.methods import make_method
from deeplinear.problem import notebook_problem
from deeplinear.verdict import classify, judge

STEPS = np.arange(0, 3001)


def test_linear_convergence_rate_and_eta_are_exact_on_a_geometric_curve():
    loss = 100.0 * 0.999**STEPS
    verdict = judge("geo", STEPS, loss, floor=1e-30, target=1e-10)
    assert verdict.kind == "converging linearly"
    assert verdict.rate == pytest.approx(0.999, rel=1e-12)
    truth = np.log(1e-10 / 0.999**3000) / np.log(0.999)
    low, high = verdict.eta_steps
    assert low == pytest.approx(truth, rel=1e-9) and high == pytest.approx(truth, rel=1e-9)
    assert "extrapolated from the record" in verdict.eta_method


@pytest.mark.parametrize(
    "loss, kind",
    [
        (100.0 / (1 + STEPS) ** 1.5, "sublinear"),
        (np.r_[100.0 * 0.99 ** STEPS[:1500], np.full(1501, 100 * 0.99**1500)], "stalled"),
        (1.0 + 0.5 * np.sin(STEPS) ** 2, "oscillating"),
        (np.r_[100.0 * 0.99 ** STEPS[:2000], 1e-29], "converged"),
        (np.r_[np.full(10, 1.0), np.inf], "diverged"),
    ],
)
def test_classes(loss, kind):
    assert classify(np.arange(len(loss)), loss, floor=1e-29)[0] == kind


def truth_steps(objective, weights, target: float, every: int = 50) -> int:
    """First recorded step (every 50) of a fresh, uninterrupted run with loss ≤ target·initial."""
    curve = runner.run(
        make_method("gd"),
        objective,
        weights,
        [1e-5],
        300_000,
        record_every=every,
        chunk_steps=50_000,
    ).curves[0]
    hit = np.flatnonzero(curve.loss <= target * curve.loss[0])
    assert hit.size, "the truth run did not reach the target: lengthen it"
    return int(curve.steps[hit[0]])


@pytest.mark.parametrize("seed", range(5))
def test_eta_range_contains_the_truth_for_the_notebooks_gd(seed):
    """GD at 1e-5 after 3000 steps on the seed problem: when does it reach 1e-8 of the start?"""
    problem, weights = notebook_problem(seed)
    objective = problem.objective()
    method = make_method("gd")
    result = runner.run(method, objective, weights, [1e-5], 3000)
    curve = result.curves[0]
    extend = Continuation(method, objective, result.final_weights, result.final_state, 1e-5, 3000)
    verdict = judge(
        "gd", curve.steps, curve.loss, floor=roundoff_floor(objective), target=1e-8, extend=extend
    )
    low, high = verdict.eta_steps
    truth = truth_steps(objective, weights, 1e-8) - 3000  # known to within 50 steps
    assert low <= truth and high >= truth - 50, (verdict.headline, truth)
    assert verdict.kind in ("converging linearly", "sublinear")
    assert "slow, not stuck" in verdict.headline  # GD here is slow, not stuck at a floor

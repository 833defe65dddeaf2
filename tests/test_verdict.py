"""Verdicts: classes on curves with known answers, and honest ETAs on the notebook's GD."""

import numpy as np
import pytest

from deeplinear import runner
from deeplinear.explain import Continuation
from deeplinear.floors import Floor, reachable_minimum
from deeplinear.methods import make_method
from deeplinear.problem import notebook_problem
from deeplinear.verdict import classify, judge

STEPS = np.arange(0, 3001)


def floor_at(value: float, resolution: float = 1e-29) -> Floor:
    kinds = ("noise",) if value > resolution else ("round-off",)
    return Floor(value, kinds, value, 0.0, 6, 6, resolution, "test")


def test_linear_convergence_rate_and_eta_are_exact_on_a_geometric_curve():
    loss = 100.0 * 0.999**STEPS
    verdict = judge("geo", STEPS, loss, floor=floor_at(0.0), target=1e-10)
    assert verdict.kind == "converging linearly"
    assert verdict.rate == pytest.approx(0.999, rel=1e-12)
    truth = np.log(1e-10 / 0.999**3000) / np.log(0.999)
    low, high = verdict.eta_steps
    assert low == pytest.approx(truth, rel=1e-9) and high == pytest.approx(truth, rel=1e-9)
    assert verdict.eta_method == "extrapolated"


def test_rates_and_etas_are_on_the_excess_not_the_loss():
    """A geometric approach to a floor of 5: the loss's own log-rate would keep falling."""
    loss = 5.0 + 100.0 * 0.999**STEPS
    verdict = judge(
        "geo", STEPS, loss, floor=floor_at(5.0, 1e-12), target=1e-3, relative_to="excess"
    )
    assert verdict.kind == "converging linearly"
    assert verdict.rate == pytest.approx(0.999, rel=1e-9)
    truth = np.log(1e-3 * 100 / (100 * 0.999**3000)) / np.log(0.999)
    assert verdict.eta_steps[0] == pytest.approx(truth, rel=1e-6)
    unreachable = judge("geo", STEPS, loss, floor=floor_at(5.0, 1e-12), target=1e-10)
    assert not unreachable.target_reachable and unreachable.eta_steps is None
    assert "unreachable" in unreachable.headline


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
    assert classify(np.arange(len(loss)), loss, floor_at(1e-29, 1e-28))[0] == kind


def test_a_large_floor_is_not_convergence():
    """Loss 29 above a floor of 18: 'within 10× the floor' said converged; the excess says not."""
    loss = 18.0 + 11.0 * 0.9999**STEPS
    assert classify(STEPS, loss, floor_at(18.0, 1e-12))[0] == "converging linearly"


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
    floor = reachable_minimum(problem, [10, 6, 6], objective)
    verdict = judge("gd", curve.steps, curve.loss, floor=floor, target=1e-8, extend=extend)
    low, high = verdict.eta_steps
    truth = truth_steps(objective, weights, 1e-8) - 3000  # known to within 50 steps
    assert low <= truth and high >= truth - 50, (verdict.headline, truth)
    assert verdict.kind in ("converging linearly", "sublinear") and verdict.eta_method == "measured"
    assert "slow, not stuck" in verdict.headline  # GD here is slow, not stuck at a floor
    assert verdict.step >= 2 * (3000 + low)  # it stayed below the target as long again


def test_without_a_continuation_the_exact_theory_gives_the_eta():
    """A GD run that cannot be continued, where the decoupled recursion applies: ETA by theory."""
    loss = 100.0 * 0.999**STEPS
    verdict = judge(
        "geo", STEPS, loss, floor=floor_at(0.0), target=1e-10, theory_steps=lambda goal: 25_000
    )
    assert verdict.eta_method == "theory" and verdict.eta_steps == (22_000, 22_000)

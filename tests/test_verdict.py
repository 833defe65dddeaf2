"""Verdicts: classes on curves with known answers, and honest ETAs on the notebook's GD."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from deeplinear.diagnostics.floors import Floor, reachable_minimum
from deeplinear.explain.run_directory import Continuation
from deeplinear.loop import runner
from deeplinear.methods import make_method
from deeplinear.problems.dense import notebook_problem
from deeplinear.verdict import Evidence, Finding, Question, Setting, classify, classify_run, judge

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


# ---------------------------------------------------------------- the classification on its own


def evidence_of(steps, loss, grad=None, continued=None):
    """Evidence with the record ``steps, loss`` and, optionally, a continuation already added."""
    evidence = Evidence.of_record(steps, loss, grad)
    if continued is not None:
        evidence.add(*continued)
        evidence.spent = int(continued[0][-1] - steps[-1])
    return evidence


def settle(evidence, setting, answers):
    """Run the classification to its finding, answering its questions from ``answers``; return
    the finding and the questions asked, in order."""
    asked, facts = [], {}
    while isinstance(found := classify_run(evidence, facts, setting), Question):
        asked.append(found)
        facts[found.name] = answers.get(found.name)
    return found, asked


def numbers_only(found: Finding) -> bool:
    """A finding holds no sentences: every field but its labels (kind, basis, ETA method) is free
    of text."""
    texts = [
        f.name
        for f in dataclasses.fields(found)
        if isinstance(getattr(found, f.name), str) and f.name not in ("kind", "basis", "eta_method")
    ]
    return not texts


def test_classification_extrapolates_a_geometric_excess_exactly():
    """e_t = 100 · 0.999^t over 3000 steps, no handle: rate 0.999, ETA log(1e-10/e_T)/log 0.999."""
    setting = Setting.of(floor_at(0.0), 1e-10, "initial", 100.0, gn_rate=0.998)
    found, asked = settle(evidence_of(STEPS, 100.0 * 0.999**STEPS), setting, {})
    assert [q.name for q in asked] == ["theory"]  # the only fact it could use
    assert found.kind == "converging linearly" and found.basis == "extrapolated"
    assert found.rates == pytest.approx((0.999,) * 3, rel=1e-12)
    measured = np.log(1e-10 / 0.999**3000) / np.log(0.999)
    gauss_newton = np.log(1e-10 / 0.999**3000) / np.log(0.998)
    assert found.eta_steps == pytest.approx((gauss_newton, measured), rel=1e-9)
    assert found.gn_rate == 0.998 and numbers_only(found)


def test_classification_measures_a_continued_crossing():
    """Recorded every 10 steps to 3000, continued to 40000: the first record ≤ 1e-8 · 100 is the
    first multiple of 10 at or past log(1e-8)/log(0.999) = 18412.4."""
    more = np.arange(3010, 40_001, 10)
    evidence = evidence_of(STEPS, 100.0 * 0.999**STEPS, continued=(more, 100.0 * 0.999**more, None))
    setting = Setting.of(floor_at(0.0), 1e-8, "initial", 100.0, seconds_per_step=1e-3)
    found, _ = settle(evidence, setting, {})
    first = int(np.ceil(np.log(1e-8) / np.log(0.999) / 10) * 10)
    assert found.basis == "measured" and found.kind == "converging linearly"
    assert (found.above_until, found.crossed_at) == (first - 10, first)
    assert found.eta_steps == (first - 10 - 3000, first - 3000)
    assert found.eta_seconds == pytest.approx(((first - 3010) * 1e-3, (first - 3000) * 1e-3))
    assert found.stayed == 40_000 - first and found.continued_to == 40_000
    assert found.rate == pytest.approx(0.999, rel=1e-9) and numbers_only(found)


def test_classification_of_a_strict_saddle_asks_in_order_and_predicts_the_escape():
    """Stalled at excess 0.01 with a zero gradient: the critical point (λ_min = −0.04), then the
    escape after a push δ = 1e-6; predicted t = log(√(2·0.001/0.04)/δ)/log(1 + 0.05·0.04)."""
    loss = np.r_[0.99 ** STEPS[:1500] + 0.01, np.full(1501, 0.01)]
    grad = np.r_[np.full(3000, 0.1), 0.0]
    setting = Setting.of(
        floor_at(1e-29, 1e-28), 1e-10, "initial", loss[0], learning_rate=0.05, gd_like=True
    )
    point = SimpleNamespace(grad_norm=0.0, hessian_min=-0.04, hessian_max=2.0)
    found, asked = settle(
        evidence_of(STEPS, loss, grad), setting, {"critical_point": point, "escape": 700}
    )
    assert [q.name for q in asked] == ["theory", "critical_point", "escape"]
    assert asked[-1].args == (point, 1e-6, 10_000, pytest.approx(0.001, rel=1e-12))
    assert found.kind == "saddle" and found.hessian_min == -0.04 and found.grad_norm == 0.0
    truth = np.log(np.sqrt(2 * 0.001 / 0.04) / 1e-6) / np.log(1 + 0.05 * 0.04)
    assert found.escape["measured_steps"] == 700
    assert found.escape["predicted_steps"] == pytest.approx(np.ceil(truth), abs=1)
    assert numbers_only(found)


def test_classification_of_an_unstable_crossing_takes_the_spread_of_the_perturbed_runs():
    """Touches 1e-10 at step 2500, spikes back to 1e-3: the ETA is the spread of the perturbed
    crossings past the record's end, not the touch."""
    loss = np.r_[100.0 * 0.999 ** STEPS[:2500], np.tile([1e-12, 1e-3], 250), 1e-3]
    setting = Setting.of(floor_at(0.0), 1e-10, "initial", 100.0, budget_steps=10_000)
    hits = np.array([2900.0, 3400, 3100, 3250, 3050, 3600])
    found, asked = settle(evidence_of(STEPS, loss), setting, {"crossings": hits})
    assert asked[-1] == Question("crossings", (pytest.approx(1e-8), 5000, 6))
    assert found.kind == "unstable" and found.crossing["first_step"] == 2500
    assert found.crossing["fraction_above_after"] == pytest.approx(251 / 501)
    assert found.crossing["spread"] == [2500.0, 3600.0]
    assert found.eta_steps == (0.0, 600.0) and found.eta_method == "measured"


def test_a_recovery_eta_is_never_shorter_than_the_fit_eta_it_needs():
    """A plateaued fit (ETA 3e7–∞ to a loss of 1e-10) beside an error falling 1e-3 a step:
    the error's own extrapolation (≈8e3 steps to 1e-5) cannot hold, since an error of 1e-5
    needs the loss near 1e-4·(1e-5/0.037)² ≈ 7e-12, below the fit's target. Where the needed
    loss is above the fit's target, the recovery keeps its own ETA."""
    from deeplinear.verdict import Verdict, judge_recovery_of, recovery_floor

    steps = np.arange(0, 1001, 10)
    error = 0.1 * 0.999**steps
    floor = recovery_floor(0.0, 2, 2)

    def fit(target_loss):
        return Verdict(
            "run", "plateau", "plateau", 1000, floor=floor, excess_loss=1e-4,
            target_loss=target_loss, eta_steps=(3e7, np.inf), eta_method="extrapolated",
        )  # fmt: skip

    alone = judge_recovery_of(steps, error, fit=fit(1e-13), target=1e-5, resolution=1e-15)
    assert alone.eta_method == "extrapolated"
    assert alone.eta_steps[0] == pytest.approx(np.log(1e-5 / error[-1]) / np.log(0.999), rel=0.05)
    needs = judge_recovery_of(steps, error, fit=fit(1e-10), target=1e-5, resolution=1e-15)
    assert needs.eta_steps[0] >= 3e7 and needs.eta_steps[1] == np.inf
    assert "no reliable ETA to the target 1e-05: between 3e+07 and ∞ more steps" in needs.headline
    assert any("at or below the fit's target" in line for line in needs.evidence)

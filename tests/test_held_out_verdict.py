"""The held-out verdict (``verdict.judge_held_out``) on curves whose truth is built here: each kind,
the traps of simple rules, and a real NumPy fit of synthetic star ratings with a known floor."""

import json
from math import erf

import numpy as np
import pytest

from deeplinear.verdict import HELD_OUT_KINDS, judge_held_out

T = np.arange(0, 2001, 20)  # 101 records


def noise(scale, seed=0, n=None):
    return scale * np.random.default_rng(seed).standard_normal(len(T) if n is None else n)


def falling_train(t=T):
    """A training RMSE that falls steadily (0.70 → 0.65) and its loss."""
    train = 0.70 - 0.05 * t / t[-1]
    return 1000.0 * train**2, train


def test_optimization_limited_with_the_exact_eta_of_an_exponential_approach():
    excess = 5.0 * np.exp(-T / 1500)
    loss, train = 100.0 + 100.0 * excess, 0.6 + 0.1 * excess
    valid = 0.9 + 0.05 * excess + noise(1e-4)
    truth = 1500 * np.log(100.0 * excess[-1] / (1e-4 * 100.0))  # excess to 1e-4 of the floor
    known = judge_held_out(T, loss, train, valid, floor_loss=100.0)
    assert known.kind == "optimization-limited"
    assert known.eta_steps == pytest.approx((truth, truth), rel=1e-6)
    unknown = judge_held_out(T, loss, train, valid)  # the floor estimated from the rate of fall
    assert unknown.kind == "optimization-limited"
    assert unknown.eta_steps == pytest.approx((truth, truth), rel=0.01)
    assert unknown.evidence["training_floor"] == pytest.approx(100.0, rel=1e-3)
    assert unknown.evidence["validation_slope_per_decade"] < 0
    assert "run longer" in unknown.headline and "more steps" in unknown.what_would_move_it
    assert unknown.best_step == 2000


def test_statistical_floor_while_the_training_rmse_still_falls():
    loss, train = falling_train()
    valid = 0.913 + noise(1e-3)
    verdict = judge_held_out(T, loss, train, valid)
    assert verdict.kind == "statistical floor"
    assert "still falls (0.7 → 0.65)" in verdict.headline
    assert verdict.evidence["level"] == pytest.approx(0.913, abs=5e-4)
    assert verdict.best_step == int(T[np.argmin(valid)])
    assert verdict.best_validation == pytest.approx(valid.min())
    assert "rank, regularization" in verdict.what_would_move_it


@pytest.mark.parametrize("seed", range(20))
def test_a_flat_noisy_held_out_error_is_a_floor_whatever_the_draw(seed):
    """No false alarms: 0.3 % noise neither falls clearly nor rises beyond 4σ."""
    loss, train = falling_train()
    verdict = judge_held_out(T, loss, train, 0.913 + noise(3e-3, seed))
    assert verdict.kind == "statistical floor"


def test_overfitting_from_the_minimum_of_a_u_shape():
    loss, train = falling_train()
    valid = 0.9 + 0.1 * ((T - 800) / 800) ** 2 + noise(2e-5)
    verdict = judge_held_out(T, loss, train, valid)
    assert verdict.kind == "overfitting"
    assert abs(verdict.best_step - 800) <= 2 * 20  # within two records of the true minimum
    assert verdict.best_validation == pytest.approx(0.9, abs=1e-4)
    assert f"stop at step {verdict.best_step}" in verdict.headline
    assert "raise regularization" in verdict.what_would_move_it


def test_one_late_noisy_uptick_is_not_overfitting_but_a_sustained_rise_is():
    loss, train = falling_train()
    valid = 0.913 + noise(1e-3)
    valid[-1] += 0.03  # +3 %: one point
    assert judge_held_out(T, loss, train, valid).kind == "statistical floor"
    valid[-3:] += 0.03  # the last three records: sustained
    assert judge_held_out(T, loss, train, valid).kind == "overfitting"


def test_a_slow_log_decrease_that_looks_flat_still_gains_5_percent_in_10x_steps():
    """v = 0.9 (1 − 0.05 log₁₀(t/10)): over the last quarter of the steps it falls < 0.7 %, flat
    on a linear axis (a rule "relative change < 1 % over the last quarter" calls it a floor), but
    ten times more steps still gain 5 %: optimization-limited, and the training loss's log
    decay has no reliable ETA."""
    t = np.arange(10, 100_001, 1000)
    valid = 0.9 * (1 - 0.05 * np.log10(t / 10))
    tail = t >= 0.75 * t[-1]
    assert (valid[tail][0] - valid[-1]) / valid[-1] < 0.01  # the naive rule's "flat"
    loss = 100 * (1 - 0.05 * np.log10(t / 10))
    verdict = judge_held_out(t, loss, valid - 0.2, valid + noise(5e-4, n=len(t)))
    assert verdict.kind == "optimization-limited"
    gain = -verdict.evidence["validation_slope_per_decade"]
    assert gain == pytest.approx(0.045, rel=0.1)  # 0.05 · 0.9 per ×10 steps
    assert verdict.eta_steps is None and "no reliable ETA" in verdict.headline


def saddle(t, drop_from):
    """A training loss on a plateau until ``drop_from``, then falling geometrically."""
    after = np.clip(t - drop_from, 0, None)
    return 50.0 + 30.0 * np.exp(-after / 400), 0.6 + 0.1 * np.exp(-after / 400)


def test_a_saddle_is_not_a_floor_when_the_held_out_error_falls_again():
    loss, train = saddle(T, 1500)
    plateau = 0.95 - 0.04 * (1 - np.exp(-np.clip(T - 1500, 0, None) / 400))
    verdict = judge_held_out(T, loss, train, plateau + noise(5e-4))
    assert verdict.kind == "optimization-limited"
    flat = judge_held_out(T, loss, train, 0.95 + noise(5e-4))  # the held-out error ignores it
    assert flat.kind == "statistical floor" and "still falls" in flat.headline


def test_both_flat_is_a_floor_that_says_so():
    valid = 0.913 + noise(1e-3)
    verdict = judge_held_out(T, np.full(len(T), 50.0), np.full(len(T), 0.6), valid)
    assert verdict.kind == "statistical floor"
    assert "both have flattened" in verdict.headline


def test_edge_cases_diverged_too_short_not_held_out():
    loss, train = falling_train()
    valid = 0.913 + noise(1e-3)
    broken = loss.copy()
    broken[50:] = np.nan
    diverged = judge_held_out(T, broken, train, valid)
    assert diverged.kind == "diverged" and "step 1000" in diverged.headline
    assert diverged.best_step == int(T[:50][np.argmin(valid[:50])])
    short = judge_held_out(T[:5], loss[:5], train[:5], valid[:5])
    assert short.kind == "too short"
    missing = judge_held_out(T, loss, train, np.full(len(T), np.nan))
    assert missing.kind == "not held out" and "validation_fraction" in missing.headline
    sparse = valid.copy()
    sparse[np.arange(len(T)) % 20 != 0] = np.nan  # 6 records measured: enough
    assert judge_held_out(T, loss, train, sparse).kind == "statistical floor"
    sparse[0] = np.nan
    assert judge_held_out(T, loss, train, sparse).kind == "too short"


def test_bad_curves_are_refused_in_one_line():
    loss, train = falling_train()
    with pytest.raises(ValueError, match="one length"):
        judge_held_out(T, loss, train, loss[:-1])
    with pytest.raises(ValueError, match="strictly increasing"):
        judge_held_out(T[::-1], loss, train, train)


def test_the_record_is_plain_json_and_every_kind_is_listed():
    loss, train = falling_train()
    verdict = judge_held_out(T, loss, train, 0.913 + noise(1e-3), test_rmse=np.full(len(T), 0.92))
    record = json.loads(json.dumps(verdict.record(), allow_nan=False))
    assert record["kind"] == "statistical floor" and record["best_step"] == verdict.best_step
    assert record["evidence"]["test_rmse_at_best"] == 0.92
    assert verdict.kind in HELD_OUT_KINDS


# --- a real fit: star ratings from a rank-3 model, fitted by plain NumPy gradient descent ---

N1, N2, RANK, SIGMA = 300, 200, 3, 0.5


@pytest.fixture(scope="module")
def ratings():
    """Scores 3 + U Vᵀ/√3, ratings clip(round(score + 0.5 ξ), 1, 5), 30 % observed, split
    80/10/10; the floors on the validation entries: the noiseless scores' RMSE (the brief's
    floor) and the Bayes predictor E[rating | score]'s (the best any predictor does)."""
    rng = np.random.default_rng(1)
    scores = 3.0 + rng.standard_normal((N1, RANK)) @ rng.standard_normal((RANK, N2)) / np.sqrt(3)
    stars = np.clip(np.rint(scores + SIGMA * rng.standard_normal((N1, N2))), 1, 5)
    observed, split = rng.random((N1, N2)) < 0.3, rng.random((N1, N2))
    masks = {
        "train": observed & (split < 0.8),
        "validation": observed & (split >= 0.8) & (split < 0.9),
        "test": observed & (split >= 0.9),
    }
    s, y = scores[masks["validation"]], stars[masks["validation"]]
    phi = np.vectorize(lambda z: 0.5 * (1 + erf(z / np.sqrt(2))))
    edges = np.array([-np.inf, 1.5, 2.5, 3.5, 4.5, np.inf])[:, None]
    p = phi((edges[1:] - s) / SIGMA) - phi((edges[:-1] - s) / SIGMA)  # P(rating = k | score)
    bayes = (p * np.arange(1, 6)[:, None]).sum(axis=0)
    floors = {
        "scores": float(np.sqrt(np.mean((s - y) ** 2))),
        "bayes": float(np.sqrt(np.mean((bayes - y) ** 2))),
    }
    return stars, masks, floors


def fit(ratings, rank, regularization, steps, every=5, learning_rate=4.0):
    """GD on (‖P_Ω(μ + A Bᵀ − R)‖² + λ(‖A‖² + ‖B‖²)) / m from A, B ~ 0.1 N(0, 1); the record
    (steps, loss, train, validation and test RMSE of the predictions clipped to 1..5)."""
    stars, masks, _ = ratings
    train = masks["train"]
    mu, m = stars[train].mean(), train.sum()
    rng = np.random.default_rng(0)
    a, b = 0.1 * rng.standard_normal((N1, rank)), 0.1 * rng.standard_normal((N2, rank))
    target = np.where(train, stars - mu, 0.0)
    rows = []
    for k in range(steps + 1):
        predicted = a @ b.T
        residual = np.where(train, predicted - target, 0.0)
        if k % every == 0:
            loss = (np.sum(residual**2) + regularization * (np.sum(a**2) + np.sum(b**2))) / m
            clipped = np.clip(predicted + mu, 1, 5)
            rmse = [np.sqrt(np.mean((clipped - stars)[masks[s]] ** 2)) for s in masks]
            rows.append((k, loss, *rmse))
        grad_a = 2 * (residual @ b + regularization * a) / m
        grad_b = 2 * (residual.T @ a + regularization * b) / m
        a, b = a - learning_rate * grad_a, b - learning_rate * grad_b
    return [np.array(column) for column in zip(*rows)]


def test_real_ratings_fit_rank_3_reaches_the_statistical_floor(ratings):
    """Best validation RMSE between the Bayes floor (−2 % for a finite sample) and the scores'
    floor +3 %: here 0.576 ≤ 0.613 ≤ 0.623 · 1.03."""
    steps, loss, train, valid, test = fit(ratings, RANK, 1.0, 1500)
    verdict = judge_held_out(steps, loss, train, valid, test_rmse=test)
    floors = ratings[2]
    assert verdict.kind == "statistical floor", verdict.headline
    assert 0.98 * floors["bayes"] <= verdict.best_validation <= 1.03 * floors["scores"]
    assert verdict.best_validation == pytest.approx(floors["scores"], rel=0.05)


def test_real_ratings_fit_rank_30_without_regularization_overfits(ratings):
    steps, loss, train, valid, _ = fit(ratings, 30, 0.0, 1500)
    verdict = judge_held_out(steps, loss, train, valid)
    assert verdict.kind == "overfitting", verdict.headline
    assert verdict.best_step < 1000 and valid[-1] > 1.05 * verdict.best_validation


def test_real_ratings_fit_stopped_early_is_optimization_limited_with_a_measured_eta(ratings):
    """Stopped at step 500, mid-descent; continuing the same run measures the ETA's truth: the
    first step after which the loss stays within 0.01 % of its value at step 1500."""
    steps, loss, train, valid, _ = fit(ratings, RANK, 1.0, 1500)
    early = steps <= 500
    verdict = judge_held_out(steps[early], loss[early], train[early], valid[early])
    assert verdict.kind == "optimization-limited", verdict.headline
    floor = loss[-1]
    truth = steps[np.flatnonzero(loss - floor > 1e-4 * floor)[-1] + 1] - 500
    low, high = verdict.eta_steps
    assert low / 1.5 <= truth <= 1.5 * high


def test_a_rise_while_the_training_loss_rises_too_is_unstable_not_overfitting():
    loss, train = falling_train()
    valid = 0.9 + 0.1 * ((T - 800) / 800) ** 2
    verdict = judge_held_out(T, loss[::-1], train[::-1], valid)
    assert verdict.kind == "unstable" and "smaller step size" in verdict.what_would_move_it

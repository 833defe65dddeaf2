"""The report's answer sentences, ranks, curve bands and log-x choice on the cases where a simple
rule goes wrong: ties, one seed, runs that touch a target and rise back, ETAs that span forty
decades, a best cost of 0, diverged seeds in a band."""

import math

import numpy as np
import pytest

from deeplinear.report import confidence
from deeplinear.report.answers import answers
from deeplinear.report.page import log_x_first
from deeplinear.report.ranking import overall, rank_rows


def _cell(solved, median, target=1e-10):
    interval = {"median": median, "low": median, "high": median}
    return {"target": target, "solved": solved, "steps": interval, "seconds": interval,
            "flops": interval}  # fmt: skip


def _row(method, solved, median, *, seeds=10, point="base", grid=(1.0,), steps=3000, **extra):
    return {"group": f"{point}|{method}", "method": method, "axis_point": point, "seeds": seeds,
            "grid": list(grid), "recorded_steps": steps, "targets": [_cell(solved, median)],
            "explained": [], "verdict_counts": {}} | extra  # fmt: skip


def _ranked(rows):
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows


def test_methods_with_one_outcome_share_a_clause_and_counts_match_the_rows():
    rows = _ranked([
        _row("lm", 10, 10.0, steps=50),
        _row("als", 10, 10.0, steps=10),  # another horizon, the same outcome
        _row("adam", 4, math.inf, grid=[0.1] * 14,
             verdict_counts={"reached 1e-10": 4, "stalled": 3, "converging linearly": 3}),
        _row("gd", 0, math.inf, grid=[0.1] * 14, verdict_counts={"converging linearly": 10}),
    ])  # fmt: skip
    (sentence,) = answers(rows, [1e-10])
    assert sentence["text"] == (
        "loss ≤ 1e-10 × initial: lm and als reach it on all 10 seeds in 10 steps (median); "
        "adam (tuned over 14 rates) reaches it on 4 of 10 seeds within 3,000 steps (by step "
        "3,000: stalled on 3, converging linearly on 3); gd (tuned over 14 rates) does not "
        "reach it within 3,000 steps (by step 3,000: converging linearly on all 10)."
    )
    assert sentence["winner"] == ["lm"]
    clauses = {m: c for c in sentence["clauses"] for m in c["methods"]}
    for row in rows:
        assert clauses[row["method"]]["solved"] == row["targets"][0]["solved"]


def test_explain_verdicts_replace_the_recorded_ones_and_bad_etas_are_not_quoted():
    unstable = [{"kind": "unstable", "eta_steps": None}] * 10
    slow = [{"kind": "converging linearly", "eta_steps": [1e4, 4e4]}] * 3
    wild = [{"kind": "sublinear", "eta_steps": [3e5, 1.8e47]}] * 2
    rows = _ranked([
        _row("adam", 10, 2800.0, explained=unstable),  # reached in the sweep, unstable after
        _row("gd", 0, math.inf, seeds=3, explained=slow),
        _row("momentum", 0, math.inf, seeds=2, explained=wild),
        _row("lm", 10, 10.0, explained=[{"kind": "converged"}] * 10),
    ])  # fmt: skip
    text = answers(rows, [1e-10])[0]["text"]
    assert "adam reaches it on all 10 seeds in 2,800 steps (median); continued by explain: " \
           "unstable on all 10" in text  # fmt: skip
    assert "gd does not reach it within 3,000 steps; continued by explain: converging " \
           "linearly on all 3 (≈2e+04 more steps)" in text  # fmt: skip
    assert "sublinear on all 2 (no reliable ETA)" in text and "e+47" not in text
    assert text.endswith("lm reaches it on all 10 seeds in 10 steps (median).")


def test_one_seed_one_step_and_recovery_targets():
    rows = _ranked([
        _row("nuclear-norm", 1, 1.0, seeds=1, point="kappa=20",
             recovery_targets=[{"target": 1e-3, "solved": 0, "steps": {"median": math.inf}}]),
        _row("gd", 1, 979.0, seeds=1, point="kappa=20",
             recovery_targets=[{"target": 1e-3, "solved": 1, "steps": {"median": 992.0}}]),
    ])  # fmt: skip
    loss, recovery = answers(rows, [1e-14], [1e-3])
    assert loss["text"] == (
        "kappa=20, loss ≤ 1e-14 × initial: nuclear-norm reaches it in 1 step; gd reaches it in "
        "979 steps."
    )
    assert recovery["measure"] == "recovery" and recovery["text"] == (
        "kappa=20, ‖W − M‖_F/‖M‖_F ≤ 0.001: nuclear-norm does not reach it within 3,000 "
        "steps; gd reaches it in 992 steps."
    )


def test_ranks_are_competition_ranks_with_unfinished_last():
    def entry(steps, final):
        return {"runs": [{"steps@0.1": s, "final": f} for s, f in zip(steps, final)]}

    best = {
        "p|a": entry([10, 10, 10], [1e-9] * 3),
        "p|b": entry([10, 10, 10], [1e-9] * 3),  # the same key as a: the same rank
        "p|c": entry([5, np.inf, np.inf], [1e-3] * 3),  # median not reached
        "p|d": entry([20, 20, 30], [1e-9] * 3),
        "q|a": entry([np.inf] * 3, [0.5] * 3),
        "q|d": entry([np.inf] * 3, [0.1] * 3),  # no one reached: the final loss decides
    }
    rows = [{"group": g, "method": g[2:], "axis_point": g[0]} for g in best]
    rank_rows(rows, best, "time_to_target", 0.1)
    assert {r["group"]: r["rank"] for r in rows} == {
        "p|a": 1, "p|b": 1, "p|d": 3, "p|c": 4, "q|d": 1, "q|a": 2,
    }  # fmt: skip
    summary = {e["method"]: e for e in overall(rows)}
    assert summary["a"]["mean_rank"] == 1.5 and summary["d"]["wins"] == 1
    assert summary["d"]["relative_median"] == 2.0  # only p counts: at q the best did not reach
    assert summary["c"]["relative_worst"] == math.inf and summary["c"]["points"] == 1
    assert [e["method"] for e in overall(rows)] == ["b", "a", "d", "c"]  # b ran at p only


def test_curve_bands_are_the_bootstrap_of_each_column():
    rng = np.random.default_rng(3)
    values = rng.lognormal(size=(7, 40))
    values[2, 10:] = np.nan  # a seed diverged from row 10: it counts as inf
    values[:5, 30:] = np.inf  # most seeds: the median and its top are inf there
    median, low, high = confidence.median_bands(values)
    drawn = np.random.default_rng(confidence.SEED).integers(0, 7, (confidence.RESAMPLES, 7))
    for j in range(values.shape[1]):
        column = np.sort(np.where(np.isnan(values[:, j]), np.inf, values[:, j]))
        with np.errstate(invalid="ignore"):
            medians = np.median(column[np.sort(drawn, axis=1)], axis=1)
        assert median[j] == np.median(column)
        assert low[j] == np.quantile(medians, 0.025, method="lower")
        assert high[j] == np.quantile(medians, 0.975, method="higher")
        assert low[j] <= median[j] <= high[j]
    assert np.isinf(median[30:]).all() and np.isfinite(low[:30]).all()


def _curve(recorded: int, reached: int | None) -> dict:
    step = np.arange(0.0, recorded + 1.0)
    q50 = np.where(step >= (math.inf if reached is None else reached), 1e-12, 0.5)
    return {"step": step, "q50": q50}


@pytest.mark.parametrize(
    ("curves", "expected"),
    [
        (((3000, 10), (3000, 3000)), True),  # LM in 10 steps, GD in 3000: log x
        (((3000, 100), (3000, 3000)), False),  # ×30 exactly: linear
        (((200, None), (3000, 2500)), False),  # one never reached it in its 200 steps: ×12.5
        (((3000, 2), (3000, None)), True),  # the other never reached it in 3000
    ],
)
def test_log_x_when_the_steps_needed_differ_by_more_than_30(curves, expected):
    quantiles = {i: _curve(*c) for i, c in enumerate(curves)}
    assert log_x_first(quantiles, 1e-10) is expected

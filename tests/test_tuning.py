"""tuning.best_settings on synthetic sweep tables whose best learning rate is known by
construction: optimum inside the grid, at either end, ties, every run diverged, one rate; a
target touched and left is not reached; a rate where some seed diverged is not eligible."""

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deeplinear.sweep import tuning

STEPS = np.arange(0, 110, 10)  # rows at steps 0, 10, …, 100


def curve(rate_factor: float, diverge_at: int | None = None) -> np.ndarray:
    """loss(step) = exp(-rate_factor · step): falls to 1e-6 of its start at step
    ln(1e6)/rate_factor; ``diverge_at``: the row where it becomes inf (and the run ends)."""
    loss = np.exp(-rate_factor * STEPS.astype(np.float64))
    if diverge_at is not None:
        loss = loss[: diverge_at + 1].copy()
        loss[-1] = np.inf
    return loss


def table(groups: dict) -> pa.Table:
    """groups: group id → {rate: [loss array per seed]} as the rows of a sweep."""
    columns = {k: [] for k in ("run_id", "group", "method", "learning_rate", "seed", "step")}
    columns |= {"loss": [], "seconds": [], "batch_size": [], "axis:problem.samples": []}
    for group, rates in groups.items():
        for rate, losses in rates.items():
            for seed, loss in enumerate(losses):
                n = len(loss)
                columns["run_id"] += [f"{group}/seed{seed}/{rate!r}"] * n
                columns["group"] += [group] * n
                columns["method"] += [group.split("|")[1]] * n
                columns["learning_rate"] += [rate] * n
                columns["seed"] += [seed] * n
                columns["step"] += STEPS[:n].tolist()
                columns["loss"] += list(loss)
                columns["seconds"] += (STEPS[:n] * 1e-3).tolist()
                columns["batch_size"] += [len(rates) * len(losses)] * n
                columns["axis:problem.samples"] += [group.split("|")[0]] * n
    return pa.table(columns)


def bump(grid, best: int, seeds: int, jitter) -> dict:
    """Per rate, seeds' curves that converge fastest at index ``best`` of ``grid`` (the speed
    falls with the distance from it); ``jitter`` perturbs seeds without moving the median."""
    out = {}
    for i, rate in enumerate(grid):
        speed = 0.5 / (1 + abs(i - best))
        # seeds: the median seed has exactly ``speed``; others straddle it symmetrically
        speeds = [speed * (1 + j) for j in jitter(seeds)]
        out[rate] = [curve(s) for s in speeds]
    return out


def symmetric(seeds):
    half = [0.01 * (k + 1) for k in range(seeds // 2)]
    return sorted([-h for h in half] + ([0.0] if seeds % 2 else []) + half)


@settings(max_examples=60, deadline=None, database=None)
@given(
    size=st.integers(2, 9),
    data=st.data(),
    seeds=st.sampled_from([1, 3, 5]),
    select=st.sampled_from(["time_to_target", "final_loss", "auc"]),
    log=st.booleans(),
)
def test_best_rate_and_edge_are_the_constructed_ones(size, data, seeds, select, log):
    best = data.draw(st.integers(0, size - 1))
    grid = (np.geomspace(1e-4, 1e-1, size) if log else np.linspace(0.1, 1.0, size)).tolist()
    rows = table({"n=1|gd|abc": bump(grid, best, seeds, symmetric)})
    (found,) = tuning.best_settings(rows, 1e-6, select)
    assert found.learning_rate == grid[best]
    assert found.grid == tuple(sorted(grid))
    expected = "low" if best == 0 else "high" if best == size - 1 else None
    assert found.edge == expected and not found.extended
    assert len(found.runs) == seeds and {r["learning_rate"] for r in found.runs} == {grid[best]}
    # the metric: the median across seeds of the median seed's exact curve (speed 0.5)
    expected_metric = {
        "final_loss": np.exp(-0.5 * 100),
        "time_to_target": 10 * np.ceil(np.log(1e6) / 0.5 / 10),
        "auc": np.mean(np.log10(curve(0.5))),
    }[select]
    assert found.metric == pytest.approx(expected_metric, rel=1e-12)


def test_ties_go_to_the_smaller_rate():
    same = [curve(0.3)] * 3
    rows = table({"n=1|gd|abc": {0.1: same, 0.2: same, 0.3: same}})
    for select in tuning.SELECT:
        (found,) = tuning.best_settings(rows, 1e-6, select)
        assert found.learning_rate == 0.1 and found.edge == "low"


def test_steps_tie_broken_by_the_final_loss():
    # both reach 1e-6 at step 30 (speeds 0.5 and 0.6: 27.6 and 23.0 steps, rounded up to rows)
    rows = table({"n=1|gd|abc": {0.1: [curve(0.5)], 0.2: [curve(0.6)], 0.3: [curve(0.05)]}})
    (found,) = tuning.best_settings(rows, 1e-6, "time_to_target")
    assert found.metric == 30.0 and found.learning_rate == 0.2 and found.edge is None


def test_every_run_diverged_is_the_low_edge():
    rows = table({"n=1|gd|abc": {r: [curve(0.1, diverge_at=3)] * 2 for r in (0.1, 0.2, 0.4)}})
    for select in tuning.SELECT:
        (found,) = tuning.best_settings(rows, 1e-6, select)
        assert found.learning_rate == 0.1 and found.edge == "low"  # try smaller rates
        assert found.metric == np.inf


def test_diverged_rates_beyond_the_best_make_it_interior():
    grid = {0.1: [curve(0.05)], 0.2: [curve(0.2)], 0.4: [curve(0.1, diverge_at=2)]}
    (found,) = tuning.best_settings(table({"n=1|gd|abc": grid}), 1e-6, "final_loss")
    assert found.learning_rate == 0.2 and found.edge is None
    assert found.limit == "diverged beyond" and found.excluded == (0.4,) and found.diverged == 0


def test_one_rate_is_a_single_point_grid():
    rows = table({"n=1|lm|abc": {1.0: [curve(0.5)]}})
    (found,) = tuning.best_settings(rows, 1e-6)
    assert found.edge == "single" and found.grid == (1.0,)


def test_one_best_per_group_and_the_extension_record():
    rows = table(
        {
            "n=1|gd|aaa": {0.1: [curve(0.1)], 0.2: [curve(0.2)]},
            "n=2|gd|bbb": {0.1: [curve(0.3)], 0.2: [curve(0.2)]},
            "n=1|adam|ccc": {1.0: [curve(0.5)]},
        }
    )
    record = {"added": [0.4, 0.8], "stopped": "interior"}
    found = {
        b.group: b for b in tuning.best_settings(rows, 1e-6, "final_loss", {"n=1|gd|aaa": record})
    }
    assert set(found) == {"n=1|gd|aaa", "n=2|gd|bbb", "n=1|adam|ccc"}
    assert found["n=1|gd|aaa"].edge == "high" and found["n=1|gd|aaa"].extended
    assert found["n=1|gd|aaa"].extension == record
    assert found["n=2|gd|bbb"].edge == "low" and not found["n=2|gd|bbb"].extended
    assert found["n=2|gd|bbb"].point == {"problem.samples": "n=2"}
    legacy = tuning.best_configs(tuning.run_summaries(rows, [1e-6]), 1e-6, "final_loss")
    assert {g: b.learning_rate for g, b in found.items()} == {
        g: e["learning_rate"] for g, e in legacy.items()
    }


def test_seconds_alone_is_summarised_where_present():
    rows = table({"n=1|gd|abc": {0.1: [curve(0.5)] * 2}})
    (summary, _) = tuning.run_summaries(rows, [1e-6])
    assert "seconds_alone@1e-06" not in summary
    alone = pa.array(np.asarray(rows.column("step").to_pylist()) * 2e-3)
    (summary, _) = tuning.run_summaries(rows.append_column("seconds_alone", alone), [1e-6])
    # reached 1e-6 at step 30: the share is 30 × 1e-3 / 2 runs, alone 30 × 2e-3
    assert summary["seconds@1e-06"] == pytest.approx(0.015)
    assert summary["seconds_alone@1e-06"] == pytest.approx(0.06)


def test_edge_of():
    assert tuning.edge_of(1.0, [1.0]) == "single"
    assert tuning.edge_of(1.0, [3.0, 1.0, 2.0]) == "low"
    assert tuning.edge_of(3.0, [3.0, 1.0, 2.0]) == "high"
    assert tuning.edge_of(2.0, [3.0, 1.0, 2.0]) is None


def test_unknown_select_is_refused():
    with pytest.raises(ValueError, match="select"):
        tuning.best_settings(table({"n=1|gd|abc": {0.1: [curve(0.5)]}}), 1e-6, "fastest")


def test_touching_the_target_and_rising_back_is_not_reaching_it():
    # falls below 1e-6 of its start at step 30, rises back above it at step 60, then stays
    # above: it never reached the target for good; its first crossing is kept apart
    loss = curve(0.5)
    loss[6:] = 1e-3
    settles = curve(0.5)
    settles[6:8] = 1e-3  # rises back, then falls again at step 80 for good
    rows = table({"n=1|adam|abc": {0.1: [loss], 0.2: [settles], 0.3: [curve(0.05)]}})
    by_rate = {r["learning_rate"]: r for r in tuning.run_summaries(rows, [1e-6])}
    assert by_rate[0.1]["steps@1e-06"] == np.inf and by_rate[0.1]["first_crossing@1e-06"] == 30
    assert by_rate[0.1]["seconds@1e-06"] == np.inf
    assert by_rate[0.2]["steps@1e-06"] == 80 and by_rate[0.2]["first_crossing@1e-06"] == 30
    (found,) = tuning.best_settings(rows, 1e-6, "time_to_target")
    assert found.learning_rate == 0.2 and found.metric == 80.0 and found.edge is None


@settings(max_examples=80, deadline=None, database=None)
@given(st.lists(st.sampled_from([1e-12, 1e-7, 1e-5, 0.5, np.nan, np.inf]), min_size=1, max_size=10))
def test_steps_to_target_is_the_first_row_from_which_it_stays(tail):
    """Against a direct reference: the first row i with every loss from i on ≤ t · loss₀."""
    loss = np.concatenate([[1.0], tail])
    rows = table({"n=1|gd|abc": {0.1: [loss]}})
    (summary,) = tuning.run_summaries(rows, [1e-6])
    below = [bool(v <= 1e-6) for v in loss]
    stays = [i for i in range(len(loss)) if all(below[i:])]
    assert summary["steps@1e-06"] == (STEPS[stays[0]] if stays else np.inf)
    crossing = [i for i in range(len(loss)) if below[i]]
    assert summary["first_crossing@1e-06"] == (STEPS[crossing[0]] if crossing else np.inf)
    assert summary["diverged"] == (not np.all(np.isfinite(loss)))


def test_a_rate_where_one_seed_diverged_is_not_the_best():
    # 0.4 has the best median (4 fast seeds of 5) but one seed diverged: 0.2 is chosen, and the
    # diverged rate beyond it bounds it (interior: the extension stops there)
    grid = {
        0.1: [curve(0.1)] * 5,
        0.2: [curve(0.2)] * 5,
        0.4: [curve(0.5)] * 4 + [curve(0.5, diverge_at=4)],
    }
    for select in tuning.SELECT:
        (found,) = tuning.best_settings(table({"n=1|gd|abc": grid}), 1e-6, select)
        assert found.learning_rate == 0.2 and found.diverged == 0, select
        assert found.edge is None and found.limit == "diverged beyond"
        assert found.excluded == (0.4,)
    # without the diverged seed 0.4 would be the best (the median alone ignores the divergence)
    clean = {**grid, 0.4: [curve(0.5)] * 5}
    (found,) = tuning.best_settings(table({"n=1|gd|abc": clean}), 1e-6)
    assert found.learning_rate == 0.4 and found.edge == "high" and found.limit is None


def test_every_rate_diverged_somewhere_picks_the_fewest_divergences():
    grid = {
        0.1: [curve(0.1)] * 3 + [curve(0.1, diverge_at=5)] * 2,  # 2 of 5 diverged
        0.2: [curve(0.3)] * 4 + [curve(0.3, diverge_at=5)],  # 1 of 5: the fewest
        0.4: [curve(0.6)] * 4 + [curve(0.6, diverge_at=5)],  # 1 of 5 and faster: the best
        0.8: [curve(0.9)] * 2 + [curve(0.9, diverge_at=5)] * 3,  # fastest median, 3 of 5
    }
    (found,) = tuning.best_settings(table({"n=1|gd|abc": grid}), 1e-6, "time_to_target")
    assert found.learning_rate == 0.4 and found.diverged == 1
    assert found.excluded == (0.1, 0.8) and found.limit == "diverged beyond"


@settings(max_examples=60, deadline=None, database=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=6), st.data())
def test_the_best_has_the_fewest_divergences_and_the_best_median_among_them(counts, data):
    """Random divergence counts (of 3 seeds) and speeds per rate: the choice is the fastest
    median among the rates with the fewest divergences (the smaller rate on a tie)."""
    speeds = data.draw(st.lists(st.sampled_from([0.1, 0.2, 0.4, 0.8]), min_size=len(counts),
                                max_size=len(counts)))  # fmt: skip
    rates = [0.1 * 2**i for i in range(len(counts))]
    grid = {
        rate: [curve(speed, diverge_at=6 if seed < count else None) for seed in range(3)]
        for rate, count, speed in zip(rates, counts, speeds, strict=True)
    }
    (found,) = tuning.best_settings(table({"n=1|gd|abc": grid}), 1e-6, "time_to_target")
    fewest = min(counts)
    allowed = [i for i, c in enumerate(counts) if c == fewest]
    # median steps to 1e-6 over 3 seeds: inf where 2 or 3 diverged, else the curve's row
    steps = [np.inf if counts[i] >= 2 else 10 * np.ceil(np.log(1e6) / speeds[i] / 10)
             for i in allowed]  # fmt: skip
    expected = allowed[int(np.argmin(steps))]  # argmin: the first (smaller rate) of ties
    assert found.learning_rate == rates[expected] and found.diverged == fewest
    assert found.excluded == tuple(r for r, c in zip(rates, counts) if c != fewest)
    near = counts[max(expected - 1, 0) : expected] + counts[expected + 1 : expected + 2]
    assert (found.limit == "diverged beyond") == any(c != fewest for c in near)

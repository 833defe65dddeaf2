"""The fair comparison of a sweep's runs: what each run is charged in seconds, its summaries
(steps, seconds and FLOPs until the loss first falls to each target, relative to the initial
loss), the best configuration per group and the performance profile.

Seconds are what the run is charged (``time_charged``): where the sweep measured it, step × the
seconds per step of its group's best run timed alone (column ``seconds_alone``), else the run's
share of its batch's wall time (batch time ÷ batch size). Per group (axis point × method) the
best learning rate is ``tuning.best_settings``' (by the sweep's ``select``), flagged when it lies
on its grid's edge or the sweep extended the grid. The performance profile (Dolan & Moré 2002)
puts each method, at its best learning rate, on every problem (axis point × seed): ρ(τ) is the
fraction of problems it solves within τ times the fastest method's time; one per target, and
one per recovery target (seconds until ‖W − M‖_F/‖M‖_F first falls to it) where the sweep
declares them.
"""

from __future__ import annotations

import json

import numpy as np

from deeplinear.sweep import tuning


def charged_seconds(series) -> np.ndarray:
    """The seconds a run is charged at each row (see the module docstring)."""
    alone = series.get("seconds_alone")
    if alone is not None and np.all(np.isfinite(np.asarray(alone, dtype=float))):
        return np.asarray(alone, dtype=float)
    return series["seconds"] / series["batch_size"]


def time_charged(table) -> str:
    """How the page's seconds were charged, in one sentence."""
    column = "seconds_alone" in table.column_names and table.column("seconds_alone").null_count == 0
    if column:
        return (
            "Seconds are measured alone: each group's best run was timed by itself (a batch of "
            "one, same steps) and every run of the group is charged step × that run's seconds "
            "per step, so a method is not charged for how many runs shared its compiled batch."
        )
    return (
        "Seconds are each run's share of its batch's wall time (batch time ÷ batch size): a "
        "method's seconds depend on how many runs shared its compiled batch (this sweep did not "
        "time runs alone)."
    )


def run_summaries(table, targets) -> list[dict]:
    """``tuning.run_summaries`` with ``seconds@t`` the seconds charged (the time alone where
    measured, ``share@t`` keeps the batch share)."""
    rows = tuning.run_summaries(table, targets)
    for row in rows:
        for t in targets:
            row[f"share@{t:g}"] = row[f"seconds@{t:g}"]
            row[f"seconds@{t:g}"] = row.get(f"seconds_alone@{t:g}", row[f"seconds@{t:g}"])
            row["final"] = row["final"] if np.isfinite(row["final"]) else np.inf
    return rows


def best_configs(table, summaries, target, select, extensions) -> dict:
    """Per group, ``tuning.best_settings``' choice (the learning rate, its grid, ``edge``,
    ``extended``) with this report's run summaries of that rate."""
    best = {}
    for b in tuning.best_settings(table, target, select, extensions):
        runs = [
            r for r in summaries if r["group"] == b.group and r["learning_rate"] == b.learning_rate
        ]
        best[b.group] = {
            "learning_rate": b.learning_rate,
            "runs": runs,
            "method": b.method,
            "point": b.point,
            "grid": list(b.grid),
            "edge": b.edge,
            "extended": b.extended,
            "extension": b.extension,
            "excluded": list(b.excluded),  # rates that diverged on some seed
        }
    return best


def recovery_times(best, series, goals) -> None:
    """Set ``recovery_steps@t`` and ``recovery_seconds@t`` (charged) on every best run: the
    first recorded row with ‖W − M‖_F/‖M‖_F ≤ t (inf if none), for each recovery target t."""
    for entry in best.values():
        for r in entry["runs"]:
            data = series[r["run_id"]]
            error = np.asarray(data.get("recovery_error", np.full(len(data["step"]), np.nan)),
                               dtype=float)  # fmt: skip
            seconds = charged_seconds(data)
            for t in goals:
                hit = np.flatnonzero(error <= t)
                r[f"recovery_steps@{t:g}"] = float(data["step"][hit[0]]) if hit.size else np.inf
                r[f"recovery_seconds@{t:g}"] = float(seconds[hit[0]]) if hit.size else np.inf


def performance_profile(best, target, measure="seconds"):
    """(methods, τ grid, ρ(τ) per method) over problems = (axis point, seed)."""
    key = f"{measure}@{target:g}"
    costs: dict = {}
    for entry in best.values():
        for r in entry["runs"]:
            problem = (json.dumps(entry["point"], sort_keys=True, default=str), r["seed"])
            costs.setdefault(problem, {})[entry["method"]] = r[key]
    methods = sorted({m for c in costs.values() for m in c})
    ratios = {m: [] for m in methods}
    for by_method in costs.values():
        fastest = min(by_method.values())
        for m in methods:
            cost = by_method.get(m, np.inf)
            ratios[m].append(
                cost / fastest if np.isfinite(cost) and np.isfinite(fastest) else np.inf
            )
    taus = np.geomspace(1, 1e4, 200)
    return methods, taus, {m: [(np.asarray(ratios[m]) <= t).mean() for t in taus] for m in methods}

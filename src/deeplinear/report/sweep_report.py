"""The sweep report (``write_report``): the fair comparison (``comparison``), the summary rows
(``summary``: terminal table, ``summary.csv``, ``summary.json``), the static figures
(``sweep_figures``) and the report page (``page.py``: one self-contained HTML file), with each
best configuration's verdicts: how its runs end (reached the last target, else
``verdict.classify`` against each run's reachable minimum) and ``verdicts.json`` when the sweep
was explained.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from deeplinear.errors import UsageError
from deeplinear.experiment.execution import reachable_minimum
from deeplinear.report import confidence, page
from deeplinear.report.answers import answers, held_out_answers
from deeplinear.report.colours import method_colours
from deeplinear.report.comparison import (
    best_configs,
    performance_profile,
    recovery_times,
    run_summaries,
    time_charged,
)
from deeplinear.report.ranking import overall, rank_rows, rule_text, selected_by_validation
from deeplinear.report.rows import counted_recovery_targets, point_text
from deeplinear.report.summary import (
    axis_order,
    axis_text,
    recovery_cells,
    summary_csv,
    summary_rows,
    summary_table,
)
from deeplinear.report.sweep_figures import curve_quantiles, recovery_quantiles, static_figures
from deeplinear.store.directories import write_atomic
from deeplinear.store.frames import provenance
from deeplinear.store.groups import read_groups
from deeplinear.store.jsonfiles import dumps, jsonable
from deeplinear.store.results import run_series
from deeplinear.sweep import tuning
from deeplinear.sweep.sweep_file import load_stored, recovery_goals
from deeplinear.verdict import classify


def _floors(plan, needed) -> dict:
    """(group id, seed) → the reachable minimum of that axis point's problem for that seed, for
    the pairs in ``needed`` (building a problem costs a least-squares solve: once per axis point
    and seed, whatever the methods)."""
    out, built = {}, {}
    for group in plan.groups:
        for seed in group.seeds:
            if (group.id, seed) not in needed:
                continue
            key = (group.label, seed)
            if key not in built:
                try:
                    built[key] = reachable_minimum(plan.run_config(group, seed))
                except UsageError:  # e.g. its .npz data moved since the sweep: not judged
                    built[key] = None
            if built[key] is not None:
                out[group.id, seed] = built[key]
    return out


def _verdicts(series, runs, floors: dict, target: float) -> dict[str, int]:
    """How the runs of one configuration end: reached ``target`` (and stayed below it, as the
    summary counts it), else ``verdict.classify`` against each run's own reachable minimum (it
    depends on the axis point and the seed)."""
    kinds: dict = {}
    for r in runs:
        data = series[r["run_id"]]
        floor = floors.get((r["group"], r["seed"]))
        if np.isfinite(r[f"steps@{target:g}"]):
            kind = f"reached {target:g}"
        elif floor is None:
            kind = "not judged (its problem's data is not found)"
        else:
            kind = classify(data["step"], data["loss"], floor)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1]))


def explained(directory: Path, groups: dict[str, dict]) -> dict:
    """``DIR/verdicts.json`` (``deeplinear explain DIR``) by (group, learning rate): the list of
    its verdicts of groups whose file is the one they were judged on (``judged``: its sha256; a
    group run again since, or a verdicts file of other results, is not shown); empty when the
    sweep was not explained."""
    path = directory / "verdicts.json"
    if not path.is_file():
        return {}
    try:
        held = json.loads(path.read_text())
        records, judged = held.get("verdicts", []), held.get("judged") or {}
    except (OSError, ValueError, AttributeError) as error:
        raise UsageError(
            f"{path} is not readable JSON ({error}): run deeplinear explain {directory} again"
        ) from None
    if not isinstance(judged, dict) or not isinstance(records, list):
        return {}
    current = {g for g, meta in groups.items() if judged.get(g) == meta.get("sha256")}
    out: dict = {}
    for v in records:
        rate = v.get("learning_rate") if isinstance(v, dict) else None
        if isinstance(rate, int | float) and v.get("group") in current:
            out.setdefault((v["group"], float(rate)), []).append(v)
    return out


def _sweep_metadata(directory: Path) -> dict:
    """The sweep's provenance (``frames.provenance``: name, versions, revision, groups)."""

    return provenance(directory)


def _created(meta: dict) -> str | None:
    """When the sweep's results were written: its newest group's ``created``."""
    stamps = [g.get("created") for g in (meta.get("groups") or {}).values() if isinstance(g, dict)]
    return max((s for s in stamps if isinstance(s, str)), default=meta.get("created"))


def _needed(best, key) -> set:
    """(group, seed) whose reachable minimum the report needs: best runs that never reached the
    last target (the ones to judge) and every seed of one group per axis point (its line)."""
    runs = [r for e in best.values() for r in e["runs"]]
    needed = {(r["group"], r["seed"]) for r in runs if r[key] == math.inf}
    first: dict = {}
    for group, entry in best.items():
        first.setdefault(json.dumps(entry["point"], sort_keys=True, default=str), (group, entry))
    for group, entry in first.values():
        needed |= {(group, r["seed"]) for r in entry["runs"]}
    return needed


def _reachable(best, series, floors) -> dict[str, float | None]:
    """Per axis point (its text), the reachable minimum relative to the initial loss with the
    loop's round-off above it (a loss below that line is the minimum to rounding): median over
    seeds of (floor + resolution) ÷ loss₀ (None where it is 0: a log axis has no line)."""
    ratios: dict = {}
    for entry in best.values():
        for r in entry["runs"]:
            floor = floors.get((r["group"], r["seed"]))
            start = float(series[r["run_id"]]["loss"][0])
            if floor is not None and start > 0:
                reached = floor.value + floor.resolution
                ratios.setdefault(point_text(entry["point"]), []).append(reached / start)
    return {p: (float(np.median(v)) if np.median(v) > 0 else None) for p, v in ratios.items()}


def _rows(directory, plan, table, groups):
    """The analysis behind every output: (run summaries, best configurations, series, summary
    rows with their verdicts, ranks and recovery cells, recovery curves, reachable minima)."""
    targets = plan.targets
    summaries = run_summaries(table, targets)
    best = best_configs(table, summaries, targets[0], plan.select, tuning.grid_extensions(groups))
    series = run_series(table)
    floors = _floors(plan, _needed(best, f"steps@{targets[-1]:g}"))
    orders = {p: [axis_text(p, v) for v in axis_order(vs)] for p, vs in plan.axes.items()}
    rows = summary_rows(best, targets, orders)
    by_group = {r["group"]: r for r in rows}
    verdicts = explained(directory, groups)
    colours = method_colours(g.method.name for g in plan.groups)
    for group, entry in best.items():
        row = by_group[group]
        row["verdict_counts"] = _verdicts(series, entry["runs"], floors, targets[-1])
        row["verdicts"] = ", ".join(f"{k} ×{n}" for k, n in row["verdict_counts"].items())
        row["explained"] = verdicts.get((group, float(entry["learning_rate"])), [])
        # the horizon the solved counts and the unexplained verdicts are on
        row["recorded_steps"] = max(int(series[r["run_id"]]["step"][-1]) for r in entry["runs"])
        row["colour"] = colours.get(row["method"])
    recovery = {g: q for g, e in best.items() if (q := recovery_quantiles(series, e))}
    goals = recovery_goals(plan) if recovery else []
    recovery_times(best, series, goals)
    for group, q in recovery.items():
        m, lo, hi = confidence.median_interval(q["final"])
        by_group[group]["final_recovery"] = {"median": m, "low": lo, "high": hi}
        by_group[group]["recovery_targets"] = recovery_cells(best[group], goals)
    rank_rows(rows, best, plan.select, targets[0])
    if plan.select == "validation":
        selected_by_validation(rows)
    points = list(dict.fromkeys(r["axis_point"] for r in rows))
    rows.sort(key=lambda r: (points.index(r["axis_point"]), r["rank"]))  # stable: method order
    return summaries, best, series, rows, recovery, _reachable(best, series, floors), orders


def write_report(directory: str | Path, out=None) -> Path:
    """Analyse the sweep in ``directory``; write ``report.html``, ``summary.csv``,
    ``summary.json`` and the static figures (PNG, SVG and PDF, with ``figures.json``: their
    captions and metadata) there; print the summary table to the text stream ``out`` when
    given."""

    directory = Path(directory)
    table, groups = read_groups(directory)
    plan = load_stored(directory)
    targets, meta = plan.targets, _sweep_metadata(directory)
    summaries, best, series, rows, recovery, reachable, orders = _rows(
        directory, plan, table, groups
    )
    ranking = overall(rows)
    colours = method_colours(g.method.name for g in plan.groups)  # legends in ranking order
    colours = {e["method"]: colours[e["method"]] for e in ranking} | colours
    goals = counted_recovery_targets(rows)
    quantiles = {g: curve_quantiles(series, e) for g, e in best.items()}
    profiles = {("loss", t): performance_profile(best, t) for t in targets}
    profiles |= {("recovery", t): performance_profile(best, t, "recovery_seconds") for t in goals}
    document = {
        "name": meta.get("name"),
        "targets": list(targets),
        "recovery_targets": goals,
        "select": plan.select,
        "ranked_by": rule_text(plan.select, targets[0]),
        "confidence": confidence.DESCRIPTION,
        "time_charged": time_charged(table),
        "provenance": {k: v for k, v in meta.items() if k != "groups"}
        | {"created": _created(meta)},
        # chosen by validation (ratings): the held-out answer; the loss targets say nothing there
        "answers": held_out_answers(rows)
        if plan.select == "validation"
        else answers(rows, targets, goals),
        "ranking": ranking,
        "colours": colours,
        "rows": [
            jsonable({k: v for k, v in r.items() if k != "group"} | {"group": r["group"]})
            for r in rows
        ],
    }
    figures = static_figures(
        directory, document, rows=rows, best=best, quantiles=quantiles, recovery=recovery,
        profiles=profiles, orders=orders, colours=colours, reachable=reachable,
    )  # fmt: skip
    document["figures"] = figures
    write_atomic(directory / "summary.json", dumps(document, indent=1).encode())
    write_atomic(directory / "summary.csv", summary_csv(rows).encode())
    html = page.render(
        document=document,
        rows=rows,
        best=best,
        quantiles=quantiles,
        recovery=recovery,
        profiles=profiles,
        orders=orders,
        colours=colours,
        source=plan.source,
        runs=len(summaries),
        reachable=reachable,
    )
    path = directory / "report.html"
    write_atomic(path, html.encode())
    if out is not None:
        print(summary_table(rows, targets), file=out)
    return path

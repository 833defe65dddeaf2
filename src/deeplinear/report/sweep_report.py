"""Fair comparisons from a sweep: best hyperparameters, time to target, confidence intervals,
performance profiles, the summary table (terminal, ``summary.csv``, ``summary.json``) and the
report page (``page.py``: one self-contained HTML file) with its static figures for papers.

For every run: the steps, seconds and FLOPs until the loss first falls to each target (relative
to the initial loss). Seconds are what the run is charged (``time_charged``): where the sweep
measured it, step × the seconds per step of its group's best run timed alone (column
``seconds_alone``), else the run's share of its batch's wall time (batch time ÷ batch size). Per
group (axis point × method) the best learning rate is ``tuning.best_settings``' (by the sweep's
``select``), flagged when it lies on its grid's edge or the sweep extended the grid. Medians
over seeds carry a percentile-bootstrap interval (``confidence``). The performance profile
(Dolan & Moré 2002) puts each method, at its best learning rate, on every problem (axis point ×
seed): ρ(τ) is the fraction of problems it solves within τ times the fastest method's time; one
per target. A sweep of a completion or sensing problem with its truth adds the final recovery
error ‖W − M‖_F/‖M‖_F and the steps until it first falls to each recovery target (the sweep's
``recovery_targets``, default √ of its last loss target; median and interval over seeds: table,
CSV, JSON, page) and ``recovery``
(.png/.svg; a section of the page): that error per method and axis point, and the effective-rank
curves.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from deeplinear.errors import UsageError
from deeplinear.experiment.execution import build
from deeplinear.report import confidence, page
from deeplinear.report.colours import method_colours
from deeplinear.report.rows import counted_recovery_targets, point_text, shown
from deeplinear.store.directories import write_atomic
from deeplinear.store.frames import provenance
from deeplinear.store.groups import read_groups
from deeplinear.store.jsonfiles import dumps, jsonable
from deeplinear.store.results import run_series
from deeplinear.sweep import tuning
from deeplinear.sweep.core import load_stored, point_label, recovery_goals
from deeplinear.verdict import classify

DIVERGED = 1e30  # loss / initial loss above this is drawn as a gap (a log axis must end somewhere)
MEASURES = ("steps", "seconds", "flops")


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
        }
    return best


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


def axis_order(values) -> list:
    """Axis values in plotting order: numbers ascending, then anything else (``population``,
    tables and lists, by their text)."""
    unique = []
    for value in values:  # tables and lists are not hashable: keep the first of equal values
        if value not in unique:
            unique.append(value)
    values = unique

    def key(v):
        try:
            return (0, float(v), "")
        except (TypeError, ValueError):
            return (1, 0.0, str(v))

    return sorted(values, key=key)


def _point_key(point: dict, orders: dict) -> tuple:
    return tuple(orders[k].index(v) if v in orders[k] else 0 for k, v in point.items())


def axis_text(path: str, value) -> str:
    """An axis value as the group files' ``axis:<path>`` columns hold it (``sweep.point_label``)."""
    return point_label(((path, value),))[len(path) + 1 :]


def summary_rows(best, targets, orders: dict) -> list[dict]:
    """One record per best configuration (method × axis point), sorted by axis point then
    method order: medians with bootstrap intervals of steps/seconds/FLOPs to each target and of
    the final loss; the summary table, ``summary.json`` and the page read these."""
    rows = []
    for group, entry in best.items():
        runs = entry["runs"]
        row = {
            "group": group,
            "method": entry["method"],
            "point": {k: jsonable(v) for k, v in entry["point"].items()},
            "axis_point": point_text(entry["point"]),
            "learning_rate": entry["learning_rate"],
            "grid": entry["grid"],
            "edge": entry["edge"],
            "extended": entry["extended"],
            "extension": entry.get("extension"),
            "seeds": len(runs),
            "targets": [],
        }
        for t in targets:
            cell = {"target": t, "solved": int(sum(np.isfinite(r[f"steps@{t:g}"]) for r in runs))}
            for measure in MEASURES:
                m, lo, hi = confidence.median_interval([r[f"{measure}@{t:g}"] for r in runs])
                cell[measure] = {"median": m, "low": lo, "high": hi}
            row["targets"].append(cell)
        m, lo, hi = confidence.median_interval([r["final"] for r in runs])
        row["final_loss"] = {"median": m, "low": lo, "high": hi}
        row["_key"] = _point_key(entry["point"], orders)
        rows.append(row)
    rows.sort(key=lambda r: r.pop("_key"))
    return rows


def _g(value: float) -> str:
    return "inf" if value == math.inf else f"{value:.3g}"


def _interval(cell) -> str:
    if cell["low"] == cell["high"] == cell["median"]:
        return _g(cell["median"])
    return f"{_g(cell['median'])} [{_g(cell['low'])}, {_g(cell['high'])}]"


def summary_table(rows, targets) -> str:
    """The summary as aligned text for the terminal."""
    head = ["method", "axis point", "best η"]
    for t in targets:
        head += [f"steps to {t:g}", f"seconds to {t:g}"]
    head.append("final loss")
    recovering = any("final_recovery" in row for row in rows)
    goals = counted_recovery_targets(rows)
    if recovering:
        head.append("final ‖W − M‖/‖M‖")
        head += [f"steps to ‖W − M‖/‖M‖ ≤ {t:g}" for t in goals]
    lines = [head]
    for row in rows:
        rate = _g(row["learning_rate"])
        if row["edge"] in ("low", "high"):
            rate += f" (edge: {row['edge']})"
        if row["extended"]:
            rate += " (extended)"
        cells = [row["method"], row["axis_point"], rate]
        for cell in row["targets"]:
            cells += [_interval(cell["steps"]), _interval(cell["seconds"])]
        cells.append(_interval(row["final_loss"]))
        if recovering:
            cell = row.get("final_recovery")
            cells.append("—" if cell is None else _interval(cell))
            reached = row.get("recovery_targets") or [None] * len(goals)
            cells += ["—" if c is None else _interval(c["steps"]) for c in reached]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    text.append(f"medians over seeds [{confidence.DESCRIPTION}]")
    edges = sum(r["edge"] in ("low", "high") for r in rows)
    if edges:
        text.append(
            f"{edges} best learning rate(s) on the grid's edge: the optimum may lie outside the "
            "grid (widen it, or let the sweep extend it)"
        )
    return "\n".join(text)


def summary_csv(rows) -> str:
    """One line per best configuration; ``inf`` where the target was not reached."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    head = ["method", "axis_point", "learning_rate", "edge", "extended", "seeds"]
    for cell in rows[0]["targets"] if rows else ():
        t = f"{cell['target']:g}"
        head.append(f"solved@{t}")
        for measure in MEASURES:
            head += [f"{measure}@{t}", f"{measure}@{t}_low", f"{measure}@{t}_high"]
    head += ["final_loss", "final_loss_low", "final_loss_high"]
    recovering = any("final_recovery" in row for row in rows)
    goals = counted_recovery_targets(rows)
    if recovering:
        head += ["final_recovery", "final_recovery_low", "final_recovery_high"]
        for t in goals:
            head += [f"recovery_solved@{t:g}"]
            head += [f"recovery_steps@{t:g}{end}" for end in ("", "_low", "_high")]
    writer.writerow(head)
    for row in rows:
        line = [row["method"], row["axis_point"], repr(row["learning_rate"]), row["edge"] or ""]
        line += [str(row["extended"]).lower(), row["seeds"]]
        for cell in row["targets"]:
            line.append(cell["solved"])
            for measure in MEASURES:
                line += [repr(cell[measure][k]) for k in ("median", "low", "high")]
        line += [repr(row["final_loss"][k]) for k in ("median", "low", "high")]
        if recovering:
            cell = row.get("final_recovery")
            line += ["" if cell is None else repr(cell[k]) for k in ("median", "low", "high")]
            for c in row.get("recovery_targets") or [None] * len(goals):
                line.append("" if c is None else c["solved"])
                ends = ("median", "low", "high")
                line += ["" if c is None else repr(c["steps"][k]) for k in ends]
        writer.writerow(line)
    return out.getvalue()


def _save(fig, path: Path) -> None:
    """Save ``fig`` as ``path``.png and .svg (the static figures, for papers)."""
    for suffix, kwargs in ((".svg", {}), (".png", {"dpi": 100})):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=suffix[1:], **kwargs)
        write_atomic(path.parent / (path.name + suffix), buffer.getvalue())  # names hold dots
    plt.close(fig)


def _profile_figure(methods, taus, rho, target, colours, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in methods:
        ax.step(taus, rho[m], where="post", label=m, color=colours[m])
    ax.set_xscale("log")
    ax.set_xlabel("τ (time to target ÷ the fastest method's)")
    ax.set_ylabel("fraction of problems solved")
    ax.set_title(f"Performance profile, time to {target:g} of the initial loss")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    _save(fig, path)


def curve_quantiles(series, entry) -> dict:
    """Median and IQR across seeds of loss / initial loss, with the median seconds and FLOPs, at
    each recorded step of a best configuration (diverged rows are NaN: gaps)."""
    curves = [series[r["run_id"]] for r in entry["runs"]]
    length = min(len(c["loss"]) for c in curves)
    rel = np.array([c["loss"][:length] / c["loss"][0] for c in curves])
    rel[~(rel < DIVERGED)] = np.nan
    seconds = np.array([charged_seconds(c)[:length] for c in curves])
    flops = np.array(
        [c["flops"][:length] if "flops" in c else np.full(length, np.nan) for c in curves]
    )
    with warnings.catch_warnings():  # steps where every run is NaN stay NaN (not drawn)
        warnings.simplefilter("ignore", RuntimeWarning)
        q25, q50, q75 = np.nanpercentile(rel, [25, 50, 75], axis=0)
        return {
            "step": curves[0]["step"][:length].astype(float),
            "seconds": np.nanmedian(seconds, axis=0),
            "flops": np.nanmedian(flops.astype(float), axis=0),
            "q25": q25,
            "q50": q50,
            "q75": q75,
        }


def recovery_steps(curve, target: float) -> float:
    """The first recorded step at which ‖W − M‖_F/‖M‖_F ≤ ``target`` (inf if never)."""
    error = np.asarray(curve["recovery_error"], dtype=float)
    hit = np.flatnonzero(error <= target)
    return float(curve["step"][hit[0]]) if hit.size else math.inf


def recovery_cells(series, entry, goals) -> list[dict]:
    """Per recovery target: seeds that reached it and the median steps [interval] to it."""
    curves = [series[r["run_id"]] for r in entry["runs"]]
    cells = []
    for t in goals:
        steps = [recovery_steps(c, t) for c in curves]
        m, lo, hi = confidence.median_interval(steps)
        solved = int(sum(np.isfinite(steps)))
        cells.append({"target": t, "solved": solved, "steps": {"median": m, "low": lo, "high": hi}})
    return cells


def recovery_quantiles(series, entry) -> dict | None:
    """For a best configuration whose runs record the recovery error (a completion or sensing
    problem with its truth): median over seeds of ‖W − M‖_F/‖M‖_F and of the effective rank at
    each recorded step, and each seed's final recovery error; None otherwise."""
    curves = [series[r["run_id"]] for r in entry["runs"]]
    if not curves or any("recovery_error" not in c for c in curves):
        return None
    length = min(len(c["step"]) for c in curves)
    error = np.array([np.asarray(c["recovery_error"][:length], dtype=float) for c in curves])
    if not np.any(np.isfinite(error)):  # the column of another problem's probe (null here)
        return None
    rank = np.array(
        [np.asarray(c.get("effective_rank", np.full(length, np.nan))[:length], dtype=float)
         for c in curves]
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {
            "step": curves[0]["step"][:length].astype(float),
            "recovery": np.nanmedian(error, axis=0),
            "effective_rank": np.nanmedian(rank, axis=0),
            "final": [_last_finite(c["recovery_error"]) for c in curves],
        }


def _last_finite(values) -> float:
    """A run's final recovery error (inf if it diverged: its last rows are not finite)."""
    values = np.asarray(values, dtype=float)
    return float(values[-1]) if np.isfinite(values[-1]) else math.inf


def _panels(count: int, width=4.2, height=3.2, columns=3, sharey=True):
    columns = min(columns, count)
    rows = -(-count // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(width * columns, height * rows), squeeze=False, sharey=sharey
    )
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def _curves_figure(quantiles, best, points, colours, path: Path) -> None:
    """One panel per axis point; in each, every method at its best learning rate."""
    fig, axes = _panels(len(points))
    for ax, point in zip(axes, points):
        for group, entry in best.items():
            if point_text(entry["point"]) != point:
                continue
            q = quantiles[group]
            colour = colours[entry["method"]]
            label = f"{entry['method']} η={entry['learning_rate']:.3g}"
            ax.plot(q["step"], q["q50"], color=colour, label=label)
            ax.fill_between(q["step"], q["q25"], q["q75"], color=colour, alpha=0.2)
        ax.set_yscale("log")
        ax.set_title(point, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    axes[0].set_ylabel("loss / initial (median, IQR over seeds)")
    fig.tight_layout()
    _save(fig, path)


def _axis_figure(rows, axis, order, targets, colours, path: Path) -> None:
    """Each target's steps to target and the final loss against the axis value, per method at
    its best setting, medians with bootstrap intervals; with several axes, one line per method
    and point of the other axes."""
    metrics = [(f"steps to {t:g}", i, "steps") for i, t in enumerate(targets)]
    metrics.append(("final loss", None, None))
    fig, axes = _panels(len(metrics), columns=len(metrics), sharey=False)
    for ax, (title, index, measure) in zip(axes, metrics):
        lines: dict = {}
        for r in rows:
            if axis in r["point"]:
                others = point_text({k: v for k, v in r["point"].items() if k != axis})
                lines.setdefault((r["method"], others), []).append(r)
        labelled = set()
        for (method, _), chosen in lines.items():
            xs, ys, lo, hi = [], [], [], []
            for r in chosen:
                cell = r["final_loss"] if index is None else r["targets"][index][measure]
                if np.isfinite(cell["median"]):
                    xs.append(order.index(r["point"][axis]))
                    ys.append(cell["median"])
                    lo.append(cell["median"] - cell["low"])
                    hi.append(cell["high"] - cell["median"] if np.isfinite(cell["high"]) else 0)
                    if not np.isfinite(cell["high"]):  # the interval reaches "not reached"
                        ax.plot(xs[-1], ys[-1], "^", mfc="none", ms=10, color=colours[method])
            if xs:
                label = None if method in labelled else method
                labelled.add(method)
                ax.errorbar(xs, ys, yerr=[lo, hi], color=colours[method], label=label,
                            marker="o", capsize=3)  # fmt: skip
        ax.set_xticks(range(len(order)), [shown(v) for v in order])
        ax.set_yscale("log")
        ax.set_xlabel(axis)
        ax.set_title(title, fontsize=9)
        ax.grid(True, alpha=0.3)
    axes[-1].legend(fontsize=7)
    fig.suptitle(f"median over seeds, {confidence.DESCRIPTION}", fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def _recovery_figure(rows, best, recovery, points, colours, path: Path) -> None:
    """The final recovery error per method and axis point (median over seeds with its interval),
    and the effective-rank curves (median over seeds) of each method, one panel per point."""
    fig, axes = _panels(1 + len(points), sharey=False)
    ax = axes[0]
    labelled = set()
    for row in rows:
        cell = row.get("final_recovery")
        if cell is None or not np.isfinite(cell["median"]):
            continue
        x = points.index(row["axis_point"])
        high = cell["high"] - cell["median"] if np.isfinite(cell["high"]) else 0
        label = None if row["method"] in labelled else row["method"]
        labelled.add(row["method"])
        ax.errorbar([x], [cell["median"]], yerr=[[cell["median"] - cell["low"]], [high]],
                    color=colours[row["method"]], marker="o", capsize=3, label=label)  # fmt: skip
    ax.set_xticks(range(len(points)), points, rotation=20, fontsize=7)
    ax.set_yscale("log")
    ax.set_title("final ‖W − M‖_F / ‖M‖_F (median, 95% CI)", fontsize=9)
    ax.grid(True, alpha=0.3)
    if labelled:
        ax.legend(fontsize=7)
    for ax, point in zip(axes[1:], points):
        for group, entry in best.items():
            q = recovery.get(group)
            if q is None or point_text(entry["point"]) != point:
                continue
            ax.plot(q["step"], q["effective_rank"], color=colours[entry["method"]],
                    label=f"{entry['method']} η={entry['learning_rate']:.3g}")  # fmt: skip
        ax.set_title(f"effective rank of W — {point}", fontsize=9)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def _floors(plan, needed=None) -> dict:
    """(group id, seed) → the reachable minimum of that axis point's problem for that seed (only
    the pairs in ``needed`` when given: building a problem costs a least-squares solve)."""

    out = {}
    for group in plan.groups:
        for seed in group.seeds:
            if needed is not None and (group.id, seed) not in needed:
                continue
            try:
                setup = build(plan.run_config(group, seed))
            except UsageError:  # e.g. its .npz data moved since the sweep: not judged
                continue
            out[group.id, seed] = setup.problem.floor(setup.widths, setup.objective)
    return out


def _verdicts(series, runs, floors: dict, target: float) -> str:
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
    return ", ".join(f"{k} ×{n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))


def explained(directory: Path) -> dict:
    """``DIR/verdicts.json`` (``deeplinear explain DIR``) by (group, learning rate): the list of
    its verdicts; empty when the sweep was not explained."""
    path = directory / "verdicts.json"
    if not path.is_file():
        return {}
    try:
        records = json.loads(path.read_text()).get("verdicts", [])
    except (OSError, ValueError, AttributeError) as error:
        raise UsageError(
            f"{path} is not readable JSON ({error}): run deeplinear explain {directory} again"
        ) from None
    out: dict = {}
    for v in records:
        if isinstance(v, dict) and "group" in v and "learning_rate" in v:
            out.setdefault((v["group"], float(v["learning_rate"])), []).append(v)
    return out


def _sweep_metadata(directory: Path) -> dict:
    """The sweep's provenance (``frames.provenance``: name, versions, revision, groups)."""

    return provenance(directory)


def _created(meta: dict) -> str | None:
    """When the sweep's results were written: its newest group's ``created``."""
    stamps = [g.get("created") for g in (meta.get("groups") or {}).values() if isinstance(g, dict)]
    return max((s for s in stamps if isinstance(s, str)), default=meta.get("created"))


def _unreached(best, key) -> set:
    """(group, seed) of best runs that never reached the last target: the ones to judge."""
    return {(r["group"], r["seed"]) for e in best.values() for r in e["runs"] if r[key] == math.inf}


def write_report(directory: str | Path, out=None) -> Path:
    """Analyse the sweep in ``directory``; write ``report.html``, ``summary.csv``,
    ``summary.json`` and the static figures (PNG and SVG) there; print the summary table to the
    text stream ``out`` when given."""

    directory = Path(directory)
    table, groups = read_groups(directory)
    plan = load_stored(directory)
    targets = plan.targets
    meta = _sweep_metadata(directory)
    summaries = run_summaries(table, targets)
    extensions = tuning.grid_extensions(groups)
    best = best_configs(table, summaries, targets[0], plan.select, extensions)
    series = run_series(table)
    last = f"steps@{targets[-1]:g}"
    floors = _floors(plan, _unreached(best, last))
    colours = method_colours(g.method.name for g in plan.groups)
    orders = {p: [axis_text(p, v) for v in axis_order(vs)] for p, vs in plan.axes.items()}
    rows = summary_rows(best, targets, orders)
    by_group = {r["group"]: r for r in rows}
    verdicts = explained(directory)
    for group, entry in best.items():
        row = by_group[group]
        row["verdicts"] = _verdicts(series, entry["runs"], floors, targets[-1])
        row["explained"] = verdicts.get((group, float(entry["learning_rate"])), [])
        # the horizon the solved counts and the unexplained verdicts are on
        row["recorded_steps"] = max(int(series[r["run_id"]]["step"][-1]) for r in entry["runs"])
    points = list(dict.fromkeys(r["axis_point"] for r in rows))
    quantiles = {g: curve_quantiles(series, e) for g, e in best.items()}
    recovery = {g: q for g, e in best.items() if (q := recovery_quantiles(series, e))}
    goals = recovery_goals(plan)
    for group, q in recovery.items():
        m, lo, hi = confidence.median_interval(q["final"])
        by_group[group]["final_recovery"] = {"median": m, "low": lo, "high": hi}
        by_group[group]["recovery_targets"] = recovery_cells(series, best[group], goals)
    if recovery:
        _recovery_figure(rows, best, recovery, points, colours, directory / "recovery")
    profiles = [performance_profile(best, t) for t in targets]
    for t, (methods, taus, rho) in zip(targets, profiles):
        _profile_figure(methods, taus, rho, t, colours, directory / f"profile-{t:g}")
    _curves_figure(quantiles, best, points, colours, directory / "curves")
    for axis, order in orders.items():
        _axis_figure(rows, axis, order, targets, colours, directory / f"axis-{axis}")
    public = [jsonable({k: v for k, v in r.items() if k != "group"} | {"group": r["group"]})
              for r in rows]  # fmt: skip
    document = {
        "name": meta.get("name"),
        "targets": list(targets),
        "select": plan.select,
        "confidence": confidence.DESCRIPTION,
        "time_charged": time_charged(table),
        "provenance": {k: v for k, v in meta.items() if k != "groups"}
        | {"created": _created(meta)},
        "rows": public,
    }
    write_atomic(directory / "summary.json", dumps(document, indent=1).encode())
    write_atomic(directory / "summary.csv", summary_csv(rows).encode())
    html = page.render(
        document=document,
        rows=rows,
        best=best,
        quantiles=quantiles,
        recovery=recovery,
        profiles=dict(zip(targets, profiles)),
        orders=orders,
        colours=colours,
        source=plan.source,
        runs=len(summaries),
    )
    path = directory / "report.html"
    write_atomic(path, html.encode())
    if out is not None:
        print(summary_table(rows, targets), file=out)
    return path

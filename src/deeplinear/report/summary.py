"""The summary rows of a sweep report — one per best configuration (method × axis point): medians
over seeds with percentile-bootstrap intervals (``confidence``) of the steps, seconds and FLOPs to
each target and of the final loss; for a completion or sensing problem with its truth, the steps
until ‖W − M‖_F/‖M‖_F first falls to each recovery target — and their outputs: the terminal
table, ``summary.csv`` and the JSON values of ``summary.json``.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np

from deeplinear.report import confidence
from deeplinear.report.rows import counted_recovery_targets, point_text
from deeplinear.store.jsonfiles import jsonable
from deeplinear.sweep.axes import point_label
from deeplinear.sweep.tuning import HELD_OUT

MEASURES = ("steps", "seconds", "flops")


def axis_order(values) -> list:
    """Axis values in plotting order: numbers ascending, then lists of numbers (widths: by
    length, then by value), then anything else (``population``, tables, by their text)."""
    unique = []
    for value in values:  # tables and lists are not hashable: keep the first of equal values
        if value not in unique:
            unique.append(value)
    values = unique

    def key(v):
        if isinstance(v, list) and all(isinstance(x, int | float) for x in v):
            return (1, 0.0, (len(v), *v), "")  # widths: [2] < [10] < [100, 100]
        try:
            return (0, float(v), (), "")
        except (TypeError, ValueError):
            return (2, 0.0, (), str(v))

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
            "excluded": entry.get("excluded", []),
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
        for name in HELD_OUT:  # a ratings sweep: the errors at the last record
            if name in runs[0]:
                m, lo, hi = confidence.median_interval([r[name] for r in runs])
                row[name] = {"median": m, "low": lo, "high": hi}
        row["_key"] = _point_key(entry["point"], orders)
        rows.append(row)
    rows.sort(key=lambda r: r.pop("_key"))
    return rows


def recovery_cells(entry, goals) -> list[dict]:
    """Per recovery target: seeds that reached it and the median steps [interval] to it (the
    runs' ``recovery_steps@t``, ``comparison.recovery_times``)."""
    cells = []
    for t in goals:
        steps = [r[f"recovery_steps@{t:g}"] for r in entry["runs"]]
        m, lo, hi = confidence.median_interval(steps)
        solved = int(sum(np.isfinite(steps)))
        cells.append({"target": t, "solved": solved, "steps": {"median": m, "low": lo, "high": hi}})
    return cells


def _g(value: float) -> str:
    return "inf" if value == math.inf else f"{value:.3g}"


def _interval(cell) -> str:
    if cell["low"] == cell["high"] == cell["median"]:
        return _g(cell["median"])
    return f"{_g(cell['median'])} [{_g(cell['low'])}, {_g(cell['high'])}]"


def summary_table(rows, targets) -> str:
    """The summary as aligned text for the terminal."""
    head = ["rank", "method", "axis point", "best η"]
    for t in targets:
        head += [f"steps to {t:g}", f"seconds to {t:g}"]
    head.append("final loss")
    recovering = any("final_recovery" in row for row in rows)
    goals = counted_recovery_targets(rows)
    if recovering:
        head.append("final ‖W − M‖/‖M‖")
        head += [f"steps to ‖W − M‖/‖M‖ ≤ {t:g}" for t in goals]
    held = [name for name in HELD_OUT if any(name in row for row in rows)]
    head += [name.replace("_", " ").replace("rmse", "RMSE") for name in held]
    lines = [head]
    for row in rows:
        rate = _g(row["learning_rate"])
        if row["edge"] in ("low", "high"):
            rate += f" (edge: {row['edge']})"
        if row["extended"]:
            rate += " (extended)"
        rank = row.get("rank")
        cells = ["" if rank is None else f"{'★' if rank == 1 else ' '}{rank}", row["method"],
                 row["axis_point"], rate]  # fmt: skip
        for cell in row["targets"]:
            cells += [_interval(cell["steps"]), _interval(cell["seconds"])]
        cells.append(_interval(row["final_loss"]))
        if recovering:
            cell = row.get("final_recovery")
            cells.append("—" if cell is None else _interval(cell))
            reached = row.get("recovery_targets") or [None] * len(goals)
            cells += ["—" if c is None else _interval(c["steps"]) for c in reached]
        cells += [_interval(row[name]) if name in row else "—" for name in held]
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
    head = ["rank", "method", "colour", "axis_point", "learning_rate", "edge", "extended", "seeds"]
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
    held = [name for name in HELD_OUT if any(name in row for row in rows)]
    for name in held:
        head += [name, f"{name}_low", f"{name}_high"]
    writer.writerow(head)
    for row in rows:
        line = [row.get("rank", ""), row["method"], row.get("colour", ""), row["axis_point"]]
        line += [repr(row["learning_rate"]), row["edge"] or ""]
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
        for name in held:
            cell = row.get(name)
            line += ["" if cell is None else repr(cell[k]) for k in ("median", "low", "high")]
        writer.writerow(line)
    return out.getvalue()

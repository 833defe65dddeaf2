"""Who wins: per axis point, the best configurations ranked by the sweep's own selection rule,
and across points, each method's mean rank, wins and cost relative to the best per point.

Within a point the key is the one that chose each method's learning rate (``tuning.score`` on
the best rate's runs: median steps to the first target then median final loss for
``time_to_target``; median final loss for ``final_loss``; median mean log-loss then final loss
for ``auc``; median validation RMSE then final loss for ``validation``), smaller first; equal
keys share a rank (competition ranking: 1, 2, 2, 4). Across points (each a problem), a method's
**mean rank** and **wins** (points it ranks first) and its **relative cost** — the key's first
component ÷ the best method's at that point — summarised by the median and the worst over points
(inf where it never got there; undefined where no method did, or the best's cost is 0). A sweep
chosen by validation error keeps one test error per method, at its best validation
(``selected_by_validation``).
"""

from __future__ import annotations

import math

import numpy as np

from deeplinear.sweep import tuning

RULES = {
    "time_to_target": "median steps to {target:g} (then final loss)",
    "final_loss": "median final loss",
    "auc": "median mean log10(loss / initial) (then final loss)",
    "validation": "median validation RMSE at the last record (then final loss)",
}


def rule_text(select: str, target: float) -> str:
    """The ranking rule in words (``select`` of the sweep, its first target)."""
    return RULES[select].format(target=target)


def rank_rows(rows, best, select: str, target: float) -> None:
    """Set ``rank`` (1 = winner) and ``score`` (the key's first component) on each summary row,
    per axis point."""
    keys = {r["group"]: tuning.score(best[r["group"]]["runs"], select, target) for r in rows}
    for r in rows:
        r["score"] = keys[r["group"]][0]
    for point in dict.fromkeys(r["axis_point"] for r in rows):
        here = [r for r in rows if r["axis_point"] == point]
        for r in here:
            r["rank"] = 1 + sum(_before(keys[o["group"]], keys[r["group"]]) for o in here)


def _before(a: tuple, b: tuple) -> bool:
    """Whether key ``a`` ranks strictly before ``b`` (NaN last)."""
    a = tuple(math.inf if math.isnan(x) else x for x in a)
    b = tuple(math.inf if math.isnan(x) else x for x in b)
    return a < b


def overall(rows) -> list[dict]:
    """Per method (best first by mean rank, then wins): points, mean rank, wins, and the median
    and worst relative cost over the points where it is defined."""
    points = list(dict.fromkeys(r["axis_point"] for r in rows))
    by_method: dict[str, dict] = {}
    for point in points:
        here = [r for r in rows if r["axis_point"] == point]
        best = min(r["score"] for r in here)
        for r in here:
            entry = by_method.setdefault(r["method"], {"ranks": [], "relative": []})
            entry["ranks"].append(r["rank"])
            if math.isfinite(best) and best > 0:
                entry["relative"].append(r["score"] / best)
    out = []
    for method, entry in by_method.items():
        relative = np.asarray(entry["relative"], dtype=float)
        out.append(
            {
                "method": method,
                "points": len(entry["ranks"]),
                "mean_rank": float(np.mean(entry["ranks"])),
                "wins": sum(rank == 1 for rank in entry["ranks"]),
                "relative_median": float(np.median(relative)) if relative.size else None,
                "relative_worst": float(np.max(relative)) if relative.size else None,
            }
        )
    out.sort(key=lambda e: (e["mean_rank"], -e["wins"], e["method"]))
    return out


def selected_by_validation(rows) -> None:
    """A ratings sweep chosen by validation error: per method, the one row (axis point) whose
    median validation RMSE is lowest is ``selected``; the test error of every other row is
    removed, so nothing downstream can choose by it (no leakage)."""
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method and "validation_rmse" in r]
        if not mine:
            continue
        best = min(mine, key=lambda r: _finite_or_inf(r["validation_rmse"]["median"]))
        for r in mine:
            r["selected"] = r is best
            if r is not best:
                r.pop("test_rmse", None)


def _finite_or_inf(value) -> float:
    return value if value is not None and math.isfinite(value) else math.inf

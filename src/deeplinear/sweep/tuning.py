"""Tuning: per group (axis point × method with its hyperparameters) the best learning rate, and
whether it sits on the edge of the grid it was chosen from. Pure: reads Arrow tables, no JAX.

For every run: the final loss, the mean log-loss (``auc``), whether it ``diverged`` (some loss
not finite) and the steps, seconds and FLOPs until it reached each target t and stayed there
(relative to the initial loss: the first row i with loss_j ≤ t · loss₀ for every j ≥ i; inf if
none). A run that touches the target and rises back has not reached it; its first crossing
(the first row with loss ≤ t · loss₀) is kept as ``first_crossing@t`` (steps). Seconds are the
run's share of its batch's wall time (``seconds / batch_size``) and, where the sweep measured it
(``seconds_alone``), the time of the run alone.

Per group, a rate at which some seed diverged is not eligible when another rate had no
divergence (if every rate diverged somewhere, only the rates with the fewest divergences are).
Among the eligible rates the best minimises the median across seeds of

- ``time_to_target``: (steps to the target, final loss) — ties on steps broken by the final loss;
- ``final_loss``: the final loss (a diverged run's is +inf);
- ``auc``: (mean log10 of loss / loss₀, final loss),
- ``validation``: (the validation RMSE at the last record, final loss) — a ratings run's
  held-out error (the test error is never used to choose),

lexicographically, the smaller rate winning an exact tie. The best is on the grid's ``edge``
("low"/"high") when it is the grid's smallest/largest rate: the optimum may lie beyond it, so
the comparison is not tuned there (``sweep``'s ``extend_grids`` extends such grids). A best
rate whose neighbour in the grid is not eligible is bounded by divergence (``limit``: "diverged
beyond"): that neighbour is the stability limit, and the extension stops there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from deeplinear.diagnostics.held_out import RMSE_COLUMNS
from deeplinear.store.results import run_series

SELECT = ("time_to_target", "final_loss", "auc", "validation")  # how a best rate is chosen
HELD_OUT = RMSE_COLUMNS  # a ratings run's errors on its train, validation and test ratings
EDGES = ("low", "high", "single")


def _first(values, mask) -> float:
    hit = np.flatnonzero(mask)
    return float(values[hit[0]]) if hit.size else np.inf


def _stays(mask) -> np.ndarray:
    """Rows from which ``mask`` holds to the end of the record: all(mask[i:]) per row i."""
    mask = np.asarray(mask, dtype=bool)
    return np.logical_and.accumulate(mask[::-1])[::-1]


def _final(series: dict) -> float:
    """The run's reported final loss (column ``final_loss``, the final weights' double-double
    loss near convergence), else its last float64 loss (a table without the column)."""
    stored = series.get("final_loss")
    if stored is not None and stored[-1] is not None and not np.isnan(stored[-1]):
        return float(stored[-1])
    return float(series["loss"][-1])


def _last_finite(values) -> float:
    """The last recorded value (inf where it is not finite: a diverged run)."""
    value = float(np.asarray(values, dtype=np.float64)[-1])
    return value if np.isfinite(value) else np.inf


def _area(loss) -> float:
    """Mean log10 of the loss relative to its start (inf if the run diverged)."""
    if not np.all(np.isfinite(loss)):
        return np.inf
    return float(np.mean(np.log10(np.maximum(loss / loss[0], 1e-300))))


def run_summaries(table, targets) -> list[dict]:
    """One row per run: identity, final loss, ``auc``, ``diverged`` and (steps, seconds,
    FLOPs) until each target is reached for good (``first_crossing@t``: steps to its first
    touch); ``seconds_alone@t`` too where the table has the ``seconds_alone`` column."""
    out = []
    for series in run_series(table).values():
        loss = series["loss"]
        row = {
            "run_id": series["run_id"][0],
            "group": series["group"][0],
            "method": series["method"][0],
            "learning_rate": float(series["learning_rate"][0]),
            "seed": int(series["seed"][0]),
            "final": _final(series),
            "point": {k[5:]: series[k][0] for k in series if k.startswith("axis:")},
            "auc": _area(loss),
            "diverged": bool(not np.all(np.isfinite(loss))),
        }
        for name in HELD_OUT:  # a ratings run: its errors at the last record (NaN if absent)
            if name in series:
                row[name] = _last_finite(series[name])
        alone = series.get("seconds_alone")
        if alone is not None and not np.isfinite(np.asarray(alone, dtype=np.float64)).all():
            alone = None  # a group file written before the sweep measured it
        for target in targets:
            below = loss <= target * loss[0]  # NaN compares False: never below
            row[f"first_crossing@{target:g}"] = _first(series["step"], below)
            mask = _stays(below)  # reached and stayed
            row[f"steps@{target:g}"] = _first(series["step"], mask)
            # a batch's wall time is shared by its members: charge each run its share
            row[f"seconds@{target:g}"] = _first(series["seconds"] / series["batch_size"], mask)
            row[f"flops@{target:g}"] = (
                _first(series["flops"], mask) if "flops" in series else np.inf
            )
            if alone is not None:
                row[f"seconds_alone@{target:g}"] = _first(np.asarray(alone, np.float64), mask)
        out.append(row)
    return out


def score(rows, select: str, target: float) -> tuple:
    """The median-across-seeds key that ``select`` minimises, for the runs of one rate (the
    report ranks methods by the same key)."""
    finals = float(np.median([r["final"] if np.isfinite(r["final"]) else np.inf for r in rows]))
    if select == "final_loss":
        return (finals,)
    if select == "auc":
        return (float(np.median([r["auc"] for r in rows])), finals)
    if select == "validation":  # held-out error at the end of the run, never the test error
        return (float(np.median([r.get("validation_rmse", np.inf) for r in rows])), finals)
    return (float(np.median([r[f"steps@{target:g}"] for r in rows])), finals)


def best_configs(summaries, target, select: str = "time_to_target") -> dict:
    """Per group id, the learning rate that is best by ``select`` (median across seeds):
    ``{"learning_rate", "runs", "method", "point"}`` (``best_settings`` adds the grid's edge)."""
    best = {}
    for group in sorted({r["group"] for r in summaries}):
        rows = [r for r in summaries if r["group"] == group]
        rate, *_ = _choose(rows, select, target)
        chosen = [r for r in rows if r["learning_rate"] == rate]
        best[group] = {
            "learning_rate": rate,
            "runs": chosen,
            "method": chosen[0]["method"],
            "point": chosen[0]["point"],
        }
    return best


def divergences(rows) -> dict[float, int]:
    """Per learning rate (ascending), how many of its runs (seeds) diverged."""
    rates = sorted({r["learning_rate"] for r in rows})
    return {rate: sum(r["diverged"] for r in rows if r["learning_rate"] == rate) for rate in rates}


def eligible(diverged: Mapping[float, int]) -> list[float]:
    """The rates that may be chosen: those with no diverged run, or, if every rate diverged
    somewhere, those with the fewest diverged runs."""
    fewest = min(diverged.values())
    return [rate for rate, count in diverged.items() if count == fewest]


def _choose(rows, select: str, target: float) -> tuple[float, tuple, list[float], dict]:
    """(best rate, its score, the sorted grid, runs diverged per rate) of one group's run
    summaries: the best score among the eligible rates."""
    diverged = divergences(rows)
    rates = list(diverged)
    scores = {rate: score([r for r in rows if r["learning_rate"] == rate], select, target)
              for rate in eligible(diverged)}  # fmt: skip
    rate = min(scores, key=scores.__getitem__)  # the first (smallest) of equal scores
    return rate, scores[rate], rates, diverged


def limit_of(rate: float, diverged: Mapping[float, int]) -> str | None:
    """ "diverged beyond" when a grid neighbour of ``rate`` is not eligible (it diverged on
    more seeds than the eligible rates): the best is bounded by the stability limit."""
    rates = sorted(diverged)
    allowed = set(eligible(diverged))
    i = rates.index(rate)
    neighbours = rates[max(i - 1, 0) : i] + rates[i + 1 : i + 2]
    return "diverged beyond" if any(n not in allowed for n in neighbours) else None


def edge_of(rate: float, grid) -> str | None:
    """ "single" for a one-value grid, "low"/"high" for its smallest/largest value, else None."""
    grid = sorted(grid)
    if len(grid) == 1:
        return "single"
    if rate == grid[0]:
        return "low"
    if rate == grid[-1]:
        return "high"
    return None


@dataclass(frozen=True)
class Best:
    """The best learning rate of one group and where it lies in the grid it was chosen from.

    ``metric`` is the first component of the selection key (median steps to the target, median
    final loss or median ``auc``); ``grid`` every rate the group ran, ascending (the sweep file's
    grid and any rates the sweep added); ``edge`` as ``edge_of``; ``extended``: the sweep
    extended this group's grid (``extension`` is its record: ``added``, ``stopped``);
    ``diverged``: how many seeds diverged at the chosen rate (0 unless every rate diverged
    somewhere); ``excluded``: the rates not eligible (some seed diverged); ``limit``:
    "diverged beyond" when a neighbouring rate is excluded (as ``limit_of``), else None.
    """

    group: str
    point: dict
    method: str
    learning_rate: float
    metric: float
    select: str
    target: float
    grid: tuple[float, ...]
    edge: str | None
    extended: bool
    runs: tuple[dict, ...]
    extension: dict | None = None
    diverged: int = 0
    excluded: tuple[float, ...] = ()
    limit: str | None = None


def best_settings(
    table, target: float, select: str = "time_to_target", extensions: Mapping | None = None
) -> list[Best]:
    """One ``Best`` per group of ``table`` (a sweep's rows, e.g. ``sweep.read``), in group
    order. ``extensions``: group id → its ``grid_extension`` record (the group files' metadata,
    ``grid_extensions``); a group is ``extended`` when its record added rates."""
    if select not in SELECT:
        raise ValueError(f"select must be one of {', '.join(SELECT)}, got {select!r}")
    summaries = run_summaries(table, [target])
    extensions = extensions or {}
    out = []
    for group in sorted({r["group"] for r in summaries}):
        rows = [r for r in summaries if r["group"] == group]
        rate, key, rates, diverged = _choose(rows, select, target)
        record = extensions.get(group)
        allowed = set(eligible(diverged))
        out.append(
            Best(
                group=group,
                point=rows[0]["point"],
                method=rows[0]["method"],
                learning_rate=rate,
                metric=key[0],
                select=select,
                target=target,
                grid=tuple(rates),
                edge=edge_of(rate, rates),
                extended=bool(record and record.get("added")),
                runs=tuple(r for r in rows if r["learning_rate"] == rate),
                extension=record,
                diverged=diverged[rate],
                excluded=tuple(r for r in rates if r not in allowed),
                limit=limit_of(rate, diverged),
            )
        )
    return out


def grid_extensions(metadata: Mapping[str, dict]) -> dict[str, dict]:
    """Group id → ``grid_extension`` record, from each group file's metadata (as
    ``sweep.read_groups`` returns it); groups without one are left out."""
    return {
        group: held["grid_extension"]
        for group, held in metadata.items()
        if isinstance(held, dict) and isinstance(held.get("grid_extension"), dict)
    }

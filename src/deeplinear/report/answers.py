"""The answer first: one sentence per axis point and target, read from the same summary rows
as the table (their solved counts, median steps, horizons, grids, verdicts and the verdicts of
``explain``), so the sentence and the table cannot disagree.

A sentence lists the methods in rank order (``ranking``); methods with the same outcome share a
clause ("lm and als reach it on all 10 seeds in 10 steps (median)"). A clause says how many
seeds reached the target and stayed below it within the recorded steps and, where some did not,
why: the verdicts of ``explain`` when the sweep was explained (the runs continued, with the
median ETA over seeds where it is reliable, as the verdicts quote one), else the verdicts
of the recorded steps. For a completion or sensing sweep with recovery targets there is one
sentence per recovery target too (‖W − M‖_F/‖M‖_F: no verdict, the count and the steps).
"""

from __future__ import annotations

import math

import numpy as np

from deeplinear.verdict import reliable_eta


def _steps(value: float) -> str:
    return f"{value:,.0f}" if value < 1e6 else f"{value:.2g}"


def _label(row) -> str:
    rates = len(row.get("grid") or ())
    return row["method"] + (f" (tuned over {rates} rates)" if rates > 1 else "")


def _outcome(solved: int, seeds: int, median: float, horizon: int, plural: bool) -> str:
    es = "" if plural else "es"
    if solved == seeds:
        where = "" if seeds == 1 else f" on all {seeds} seeds"
        median_word = "" if seeds == 1 else " (median)"
        steps = "step" if median == 1 else "steps"
        return f"reach{es} it{where} in {_steps(median)} {steps}{median_word}"
    if solved:
        return f"reach{es} it on {solved} of {seeds} seeds within {horizon:,} steps"
    return f"do{es} not reach it within {horizon:,} steps"


def _eta(records) -> str:
    """The median ETA over the records' seeds, where every interval is one the verdicts quote
    (``verdict.reliable_eta``: finite, within ×100 and 1e10 steps)."""
    mids = []
    for record in records:
        eta = record.get("eta_steps")
        if not eta or not all(isinstance(v, int | float) and math.isfinite(v) for v in eta):
            return ""
        low, high = max(float(eta[0]), 1.0), max(float(eta[-1]), 1.0)
        if not reliable_eta(low, high):
            return " (no reliable ETA)"
        mids.append(math.sqrt(low * high))
    return f" (≈{float(np.median(mids)):.2g} more steps)" if mids else ""


def _counted(kinds: dict, total: int) -> str:
    parts = []
    for kind, n in kinds.items():
        parts.append(f"{kind} on {'all ' if n == total > 1 else ''}{n}")
    return ", ".join(parts)


def _judgement(row, solved: int) -> str:
    """Why the seeds that did not reach the target did not: explain's verdicts (the runs
    continued), else the verdicts on the recorded steps; empty when all did and explain found
    nothing else."""
    records = row.get("explained") or []
    if records:
        kinds: dict = {}
        for record in records:
            kinds.setdefault(record.get("kind"), []).append(record)
        if set(kinds) == {"converged"} and solved == row["seeds"]:
            return ""
        words = [
            f"{kind} on {'all ' if len(rs) == len(records) > 1 else ''}{len(rs)}"
            + (_eta(rs) if kind not in ("converged", "unstable", "diverged") else "")
            for kind, rs in kinds.items()
        ]
        return "; continued by explain: " + ", ".join(words)
    if solved == row["seeds"]:
        return ""
    kinds = {k: n for k, n in (row.get("verdict_counts") or {}).items()
             if not k.startswith("reached")}  # fmt: skip
    if not kinds:
        return ""
    return f" (by step {row.get('recorded_steps', 0):,}: {_counted(kinds, sum(kinds.values()))})"


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _sentence(here, goal: str, cells) -> dict:
    """The sentence for one point and goal; ``cells(row)`` gives (solved, median steps,
    judgement) of a row."""
    clauses: list[dict] = []
    for row in sorted(here, key=lambda r: (r["rank"], r["method"])):
        solved, median, judgement = cells(row)
        horizon = int(row.get("recorded_steps") or 0) if solved < row["seeds"] else 0
        key = (solved, row["seeds"], median if solved == row["seeds"] else 0, horizon, judgement)
        same = next((c for c in clauses if c["key"] == key), None)
        if same is not None:
            same["methods"].append(row["method"])
            same["labels"].append(_label(row))
            continue
        clauses.append({"key": key, "methods": [row["method"]], "labels": [_label(row)]})
    texts = []
    for c in clauses:
        solved, seeds, median, horizon, judgement = c.pop("key")
        plural = len(c["methods"]) > 1
        c["solved"], c["seeds"] = solved, seeds
        c["text"] = (
            f"{_join(c.pop('labels'))} {_outcome(solved, seeds, median, horizon, plural)}"
            f"{judgement}"
        )
        texts.append(c["text"])
    point = here[0]["axis_point"]
    prefix = "" if point == "base" else f"{point}, "
    winner = [r["method"] for r in here if r["rank"] == 1]
    body = f"{goal}: " + "; ".join(texts) + "."
    return {"point": point, "goal": goal, "winner": winner, "clauses": clauses,
            "sentence": body, "text": prefix + body}  # fmt: skip


def answers(rows, targets, recovery_targets=()) -> list[dict]:
    """One sentence (``text``, with its ``clauses`` and ``winner``) per axis point and target:
    the loss targets (relative to the initial loss), then the recovery targets."""
    out = []
    points = list(dict.fromkeys(r["axis_point"] for r in rows))
    for point in points:
        here = [r for r in rows if r["axis_point"] == point]
        for i, t in enumerate(targets):

            def loss_cell(row, i=i):
                cell = row["targets"][i]
                solved = cell["solved"]
                return solved, cell["steps"]["median"], _judgement(row, solved)

            sentence = _sentence(here, f"loss ≤ {t:g} × initial", loss_cell)
            out.append(sentence | {"target": t, "measure": "loss"})
        for j, t in enumerate(recovery_targets):

            def recovery_cell(row, j=j):
                cells = row.get("recovery_targets") or []
                if j >= len(cells):
                    return 0, math.inf, ""
                return cells[j]["solved"], cells[j]["steps"]["median"], ""

            sentence = _sentence(here, f"‖W − M‖_F/‖M‖_F ≤ {t:g}", recovery_cell)
            out.append(sentence | {"target": t, "measure": "recovery"})
    return out


def _rmse(cell) -> str:
    low, high = cell["low"], cell["high"]
    if low == high == cell["median"]:
        return f"{cell['median']:.4f}"
    return f"{cell['median']:.4f} [{low:.4f}, {high:.4f}]"


def held_out_answers(rows) -> list[dict]:
    """A ratings sweep chosen by validation error (``ranking.selected_by_validation``): per
    method, where its validation RMSE is lowest and the test RMSE there — the only test error
    the report shows."""
    out = []
    for row in rows:
        if not row.get("selected") or "test_rmse" not in row:
            continue
        seeds = "" if row["seeds"] == 1 else f", medians over {row['seeds']} seeds"
        text = (
            f"{row['method']}: the lowest validation RMSE, {_rmse(row['validation_rmse'])}, is "
            f"at {row['axis_point']} (η = {row['learning_rate']:.3g}); the test RMSE there is "
            f"{_rmse(row['test_rmse'])}{seeds}{_held_out_verdicts(row)}."
        )
        out.append({"point": row["axis_point"], "goal": "held-out error", "measure": "held-out",
                    "target": None, "winner": [row["method"]], "clauses": [], "sentence": text,
                    "text": text})  # fmt: skip
    return out


def _held_out_verdicts(row) -> str:
    """What explain's held-out verdicts say of the row's seeds (empty when not explained)."""
    kinds: dict = {}
    for record in row.get("explained") or []:
        held = record.get("held_out") if isinstance(record, dict) else None
        if isinstance(held, dict) and held.get("kind"):
            kinds[held["kind"]] = kinds.get(held["kind"], 0) + 1
    if not kinds:
        return ""
    return "; continued by explain, the held-out error: " + _counted(kinds, sum(kinds.values()))

"""The report page's tables: the summary ranked within each axis point (sortable and filterable
by the page's script: each cell's ``data-sort`` key), the ranking across points, the answer
sentences, and the cells' wording (intervals, verdicts on their horizon, grid extensions)."""

from __future__ import annotations

import html
import json
import math

from deeplinear.report.rows import counted_recovery_targets


def _verdict_cell(row) -> str:
    """The verdicts of a row's seeds, on the horizon they are on: the recorded steps, or the
    runs continued by ``explain`` (an Adam that reached a target within the sweep's steps can be
    unstable once continued: both are true, on different horizons)."""
    if not row.get("explained"):
        return html.escape(f"within {_horizon(row)}: {row['verdicts']}")
    kinds: dict = {}
    for v in row["explained"]:
        kinds[v.get("kind")] = kinds.get(v.get("kind"), 0) + 1
    first = row["explained"][0]
    evidence = first.get("evidence")
    if not isinstance(evidence, str):
        evidence = json.dumps(evidence, indent=1, default=str)
    counts = ", ".join(f"{k} ×{n}" for k, n in kinds.items())
    return (
        f"continued by explain: {html.escape(counts)}"
        f"<br><b>{html.escape(str(first.get('headline', '')))}</b>"
        f"<details><summary>evidence (seed {html.escape(str(first.get('seed')))})</summary>"
        f"<pre>{html.escape(evidence)}</pre></details>"
    )


def _horizon(row) -> str:
    steps = row.get("recorded_steps")
    return "the recorded steps" if steps is None else f"{steps:,} steps"


def _number(value) -> str:
    """A cell's sort key for the page's script: a number (inf sorts last), or empty."""
    if value is None:
        return ""
    return "Infinity" if value == math.inf else repr(float(value))


def _td(content: str, key=None) -> str:
    sort = "" if key is None else f" data-sort='{_number(key)}'"
    return f"<td{sort}>{content}</td>"


def summary_html(rows, targets) -> str:
    """The summary table, ranked within each axis point (★ the winner), with the sort keys the
    page's script sorts by (click a column) and filters (the box above it)."""
    head = ["rank", "method", "axis point", "best η"]
    for t in targets:
        head += [f"solved @{t:g} within the recorded steps", "median steps [95% CI]",
                 "median s [95% CI]", "median FLOPs"]  # fmt: skip
    head += ["final loss [95% CI]"]
    recovering = any("final_recovery" in r for r in rows)
    goals = counted_recovery_targets(rows)
    if recovering:
        head.append("final ‖W − M‖/‖M‖ [95% CI]")
        head += [f"steps to ‖W − M‖/‖M‖ ≤ {t:g} [95% CI]" for t in goals]
    held = [name for name in ("validation_rmse", "test_rmse") if any(name in r for r in rows)]
    head += [name.replace("_rmse", " RMSE [95% CI]") for name in held]
    head.append("verdicts across seeds")
    titles = "".join(f"<th title='click to sort'>{html.escape(h)}</th>" for h in head)
    lines = [f"<thead><tr>{titles}</tr></thead>"]
    for r in rows:
        rate = f"{r['learning_rate']:.3g}"
        flag = {"low": "low edge", "high": "high edge"}.get(r["edge"])
        rate_cell = html.escape(rate)
        if flag:
            rate_cell += f" <span class='edge' title='best on the grid's edge'>⚠ {flag}</span>"
        if r["extended"]:
            rate_cell += f" <span class='ext'>({html.escape(_extension(r))})</span>"
        rank = r.get("rank")
        star = "★ " if rank == 1 else ""
        swatch = f"<span class='swatch' style='background:{r.get('colour') or '#888'}'></span>"
        cells = [_td(f"{star}{rank}", rank), _td(swatch + html.escape(r["method"])),
                 _td(html.escape(r["axis_point"])), _td(rate_cell, r["learning_rate"])]  # fmt: skip
        for cell in r["targets"]:
            solved = f"{cell['solved']}/{r['seeds']} within {_horizon(r)}"
            cells += [_td(html.escape(solved), cell["solved"]),
                      _td(_ci(cell["steps"]), cell["steps"]["median"]),
                      _td(_ci(cell["seconds"]), cell["seconds"]["median"]),
                      _td(html.escape(f"{cell['flops']['median']:.4g}"),
                          cell["flops"]["median"])]  # fmt: skip
        cells.append(_td(_ci(r["final_loss"]), r["final_loss"]["median"]))
        if recovering:
            final = r.get("final_recovery")
            cells.append(_td("—") if final is None else _td(_ci(final), final["median"]))
            reached = r.get("recovery_targets") or [None] * len(goals)
            cells += [
                _td("—") if c is None
                else _td(f"{c['solved']}/{r['seeds']}: {_ci(c['steps'])}", c["steps"]["median"])
                for c in reached
            ]  # fmt: skip
        for name in held:
            cell = r.get(name)
            cells.append(_td("—") if cell is None else _td(_ci(cell), cell["median"]))
        cells.append(_td(_verdict_cell(r)))
        winner = " class='winner'" if rank == 1 else ""
        lines.append(f"<tr{winner}>" + "".join(cells) + "</tr>")
    box = "<input id='filter' type='search' placeholder='filter rows (method, point, verdict…)'>"
    return box + _sortable("summary", lines)


def ranking_table(ranking) -> str:
    """Across axis points: each method's mean rank, wins and cost relative to the best."""

    def relative(value):
        return "—" if value is None else ("inf" if value == math.inf else f"×{value:.3g}")

    head = ["method", "axis points", "mean rank", "wins", "median cost ÷ best",
            "worst cost ÷ best"]  # fmt: skip
    lines = ["<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead>"]
    for e in ranking:
        cells = [_td(html.escape(e["method"])), _td(str(e["points"]), e["points"]),
                 _td(f"{e['mean_rank']:.2f}", e["mean_rank"]), _td(str(e["wins"]), e["wins"]),
                 _td(relative(e["relative_median"]), e["relative_median"]),
                 _td(relative(e["relative_worst"]), e["relative_worst"])]  # fmt: skip
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return _sortable("ranking", lines)


def _sortable(name: str, lines: list[str]) -> str:
    """A table the page's script sorts: its head line, then its rows in a tbody."""
    return (
        f"<table id='{name}' class='sortable'>{lines[0]}<tbody>{''.join(lines[1:])}</tbody></table>"
    )


def answer_list(answers) -> str:
    """The answer sentences: one item per axis point, one sentence per target in it."""
    points: dict = {}
    for a in answers:
        points.setdefault(a["point"], []).append(a)
    items = []
    for point, said in points.items():
        head = "" if point == "base" else f"<b>{html.escape(point)}</b> — "
        sentences = " ".join(
            f"<span class='answer' data-goal='{html.escape(a['goal'], quote=True)}'>"
            f"{html.escape(a['sentence'])}</span>"
            for a in said
        )
        items.append(f"<li data-point='{html.escape(point, quote=True)}'>{head}{sentences}</li>")
    return "<ul id='answers'>" + "".join(items) + "</ul>"


def _extension(row) -> str:
    """How the sweep extended a grid: the rates it added, on which side, why it stopped."""
    record = row.get("extension") or {}
    added = ", ".join(f"{a:.3g}" for a in record.get("added") or [])
    side = f" on the {record['side']} side" if record.get("side") else ""
    stopped = f"; stopped: {record['stopped']}" if record.get("stopped") else ""
    if record.get("stopped") == "diverged":
        stopped = "; stopped: " + _diverged(row, record.get("added") or [])
    return f"grid extended{side}: +{added}{stopped}" if added else "grid extended"


def _diverged(row, added) -> str:
    """Which rate bounds the best: the neighbour that diverged, and whether the extension added
    it or the sweep file's grid had it (the added rates need not be the ones that diverged)."""
    grid, best = sorted(row.get("grid") or []), row["learning_rate"]
    excluded = set(row.get("excluded") or [])
    i = grid.index(best) if best in grid else None
    near = [] if i is None else [r for r in grid[max(i - 1, 0) : i + 2] if r in excluded]
    if not near:
        return "diverged"
    words = [f"η = {r:.3g} ({'added' if r in added else 'in the grid'}) diverges" for r in near]
    return "stability limit: " + ", ".join(words)


def _ci(cell) -> str:
    def g(v):
        return "inf" if not math.isfinite(v) else f"{v:.4g}"

    if cell["low"] == cell["high"] == cell["median"]:  # one seed, or all seeds equal
        return html.escape(g(cell["median"]))
    return html.escape(f"{g(cell['median'])} [{g(cell['low'])}, {g(cell['high'])}]")

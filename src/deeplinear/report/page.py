"""The report page: one self-contained HTML file (no network when viewed) that opens with the
answer (one sentence per axis point and target, ``answers``), then the summary table ranked by
the sweep's selection rule (sortable, filterable; ``table``), the ranking across axis points,
and interactive charts (``specs``) — zoom and pan (drag, wheel), hover, the curves' x-axis
(steps, seconds, FLOPs) and a log/linear x switch, log first where the methods' step counts
differ by more than ``LOG_X_SPREAD`` — with the static figures for papers and the provenance.

Charts are Vega-Lite specifications built with Altair and drawn by vega-embed, whose JavaScript
(Vega, Vega-Lite, vega-embed: about 0.9 MB) is inlined from ``vl_convert.javascript_bundle``.
Chosen over Plotly (``include_plotlyjs=True`` inlines plotly.min.js: 4.8 MB, above the 3 MB a
300-run report may weigh) by page size: the seed_fair report (300 runs) weighs ~1.2 MB with
Vega-Lite. Building the bundle takes ~4 s, so it is kept in the user's cache folder
(``$XDG_CACHE_HOME/deeplinear``, else ``~/.cache/deeplinear``) per vl-convert and Vega-Lite
version; later reports read it in milliseconds. Data are written once (``DATA``) and shared by
every chart; the curves' variants (x field × scale) are small specifications that name them.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path

import altair as alt
import numpy as np

from deeplinear.core.words import counted
from deeplinear.report import confidence
from deeplinear.report.rows import point_text, shown
from deeplinear.report.specs import (
    X_FIELDS,
    axis_spec,
    curves_spec,
    profile_spec,
    rank_spec,
    recovery_spec,
)
from deeplinear.report.sweep_figures import axis_metrics, metric_cell
from deeplinear.report.table import answer_list, ranking_table, summary_html
from deeplinear.store.directories import write_atomic

SIGNIFICANT = 5  # digits kept in the page's data (the CSV/JSON summaries keep all)
LOG_X_SPREAD = 30.0  # log x first when the methods' step counts differ by more than this


def _round(value):
    if isinstance(value, float | np.floating):
        value = float(value)
        return float(f"{value:.{SIGNIFICANT}g}") if math.isfinite(value) else None
    return value


def _records(columns: dict) -> list[dict]:
    names = list(columns)
    return [
        {n: _round(v) for n, v in zip(names, values)}
        for values in zip(*(columns[n] for n in names))
    ]


def _recovery_data(rows, best, recovery) -> tuple[list[dict], list[dict]]:
    """(final recovery error per best configuration, effective-rank curves) for the page."""
    finals = []
    for r in rows:
        cell = r.get("final_recovery")
        if cell is None or not math.isfinite(cell["median"]):
            continue
        finals.append(
            {"method": r["method"], "point": r["axis_point"], "eta": _round(r["learning_rate"])}
            | {k: _round(v) for k, v in cell.items()}
        )
    curves = []
    for group, q in recovery.items():
        entry = best[group]
        n = len(q["step"])
        columns = {"method": [entry["method"]] * n, "eta": [entry["learning_rate"]] * n,
                   "point": [point_text(entry["point"])] * n, "step": list(q["step"]),
                   "effective_rank": list(q["effective_rank"]),
                   "recovery": list(q["recovery"])}  # fmt: skip
        curves += [c for c in _records(columns) if c["effective_rank"] is not None]
    return finals, curves


def _cache_folder() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "deeplinear"


def vega_script() -> str:
    """vega-embed with Vega and Vega-Lite, bundled by vl-convert, from the user's cache."""
    import vl_convert

    version = alt.SCHEMA_VERSION.lstrip("v").rsplit(".", 1)[0]  # "6.4"
    path = _cache_folder() / f"vega-embed-vl{version}-vlc{vl_convert.__version__}.js"
    try:
        return path.read_text()
    except OSError:
        pass
    script = vl_convert.javascript_bundle(vl_version=version)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, script.encode())
    except OSError:  # a read-only home: the next report builds it again
        pass
    return script


def _curves_data(best, quantiles, reachable) -> list[dict]:
    rows = []
    for group, entry in best.items():
        q = quantiles[group]
        n = len(q["step"])
        label = point_text(entry["point"])
        columns = {"method": [entry["method"]] * n, "eta": [entry["learning_rate"]] * n,
                   "point": [label] * n, "floor": [reachable.get(label)] * n,
                   **{k: list(v) for k, v in q.items()}}  # fmt: skip
        rows += [r for r in _records(columns) if r["q50"] is not None]
    return rows


def log_x_first(quantiles, target: float) -> bool:
    """Whether the curves open on a log step axis: the steps each best configuration needs (to
    ``target``, else all it recorded) differ by more than ``LOG_X_SPREAD`` across methods."""
    needed = []
    for q in quantiles.values():
        below = np.flatnonzero(np.asarray(q["q50"]) <= target)
        steps = np.asarray(q["step"])
        if steps.size:
            needed.append(max(float(steps[below[0]] if below.size else steps[-1]), 1.0))
    return bool(needed) and max(needed) / min(needed) > LOG_X_SPREAD


def _axis_data(rows, orders, metrics) -> list[dict]:
    out = []
    for axis in orders:
        for r in rows:
            if axis not in r["point"]:
                continue
            others = point_text({k: v for k, v in r["point"].items() if k != axis})
            for title, _, key in metrics:
                cell = metric_cell(r, key)
                if cell is None or not math.isfinite(cell["median"]):
                    continue
                if key.startswith("loss"):
                    solved = r["targets"][int(key.split()[1])]["solved"]
                elif key.startswith("recovery"):
                    solved = r["recovery_targets"][int(key.split()[1])]["solved"]
                else:
                    solved = r["seeds"]
                record = {"axis": axis, "value": shown(r["point"][axis]), "method": r["method"]}
                record |= {"eta": _round(r["learning_rate"]), "metric": title,
                           "solved": f"{solved}/{r['seeds']}"}  # fmt: skip
                record["others"] = "" if others == "base" else others
                out.append(record | {k: _round(v) for k, v in cell.items()})
    return out


def _profile_data(profiles) -> list[dict]:
    out = []
    for (measure, target), (methods, taus, rho) in profiles.items():
        for m in methods:
            values = np.asarray(rho[m])
            keep = np.r_[True, values[1:] != values[:-1]]
            keep[-1] = True
            for tau, value in zip(taus[keep], values[keep]):
                out.append({"measure": measure, "target": target, "method": m,
                            "tau": _round(tau), "rho": _round(value)})  # fmt: skip
    return out


def _provenance(meta: dict) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items() if v)
    created = meta.get("created") or max(
        (g.get("created", "") for g in (meta.get("groups") or {}).values() if isinstance(g, dict)),
        default=None,
    )
    items = [
        ("created", created),
        ("git revision", meta.get("git_revision")),
        ("versions", f"{versions}, Python {meta.get('python')}"),
        ("hardware", meta.get("hardware")),
        ("platform", meta.get("platform")),
        ("sweep", meta.get("sweep")),
    ]
    return "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in items if v
    )


STYLE = (
    "body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;"
    "vertical-align:top}pre{background:#f6f6f6;padding:1em;overflow:auto}"
    "th{cursor:pointer;background:#f3f3f3}th.asc:after{content:' ▲'}th.desc:after{content:' ▼'}"
    "tr.winner td{background:#f1f8ec}.swatch{display:inline-block;width:10px;height:10px;"
    "margin-right:5px;border-radius:2px}#filter{margin:6px 0;padding:3px 6px;width:24em}"
    "#answers{font-size:15px;line-height:1.5}#answers li{margin:4px 0}"
    "dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px;font-size:13px}"
    "dt{color:#555}dd{margin:0}.edge{color:#b00;font-weight:bold}.ext{color:#555}"
    ".controls{position:sticky;top:0;background:#fff;padding:6px 0;border-bottom:1px solid #ddd;"
    "z-index:1}.warn{background:#fff4e5;border-left:4px solid #e67e22;padding:6px 10px}"
)

SCRIPT = """
function xChoice(){return document.getElementById('xaxis').value+'|'+
  (document.getElementById('xlog').checked?'log':'linear');}
function draw(){
  for (const chart of CHARTS){
    const spec = Object.assign({}, chart.variants ? chart.variants[xChoice()] : chart.spec,
                               {datasets: DATA});
    vegaEmbed('#'+chart.id, spec, {renderer:'svg', actions:false})
      .then(function(){document.getElementById(chart.id).dataset.drawn=xChoice();})
      .catch(function(e){console.error(e);});
  }
}
function key(cell){
  const k = cell.dataset.sort;
  if (k === undefined || k === '') return [1, cell.textContent.trim().toLowerCase()];
  return [0, k === 'Infinity' ? Infinity : parseFloat(k)];
}
function sortBy(th){
  const table = th.closest('table'), body = table.tBodies[0];
  const i = [...th.parentNode.children].indexOf(th);
  const up = !th.classList.contains('asc');
  for (const h of th.parentNode.children) h.classList.remove('asc', 'desc');
  th.classList.add(up ? 'asc' : 'desc');
  const rows = [...body.rows].sort(function(a, b){
    const x = key(a.cells[i]), y = key(b.cells[i]);
    const c = x[0] - y[0] || (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0);
    return up ? c : -c;
  });
  for (const r of rows) body.appendChild(r);
}
for (const th of document.querySelectorAll('table.sortable th'))
  th.addEventListener('click', function(){sortBy(th);});
document.getElementById('filter').addEventListener('input', function(e){
  const words = e.target.value.toLowerCase().split(/\\s+/).filter(Boolean);
  for (const r of document.getElementById('summary').tBodies[0].rows){
    const text = r.textContent.toLowerCase();
    r.style.display = words.every(function(w){return text.includes(w);}) ? '' : 'none';
  }
});
document.getElementById('xaxis').addEventListener('change', draw);
document.getElementById('xlog').addEventListener('change', draw);
draw();
"""


def _goal(measure: str, target: float) -> str:
    return f"{target:g} × the initial loss" if measure == "loss" else f"‖W − M‖/‖M‖ ≤ {target:g}"


def _chart_sections(orders, profiles, metrics, points, colours, recovery) -> tuple[list, list]:
    """The charts (specifications the page's script draws) and their sections, in page order:
    the loss curves, one per axis, one performance profile per (recovery) target, the
    recovery."""
    charts = [{"id": "curves", "variants": {
        f"{x}|{'log' if log else 'linear'}": curves_spec(points, colours, x, log)
        for x in X_FIELDS for log in (False, True)}}]  # fmt: skip
    sections = [
        "<h2>Loss curves</h2><p>Each method at its best learning rate, one panel per axis "
        "point: the median over seeds of loss ÷ initial loss (line) and its 95% percentile-"
        "bootstrap interval (band) on the common step grid; dashed: the reachable minimum "
        "with the loop's round-off above it (below the line"
        " the loss is the minimum to rounding). Drag to pan, wheel to zoom, hover for values.</p>"
        "<div id='curves' class='chart'></div>"
    ]
    for i, (axis, order) in enumerate(orders.items()):
        charts.append({"id": f"axis{i}", "spec": axis_spec(axis, order, metrics, colours)})
        sections.append(
            f"<h2>Against {html.escape(axis)}</h2><p>Each method at its best setting per "
            f"{html.escape(axis)}: median over seeds with its {confidence.DESCRIPTION} "
            "(vertical bars; △ above a point: the interval's top is “not reached”). Points "
            "missing: the median seed did not reach the target.</p>"
            f"<div id='axis{i}' class='chart'></div>"
        )
    for i, (measure, t) in enumerate(profiles):
        goal = _goal(measure, t)
        charts.append({"id": f"profile{i}", "spec": profile_spec(measure, t, goal, colours)})
        sections.append(
            f"<h2>Performance profile, time to {html.escape(goal)}</h2><p>Dolan–Moré: the "
            "fraction of problems (axis point × seed) each method, at its best learning rate, "
            f"brings to {html.escape(goal)} within τ times the fastest method's seconds.</p>"
            f"<div id='profile{i}' class='chart'></div>"
        )
    if recovery:
        charts.append({"id": "recovery", "spec": recovery_spec(points, colours)})
        charts.append({"id": "rank", "spec": rank_spec(points, colours)})
        sections.append(
            "<h2>Recovery</h2><p>How far each method's end-to-end map W is from the truth M, "
            "at its best learning rate: the final ‖W − M‖_F / ‖M‖_F, median over seeds with "
            f"its {confidence.DESCRIPTION} (vertical bar).</p>"
            "<div id='recovery' class='chart'></div>"
            "<p>The effective rank of W (exp of the entropy of its normalised singular values; "
            "Roy &amp; Vetterli 2007, as Arora et al. 2019 plot it), median over seeds.</p>"
            "<div id='rank' class='chart'></div>"
        )
    return charts, sections


def _grid_warning(rows) -> str:
    """The warning about best learning rates on their grid's edge, and the note about grids the
    sweep extended (empty when neither)."""
    edges = [r for r in rows if r["edge"] in ("low", "high")]
    warning = ""
    if edges:
        listed = ", ".join(f"{r['method']} at {r['axis_point']} ({r['edge']})" for r in edges)
        warning = (
            f"<p class='warn'>⚠ {len(edges)} best learning rate(s) on the grid's edge: "
            f"{html.escape(listed)}. The optimum may lie outside the grid: widen it or let "
            "the sweep extend it.</p>"
        )
    extended = [r for r in rows if r["extended"]]
    if extended:
        warning += (
            f"<p>The sweep extended the grid of {len(extended)} configuration(s) past its edge "
            "(marked “grid extended” below).</p>"
        )
    return warning


def _controls(log_x: bool) -> str:
    """The curves' x-axis choice and the log-x switch (on when ``log_x``)."""
    checked = " checked" if log_x else ""
    return (
        "<div class='controls'>curves against <select id='xaxis'>"
        + "".join(f"<option value='{k}'>{html.escape(v)}</option>" for k, v in X_FIELDS.items())
        + f"</select> <label><input type='checkbox' id='xlog'{checked}> log x</label></div>"
    )


def _figure_list(figures) -> str:
    """The static figures beside the page, with their captions."""
    items = "".join(
        f"<li><b>{html.escape(f['title'])}</b> ("
        + ", ".join(
            f"<a href='{html.escape(n, quote=True)}'>{html.escape(n)}</a>" for n in f["files"]
        )
        + f"): {html.escape(f['caption'])}</li>"
        for f in figures
    )
    return (
        "<h2>Figures for papers</h2><p>Beside this page, each as SVG, PNG and PDF with its "
        "caption and the sweep's provenance in the file's metadata (and in figures.json); the "
        f"summary in summary.csv and summary.json.</p><ul>{items}</ul>"
    )


def _document(title: str, body: list[str], data: dict, charts: list) -> str:
    """The whole page: head with the inlined scripts, the body, the data and charts."""
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False)
    specs = json.dumps(charts, separators=(",", ":"), allow_nan=False)
    return "\n".join(
        [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{html.escape(title)}</title><style>{STYLE}</style>",
            f"<script>{vega_script()}</script></head><body>",
            *body,
            f"<script>const DATA={_script_safe(payload)};const CHARTS={_script_safe(specs)};",
            f"{SCRIPT}</script></body></html>",
        ]
    )


def render(
    *, document, rows, best, quantiles, profiles, orders, colours, source, runs, recovery=None,
    reachable=None,
) -> str:  # fmt: skip
    """The page's HTML (see the module docstring); ``recovery`` (group → ``sweep_figures.
    recovery_quantiles``) adds the recovery section; ``reachable``: point → the reachable
    minimum ÷ initial loss."""
    targets = document["targets"]
    meta = document["provenance"]
    title = meta.get("name") or "deeplinear sweep"
    points = list(dict.fromkeys(r["axis_point"] for r in rows))
    metrics = axis_metrics(targets, document.get("recovery_targets") or [])
    data = {
        "curves": _curves_data(best, quantiles, reachable or {}),
        "axis": _axis_data(rows, orders, metrics),
        "profile": _profile_data(profiles),
    }
    charts, sections = _chart_sections(orders, profiles, metrics, points, colours, recovery)
    if recovery:
        data["recovery_final"], data["rank"] = _recovery_data(rows, best, recovery)
    options = f"chosen by {document['select'].replace('_', ' ')}, median over seeds"
    ranking = document.get("ranking") or []
    across = (
        "<h2>Across axis points</h2><p>Each method's rank at every axis point (by the same "
        "rule), its wins, and its cost (the rule's first measure) relative to the best "
        f"method's at each point.</p>{ranking_table(ranking)}"
        if len(points) > 1 else ""
    )  # fmt: skip
    body = [
        f"<h1>{html.escape(title)}</h1>",
        "<h2>The answer</h2>",
        answer_list(document.get("answers") or []),
        f"<p>{counted(runs, 'run')} in {counted(len(rows), 'group')}. Best learning rate per "
        f"method and axis point ({html.escape(options)}; targets relative to the initial loss: "
        f"{', '.join(f'{t:g}' for t in targets)}). Ranked within each axis point by "
        f"{html.escape(document.get('ranked_by', ''))}; ★ the winner. Click a column to sort, "
        f"type to filter. Medians over seeds with their {confidence.DESCRIPTION}; inf = not "
        "reached.</p>",
        f"<p>{html.escape(document['time_charged'])}</p>",
        _grid_warning(rows),
        summary_html(rows, targets),
        across,
        _controls(log_x_first(quantiles, targets[-1])),
        *sections,
        _figure_list(document.get("figures") or []),
        f"<h2>Provenance</h2><dl>{_provenance(meta)}</dl>",
        f"<h2>Sweep file</h2><pre>{html.escape(source)}</pre>",
    ]
    return _document(title, body, data, charts)


def _script_safe(text: str) -> str:
    """JSON inside <script>: no ``</`` can close the element early."""
    return text.replace("</", "<\\/")

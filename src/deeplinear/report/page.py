"""The report page: one self-contained HTML file (no network when viewed) with interactive
charts — zoom and pan (drag, wheel), hover, the curves' x-axis (steps, seconds, FLOPs) and a
log/linear x switch — the summary table with grid-edge flags and verdicts, and the provenance.

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
from deeplinear.report.rows import counted_recovery_targets, point_text, shown
from deeplinear.store.directories import write_atomic

X_FIELDS = {"step": "step", "seconds": "seconds (charged)", "flops": "FLOPs"}
SIGNIFICANT = 5  # digits kept in the page's data (the CSV/JSON summaries keep all)


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


def _colour(colours: dict):
    return alt.Color(
        "method:N",
        scale=alt.Scale(domain=list(colours), range=list(colours.values())),
        legend=alt.Legend(orient="bottom", title="method"),
    )


def curves_spec(points, colours, x: str, log: bool) -> dict:
    """Median loss / initial (line) and IQR (band) of each method at its best learning rate, one
    panel per axis point, against ``x`` on a log or linear scale."""
    keep = f"datum['{x}'] > 0" if log else f"isFinite(datum['{x}'])"
    base = alt.Chart(alt.NamedData(name="curves")).transform_filter(f"{keep} && datum.q50 > 0")
    x_enc = alt.X(f"{x}:Q", title=X_FIELDS[x], scale=alt.Scale(type="log" if log else "linear"))
    y_scale = alt.Scale(type="log")
    band = base.mark_area(opacity=0.2).encode(
        x=x_enc, y=alt.Y("q25:Q", scale=y_scale), y2="q75:Q", color=_colour(colours)
    )
    line = base.mark_line().encode(
        x=x_enc,
        y=alt.Y("q50:Q", scale=y_scale, title="loss / initial (median, IQR over seeds)"),
        color=_colour(colours),
        tooltip=["method:N", "eta:Q", "step:Q", "seconds:Q", "flops:Q", "q50:Q"],
    )
    layer = alt.layer(band, line.interactive()).properties(width=300, height=220)
    chart = layer.facet(facet=alt.Facet("point:N", sort=list(points), title=None), columns=3)
    return chart.to_dict()


def axis_spec(axis: str, order, metrics, colours) -> dict:
    """Each metric (steps/seconds to each target, final loss) against the axis value, per
    method at its best setting: median and bootstrap interval over seeds; with several axes,
    one line per method and point of the other axes (``others``, in the tooltip)."""
    base = alt.Chart(alt.NamedData(name="axis")).transform_filter(alt.datum.axis == axis)
    x = alt.X("value:N", sort=[shown(v) for v in order], title=axis, axis=alt.Axis(labelAngle=0))
    y = alt.Y("median:Q", scale=alt.Scale(type="log"), title=None)
    tooltip = ["method:N", "value:N", "others:N", "eta:Q", "median:Q", "low:Q", "high:Q"]
    line = base.mark_line(point=True).encode(
        x=x, y=y, color=_colour(colours), detail="others:N", tooltip=[*tooltip, "solved:N"]
    )
    bars = (
        base.transform_calculate(top="isValid(datum.high) ? datum.high : datum.median")
        .mark_rule()
        .encode(
            x=x,
            y=alt.Y("low:Q", scale=alt.Scale(type="log")),
            y2="top:Q",
            color=_colour(colours),
            detail="others:N",
        )
    )
    open_top = (  # the interval reaches "not reached" (inf): an open triangle at the median
        base.mark_point(shape="triangle-up", size=90, filled=False, yOffset=-9).encode(
            x=x,
            y=y,
            color=_colour(colours),
            opacity=alt.condition("isValid(datum.high)", alt.value(0), alt.value(1)),
        )
    )
    chart = alt.layer(bars, open_top, line.interactive(bind_x=False))
    chart = chart.properties(width=260, height=200)
    chart = chart.facet(facet=alt.Facet("metric:N", sort=list(metrics), title=None), columns=3)
    return chart.resolve_scale(y="independent").to_dict()


def profile_spec(target: float, colours) -> dict:
    """ρ(τ) per method for time to ``target`` (steps after each change)."""
    chart = (
        alt.Chart(alt.NamedData(name="profile"))
        .transform_filter(alt.datum.target == target)
        .mark_line(interpolate="step-after")
        .encode(
            x=alt.X("tau:Q", scale=alt.Scale(type="log"), title="τ (time ÷ the fastest's)"),
            y=alt.Y("rho:Q", scale=alt.Scale(domain=[0, 1]), title="fraction solved"),
            color=_colour(colours),
            tooltip=["method:N", "tau:Q", "rho:Q"],
        )
        .properties(width=420, height=260, title=f"Performance profile, time to {target:g}")
        .interactive()
    )
    return chart.to_dict()


def recovery_spec(points, colours) -> dict:
    """The final recovery error ‖W − M‖_F/‖M‖_F per method and axis point: median over seeds
    (point) and its interval (rule)."""
    base = alt.Chart(alt.NamedData(name="recovery_final"))
    x = alt.X("point:N", sort=list(points), title="axis point", axis=alt.Axis(labelAngle=0))
    y_scale = alt.Scale(type="log")
    tooltip = ["method:N", "point:N", "eta:Q", "median:Q", "low:Q", "high:Q"]
    rule = base.mark_rule().encode(
        x=x, y=alt.Y("low:Q", scale=y_scale), y2="high:Q", color=_colour(colours)
    )
    dots = base.mark_point(filled=True, size=60).encode(
        x=x,
        y=alt.Y("median:Q", scale=y_scale, title="final ‖W − M‖_F / ‖M‖_F"),
        color=_colour(colours),
        tooltip=tooltip,
    )
    chart = alt.layer(rule, dots.interactive(bind_x=False)).properties(width=420, height=240)
    return chart.to_dict()


def rank_spec(points, colours) -> dict:
    """The effective rank of W (median over seeds) against steps, each method at its best
    learning rate, one panel per axis point."""
    base = alt.Chart(alt.NamedData(name="rank"))
    line = base.mark_line().encode(
        x=alt.X("step:Q", title="step"),
        y=alt.Y("effective_rank:Q", title="effective rank of W (median over seeds)"),
        color=_colour(colours),
        tooltip=["method:N", "eta:Q", "step:Q", "effective_rank:Q", "recovery:Q"],
    )
    layer = line.interactive().properties(width=300, height=200)
    chart = layer.facet(facet=alt.Facet("point:N", sort=list(points), title=None), columns=3)
    return chart.to_dict()


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


def _curves_data(best, quantiles) -> list[dict]:
    rows = []
    for group, entry in best.items():
        q = quantiles[group]
        n = len(q["step"])
        label = point_text(entry["point"])
        columns = {"method": [entry["method"]] * n, "eta": [entry["learning_rate"]] * n,
                   "point": [label] * n, **{k: list(v) for k, v in q.items()}}  # fmt: skip
        rows += [r for r in _records(columns) if r["q50"] is not None]
    return rows


def _axis_data(rows, orders, targets) -> tuple[list[dict], list[str]]:
    metrics = []
    for t in targets:
        metrics += [f"steps to {t:g}", f"seconds to {t:g}"]
    metrics.append("final loss")
    out = []
    for axis in orders:
        for r in rows:
            if axis not in r["point"]:
                continue
            cells = []
            for t, cell in zip(targets, r["targets"]):
                solved = f"{cell['solved']}/{r['seeds']}"
                cells += [(f"steps to {t:g}", cell["steps"], solved),
                          (f"seconds to {t:g}", cell["seconds"], solved)]  # fmt: skip
            cells.append(("final loss", r["final_loss"], f"{r['seeds']}/{r['seeds']}"))
            for metric, cell, solved in cells:
                if not math.isfinite(cell["median"]):
                    continue
                others = point_text({k: v for k, v in r["point"].items() if k != axis})
                record = {"axis": axis, "value": shown(r["point"][axis]), "method": r["method"]}
                record |= {"eta": _round(r["learning_rate"]), "metric": metric, "solved": solved}
                record["others"] = "" if others == "base" else others
                out.append(record | {k: _round(v) for k, v in cell.items()})
    return out, metrics


def _profile_data(profiles) -> list[dict]:
    out = []
    for target, (methods, taus, rho) in profiles.items():
        for m in methods:
            values = np.asarray(rho[m])
            keep = np.r_[True, values[1:] != values[:-1]]
            keep[-1] = True
            for tau, value in zip(taus[keep], values[keep]):
                out.append(
                    {"target": target, "method": m, "tau": _round(tau), "rho": _round(value)}
                )
    return out


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


def _table(rows, targets) -> str:
    head = ["method", "axis point", "best η"]
    for t in targets:
        head += [f"solved @{t:g} within the recorded steps", "median steps [95% CI]",
                 "median s [95% CI]", "median FLOPs"]  # fmt: skip
    head += ["final loss [95% CI]"]
    recovering = any("final_recovery" in r for r in rows)
    goals = counted_recovery_targets(rows)
    if recovering:
        head.append("final ‖W − M‖/‖M‖ [95% CI]")
        head += [f"steps to ‖W − M‖/‖M‖ ≤ {t:g} [95% CI]" for t in goals]
    head.append("verdicts across seeds")
    lines = ["<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for r in rows:
        rate = f"{r['learning_rate']:.3g}"
        flag = {"low": "low edge", "high": "high edge"}.get(r["edge"])
        rate_cell = html.escape(rate)
        if flag:
            rate_cell += f" <span class='edge' title='best on the grid's edge'>⚠ {flag}</span>"
        if r["extended"]:
            rate_cell += f" <span class='ext'>({html.escape(_extension(r))})</span>"
        cells = [html.escape(r["method"]), html.escape(r["axis_point"]), rate_cell]
        for cell in r["targets"]:
            solved = f"{cell['solved']}/{r['seeds']} within {_horizon(r)}"
            cells += [html.escape(solved), _ci(cell["steps"]), _ci(cell["seconds"]),
                      html.escape(f"{cell['flops']['median']:.4g}")]  # fmt: skip
        cells.append(_ci(r["final_loss"]))
        if recovering:
            cells.append(_ci(r["final_recovery"]) if "final_recovery" in r else "—")
            reached = r.get("recovery_targets") or [None] * len(goals)
            cells += [
                "—" if c is None else f"{c['solved']}/{r['seeds']}: {_ci(c['steps'])}"
                for c in reached
            ]
        cells.append(_verdict_cell(r))
        lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "<table>" + "".join(lines) + "</table>"


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

    return html.escape(f"{g(cell['median'])} [{g(cell['low'])}, {g(cell['high'])}]")


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
    "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;"
    "vertical-align:top}pre{background:#f6f6f6;padding:1em;overflow:auto}"
    "dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px;font-size:13px}"
    "dt{color:#555}dd{margin:0}.edge{color:#b00;font-weight:bold}.ext{color:#555}"
    ".controls{position:sticky;top:0;background:#fff;padding:6px 0;border-bottom:1px solid #ddd}"
    ".warn{background:#fff4e5;border-left:4px solid #e67e22;padding:6px 10px}"
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
document.getElementById('xaxis').addEventListener('change', draw);
document.getElementById('xlog').addEventListener('change', draw);
draw();
"""


def _chart_sections(orders, targets, metrics, points, colours, recovery) -> tuple[list, list]:
    """The charts (specifications the page's script draws) and their sections, in page order:
    the loss curves, one per axis, one performance profile per target, the recovery."""
    charts = [{"id": "curves", "variants": {
        f"{x}|{'log' if log else 'linear'}": curves_spec(points, colours, x, log)
        for x in X_FIELDS for log in (False, True)}}]  # fmt: skip
    sections = [
        "<h2>Loss curves</h2><p>Each method at its best learning rate, one panel per axis "
        "point: median over seeds (line) and interquartile range (band). Drag to pan, wheel "
        "to zoom, hover for values.</p><div id='curves' class='chart'></div>"
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
    for i, t in enumerate(targets):
        charts.append({"id": f"profile{i}", "spec": profile_spec(t, colours)})
        sections.append(
            f"<h2>Performance profile, time to {t:g}</h2><p>Dolan–Moré: the fraction of "
            "problems (axis point × seed) each method, at its best learning rate, solves within "
            f"τ times the fastest method's seconds.</p><div id='profile{i}' class='chart'></div>"
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


def _controls() -> str:
    """The curves' x-axis choice and the log-x switch."""
    return (
        "<div class='controls'>curves against <select id='xaxis'>"
        + "".join(f"<option value='{k}'>{html.escape(v)}</option>" for k, v in X_FIELDS.items())
        + "</select> <label><input type='checkbox' id='xlog'> log x</label></div>"
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
    *, document, rows, best, quantiles, profiles, orders, colours, source, runs, recovery=None
) -> str:
    """The page's HTML (see the module docstring); ``recovery`` (group → ``sweep_figures.
    recovery_quantiles``) adds the recovery section."""
    targets = document["targets"]
    meta = document["provenance"]
    title = meta.get("name") or "deeplinear sweep"
    points = list(dict.fromkeys(r["axis_point"] for r in rows))
    axis_rows, metrics = _axis_data(rows, orders, targets)
    data = {
        "curves": _curves_data(best, quantiles),
        "axis": axis_rows,
        "profile": _profile_data(profiles),
    }
    charts, sections = _chart_sections(orders, targets, metrics, points, colours, recovery)
    if recovery:
        data["recovery_final"], data["rank"] = _recovery_data(rows, best, recovery)
    options = f"chosen by {document['select'].replace('_', ' ')}, median over seeds"
    body = [
        f"<h1>{html.escape(title)}</h1><dl>{_provenance(meta)}</dl>",
        f"<p>{counted(runs, 'run')} in {counted(len(rows), 'group')}. Best learning rate per "
        "method and axis point "
        f"({html.escape(options)}; targets relative to the initial loss: "
        f"{', '.join(f'{t:g}' for t in targets)}). Medians over seeds with their "
        f"{confidence.DESCRIPTION}; inf = not reached.</p>",
        f"<p>{html.escape(document['time_charged'])}</p>",
        _grid_warning(rows),
        _table(rows, targets),
        _controls(),
        *sections,
        "<h2>Static figures</h2><p>For papers, beside this page: curves.png/.svg, "
        "profile-&lt;target&gt;.png/.svg, axis-&lt;axis&gt;.png/.svg"
        + (", recovery.png/.svg" if recovery else "")
        + "; the summary in summary.csv and summary.json.</p>",
        f"<h2>Sweep file</h2><pre>{html.escape(source)}</pre>",
    ]
    return _document(title, body, data, charts)


def _script_safe(text: str) -> str:
    """JSON inside <script>: no ``</`` can close the element early."""
    return text.replace("</", "<\\/")

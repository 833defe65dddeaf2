"""The report page's charts as Vega-Lite specifications (built with Altair), drawn by the page's
script from the shared ``DATA``: the loss curves (one variant per x field and scale), the
metrics against each axis, the performance profiles and the recovery.

Every chart has a title on each axis with its unit, one colour per method (``colours``) with
opaque legend symbols (the bands' pale fill is not in the legend), scales padded so no point
sits on the frame, and the curve panels at least ``PANEL_WIDTH`` pixels wide.
"""

from __future__ import annotations

import altair as alt

from deeplinear.report.rows import shown

X_FIELDS = {"step": "step", "seconds": "seconds (charged)", "flops": "FLOPs"}
PANEL_WIDTH = 620  # a curve panel's width in pixels; two panels a row on the 1400 px page
WIDE = 1240  # one panel: the whole row


def colour(colours: dict):
    """The method colour encoding, with solid legend symbols: every layer (a band's pale fill
    too) shares this legend, whose symbols are opaque strokes whatever the layer's opacity."""
    return alt.Color(
        "method:N",
        scale=alt.Scale(domain=list(colours), range=list(colours.values())),
        legend=alt.Legend(
            orient="bottom",
            title="method",
            symbolType="stroke",
            symbolStrokeWidth=3,
            symbolOpacity=1,
            symbolSize=300,
        ),
    )


def _log(**kwargs):
    return alt.Scale(type="log", padding=12, **kwargs)


def curves_spec(points, colours, x: str, log: bool) -> dict:
    """Median loss / initial over seeds (line) and its bootstrap interval (band) of each method
    at its best learning rate, the reachable minimum (dashed rule, where above 0), one panel per
    axis point, against ``x`` on a log or linear scale."""
    shifted = log and x == "step"  # step 0 (the start) at ½ on a log axis, not dropped
    keep = "true" if shifted else (f"datum['{x}'] > 0" if log else f"isFinite(datum['{x}'])")
    value = "max(datum.step, 0.5)" if shifted else f"datum['{x}']"
    base = (
        alt.Chart(alt.NamedData(name="curves"))
        .transform_filter(f"{keep} && datum.q50 > 0")
        .transform_calculate(x=value)
    )
    title = X_FIELDS[x] + (" (log; the start drawn at ½)" if shifted else "")
    x_enc = alt.X("x:Q", title=title, scale=alt.Scale(type="log" if log else "linear", nice=False))
    y_title = "loss / initial loss (median over seeds, 95% bootstrap band)"
    band = base.mark_area(opacity=0.18, clip=True).encode(
        x=x_enc, y=alt.Y("low:Q", scale=_log()), y2="high:Q", color=colour(colours)
    )
    line = base.mark_line(clip=True, strokeWidth=2).encode(
        x=x_enc,
        y=alt.Y("q50:Q", scale=_log(), title=y_title),
        color=colour(colours),
        tooltip=["method:N", "eta:Q", "step:Q", "seconds:Q", "flops:Q", "q50:Q", "low:Q", "high:Q"],
    )
    floor = (
        base.transform_filter("isValid(datum.floor) && datum.floor > 0")
        .mark_rule(strokeDash=[6, 4], color="#333", clip=True)
        .encode(
            y=alt.Y("min(floor):Q", scale=_log()),
            tooltip=[
                alt.Tooltip("min(floor):Q", title="(reachable minimum + round-off) / initial")
            ],
        )
    )
    width = WIDE if len(points) == 1 else PANEL_WIDTH
    layer = alt.layer(band, floor, line.interactive()).properties(width=width, height=280)
    columns = 1 if len(points) == 1 else 2
    chart = layer.facet(facet=alt.Facet("point:N", sort=list(points), title=None), columns=columns)
    return chart.to_dict()


def axis_spec(axis: str, order, metrics, colours) -> dict:
    """Each metric (``sweep_figures.axis_metrics``: title, y title with unit) against the axis
    value, per method at its best setting: median and bootstrap interval over seeds; with
    several axes, one line per method and point of the other axes (``others``)."""
    charts = []
    for title, y_title, _ in metrics:
        base = alt.Chart(alt.NamedData(name="axis")).transform_filter(
            (alt.datum.axis == axis) & (alt.datum.metric == title)
        )
        x = alt.X(
            "value:N", sort=[shown(v) for v in order], title=axis, axis=alt.Axis(labelAngle=0)
        )
        y = alt.Y("median:Q", scale=_log(), title=y_title)
        tooltip = ["method:N", "value:N", "others:N", "eta:Q", "median:Q", "low:Q", "high:Q"]
        line = base.mark_line(point=True).encode(
            x=x, y=y, color=colour(colours), detail="others:N", tooltip=[*tooltip, "solved:N"]
        )
        bars = (
            base.transform_calculate(top="isValid(datum.high) ? datum.high : datum.median")
            .mark_rule()
            .encode(
                x=x,
                y=alt.Y("low:Q", scale=_log()),
                y2="top:Q",
                color=colour(colours),
                detail="others:N",
            )
        )
        open_top = (  # the interval reaches "not reached" (inf): an open triangle at the median
            base.mark_point(shape="triangle-up", size=90, filled=False, yOffset=-9).encode(
                x=x,
                y=y,
                color=colour(colours),
                opacity=alt.condition("isValid(datum.high)", alt.value(0), alt.value(1)),
            )
        )
        chart = alt.layer(
            bars, open_top, line.interactive(bind_x=False, name=f"zoom_{len(charts)}")
        )
        charts.append(chart.properties(width=380, height=220, title=title))
    return alt.concat(*charts, columns=3).to_dict()


def profile_spec(measure: str, target: float, goal: str, colours) -> dict:
    """ρ(τ) per method for the seconds to ``goal`` (steps after each change)."""
    chart = (
        alt.Chart(alt.NamedData(name="profile"))
        .transform_filter((alt.datum.target == target) & (alt.datum.measure == measure))
        .mark_line(interpolate="step-after", strokeWidth=2)
        .encode(
            x=alt.X("tau:Q", scale=alt.Scale(type="log"), title="τ (seconds ÷ the fastest's)"),
            y=alt.Y(
                "rho:Q",
                scale=alt.Scale(domain=[0, 1.02]),
                title="fraction of problems solved",
            ),
            color=colour(colours),
            tooltip=["method:N", "tau:Q", "rho:Q"],
        )
        .properties(width=600, height=280, title=f"Performance profile, time to {goal}")
        .interactive()
    )
    return chart.to_dict()


def recovery_spec(points, colours) -> dict:
    """The final recovery error ‖W − M‖_F/‖M‖_F per method and axis point: median over seeds
    (point) and its interval (rule)."""
    base = alt.Chart(alt.NamedData(name="recovery_final"))
    x = alt.X("point:N", sort=list(points), title="axis point", axis=alt.Axis(labelAngle=0))
    tooltip = ["method:N", "point:N", "eta:Q", "median:Q", "low:Q", "high:Q"]
    rule = base.mark_rule().encode(
        x=x, y=alt.Y("low:Q", scale=_log()), y2="high:Q", color=colour(colours)
    )
    dots = base.mark_point(filled=True, size=60).encode(
        x=x,
        y=alt.Y("median:Q", scale=_log(), title="final ‖W − M‖_F / ‖M‖_F (relative)"),
        color=colour(colours),
        tooltip=tooltip,
    )
    chart = alt.layer(rule, dots.interactive(bind_x=False)).properties(width=600, height=260)
    return chart.to_dict()


def rank_spec(points, colours) -> dict:
    """The effective rank of W (median over seeds) against steps, each method at its best
    learning rate, one panel per axis point."""
    base = alt.Chart(alt.NamedData(name="rank"))
    line = base.mark_line(strokeWidth=2).encode(
        x=alt.X("step:Q", title="step"),
        y=alt.Y("effective_rank:Q", title="effective rank of W (median over seeds)"),
        color=colour(colours),
        tooltip=["method:N", "eta:Q", "step:Q", "effective_rank:Q", "recovery:Q"],
    )
    width = WIDE if len(points) == 1 else PANEL_WIDTH
    layer = line.interactive().properties(width=width, height=240)
    columns = 1 if len(points) == 1 else 2
    chart = layer.facet(facet=alt.Facet("point:N", sort=list(points), title=None), columns=columns)
    return chart.to_dict()

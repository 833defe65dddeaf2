"""A sweep report's curves over seeds and its static figures (SVG, PNG and PDF, for papers, each
with its caption and the sweep's provenance in the file and in ``figures.json``): each best
configuration's loss curve (median over seeds and its bootstrap band, the reachable minimum) per
axis point, each target's steps and seconds, the recovery targets' steps and the final loss
against each axis, one performance profile per target and recovery target and, for a
completion or sensing problem with its truth, ``recovery`` (the final ‖W − M‖_F/‖M‖_F per
method and axis point, and the effective-rank curves).
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from deeplinear.report import confidence
from deeplinear.report.comparison import charged_seconds
from deeplinear.report.rows import point_text, shown
from deeplinear.store.directories import write_atomic
from deeplinear.store.jsonfiles import dumps

DIVERGED = 1e30  # loss / initial loss above this is drawn as a gap (a log axis must end somewhere)


CURVE_POINTS = 300  # rows drawn per curve: all of a short record, else log- and linearly spaced


def plotted_rows(length: int) -> np.ndarray:
    """The row indices a curve is drawn at: every row up to ``CURVE_POINTS``, else the union of
    log- and linearly spaced rows with the first and the last (fast early progress and the
    long tail both keep their shape on either x scale)."""
    if length <= CURVE_POINTS:
        return np.arange(length)
    half = CURVE_POINTS // 2
    spaced = np.r_[np.geomspace(1, length, half) - 1, np.linspace(0, length - 1, half)]
    return np.unique(np.r_[0, np.round(spaced).astype(int), length - 1])


def curve_quantiles(series, entry) -> dict:
    """Median across seeds of loss / initial loss with its bootstrap interval
    (``confidence.median_bands``), and the median seconds and FLOPs, at the plotted rows of a
    best configuration's common step grid (diverged rows are NaN: gaps)."""
    curves = [series[r["run_id"]] for r in entry["runs"]]
    length = min(len(c["loss"]) for c in curves)
    rows = plotted_rows(length)
    rel = np.array([(c["loss"][:length] / c["loss"][0])[rows] for c in curves])
    rel[~(rel < DIVERGED)] = np.nan
    seconds = np.array([charged_seconds(c)[:length][rows] for c in curves])
    flops = np.array(
        [c["flops"][:length][rows] if "flops" in c else np.full(rows.size, np.nan) for c in curves]
    )
    median, low, high = confidence.median_bands(rel)
    every = np.all(np.isnan(rel), axis=0)  # steps where every run diverged are not drawn
    high[~np.isfinite(high)] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {
            "step": curves[0]["step"][:length][rows].astype(float),
            "seconds": np.nanmedian(seconds, axis=0),
            "flops": np.nanmedian(flops.astype(float), axis=0),
            "q50": np.where(every | ~np.isfinite(median), np.nan, median),
            "low": np.where(every, np.nan, low),
            "high": high,
        }


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


FORMATS = {"svg": {}, "png": {"dpi": 150}, "pdf": {}}


def _metadata(fmt: str, title: str, caption: str, provenance: dict) -> dict:
    """What each file format carries of the figure's caption and the sweep's provenance (no
    creation dates: the same results give the same files)."""
    source = f"deeplinear {(provenance.get('versions') or {}).get('deeplinear', '')}".strip()
    revision = provenance.get("git_revision") or "unknown"
    about = f"{caption} Sweep: {provenance.get('name') or ''}; git revision {revision}."
    if fmt == "pdf":
        return {"Title": title, "Subject": about, "Creator": source, "CreationDate": None}
    if fmt == "svg":
        return {"Title": title, "Description": about, "Creator": source, "Date": None}
    return {"Title": title, "Description": about, "Software": source}


def _save(fig, path: Path, title: str, caption: str, provenance: dict) -> dict:
    """Save ``fig`` as ``path``.svg, .png and .pdf (for papers), each carrying its caption and
    provenance; the figure's record for ``figures.json``."""
    files = []
    for fmt, kwargs in FORMATS.items():
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, metadata=_metadata(fmt, title, caption, provenance),
                    **kwargs)  # fmt: skip
        name = f"{path.name}.{fmt}"  # names hold dots: not with_suffix
        write_atomic(path.parent / name, buffer.getvalue())
        files.append(name)
    plt.close(fig)
    return {"name": path.name, "title": title, "caption": caption, "files": files}


def _panels(count: int, width=4.2, height=3.2, columns=3, sharey=True):
    columns = min(columns, count)
    rows = -(-count // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(width * columns, height * rows), squeeze=False, sharey=sharey
    )
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def profile_figure(methods, taus, rho, goal: str, colours):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in methods:
        ax.step(taus, rho[m], where="post", label=m, color=colours[m])
    ax.set_xscale("log")
    ax.set_xlabel("τ (seconds to the target ÷ the fastest method's)")
    ax.set_ylabel("fraction of problems solved")
    ax.set_title(f"Performance profile, time to {goal}")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def curves_figure(quantiles, best, points, colours, reachable):
    """One panel per axis point; in each, every method at its best learning rate, and the
    reachable minimum (dashed) where it is above 0."""
    fig, axes = _panels(len(points), width=6.0, height=4.0, columns=2)
    for ax, point in zip(axes, points):
        for group, entry in best.items():
            if point_text(entry["point"]) != point:
                continue
            q = quantiles[group]
            colour = colours[entry["method"]]
            label = f"{entry['method']} η={entry['learning_rate']:.3g}"
            ax.plot(q["step"], q["q50"], color=colour, label=label)
            ax.fill_between(q["step"], q["low"], q["high"], color=colour, alpha=0.2, lw=0)
        if reachable.get(point):
            ax.axhline(
                reachable[point], color="0.3", ls="--", lw=1, label="reachable minimum + round-off"
            )
        ax.set_yscale("log")
        ax.set_title(point, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("loss / initial loss")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def axis_metrics(targets, goals) -> list[tuple[str, str, str]]:
    """(metric, y title with its unit, key) of the axis figures: steps and seconds to each loss
    target, steps to each recovery target, the final loss."""
    out = []
    for i, t in enumerate(targets):
        out += [(f"steps to {t:g}", f"steps to loss ≤ {t:g} × initial", f"loss {i} steps"),
                (f"seconds to {t:g}", f"seconds to loss ≤ {t:g} × initial (s)",
                 f"loss {i} seconds")]  # fmt: skip
    for j, t in enumerate(goals):
        out.append((f"steps to ‖W − M‖ ≤ {t:g}", f"steps to ‖W − M‖/‖M‖ ≤ {t:g}",
                    f"recovery {j} steps"))  # fmt: skip
    out.append(("final loss", "final loss (absolute)", "final"))
    return out


def metric_cell(row, key: str):
    """The summary row's cell (median, low, high) for an ``axis_metrics`` key, or None."""
    if key == "final":
        return row["final_loss"]
    kind, index, measure = key.split()
    if kind == "loss":
        return row["targets"][int(index)][measure]
    cells = row.get("recovery_targets") or []
    return cells[int(index)]["steps"] if int(index) < len(cells) else None


def axis_figure(rows, axis, order, metrics, colours):
    """Each metric against the axis value, per method at its best setting, medians with
    bootstrap intervals; with several axes, one line per method and point of the others."""
    fig, axes = _panels(len(metrics), columns=min(len(metrics), 3), sharey=False)
    for ax, (title, y_title, key) in zip(axes, metrics):
        lines: dict = {}
        for r in rows:
            if axis in r["point"]:
                others = point_text({k: v for k, v in r["point"].items() if k != axis})
                lines.setdefault((r["method"], others), []).append(r)
        labelled = set()
        for (method, _), chosen in lines.items():
            xs, ys, lo, hi = [], [], [], []
            for r in chosen:
                cell = metric_cell(r, key)
                if cell is not None and np.isfinite(cell["median"]):
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
        ax.margins(y=0.15)  # the open triangles above the top points stay inside
        ax.set_xlabel(axis)
        ax.set_ylabel(y_title, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(True, alpha=0.3)
    axes[-1].legend(fontsize=7)
    fig.suptitle(f"median over seeds, {confidence.DESCRIPTION}", fontsize=8)
    fig.tight_layout()
    return fig


def recovery_figure(rows, best, recovery, points, colours):
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
    ax.set_ylabel("‖W − M‖_F / ‖M‖_F")
    ax.set_title("final recovery error (median, 95% CI)", fontsize=9)
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
        ax.set_ylabel("effective rank (exp of entropy)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def static_figures(directory: Path, document: dict, **parts) -> list[dict]:
    """Every static figure of the report (SVG, PNG, PDF) and ``figures.json``: each figure's
    files, title and caption, with the sweep's provenance."""
    provenance = document["provenance"] | {"name": document["name"]}
    rows, best, colours = parts["rows"], parts["best"], parts["colours"]
    points = list(dict.fromkeys(r["axis_point"] for r in rows))
    band = "median over seeds (line) and its 95% bootstrap interval (band)"
    made = [_save(curves_figure(parts["quantiles"], best, points, colours, parts["reachable"]),
                  directory / "curves", "Loss curves",
                  f"Each method at its best learning rate, one panel per axis point: loss ÷ "
                  f"initial loss, {band}; dashed: the reachable minimum with the loop's"
                  " round-off above it.", provenance)]  # fmt: skip
    for (measure, t), (methods, taus, rho) in parts["profiles"].items():
        goal = f"{t:g} × the initial loss" if measure == "loss" else f"‖W − M‖/‖M‖ ≤ {t:g}"
        name = f"profile-{t:g}" if measure == "loss" else f"profile-recovery-{t:g}"
        caption = (f"Dolan–Moré performance profile: the fraction of problems (axis point × "
                   f"seed) each method, at its best learning rate, brings to {goal} within τ "
                   "times the fastest method's seconds.")  # fmt: skip
        fig = profile_figure(methods, taus, rho, goal, colours)
        made.append(_save(fig, directory / name, f"Performance profile, {goal}", caption,
                          provenance))  # fmt: skip
    metrics = axis_metrics(document["targets"], document.get("recovery_targets") or [])
    for axis, order in parts["orders"].items():
        fig = axis_figure(rows, axis, order, metrics, colours)
        caption = (f"Each method at its best setting per {axis}: median over seeds with its "
                   f"{confidence.DESCRIPTION}; △: the interval reaches “not reached”.")  # fmt: skip
        made.append(_save(fig, directory / f"axis-{axis}", f"Against {axis}", caption,
                          provenance))  # fmt: skip
    if parts["recovery"]:
        fig = recovery_figure(rows, best, parts["recovery"], points, colours)
        caption = (
            "The final ‖W − M‖_F/‖M‖_F per method and axis point (median over seeds, "
            "95% bootstrap interval) and the effective rank of W against steps."
        )
        made.append(_save(fig, directory / "recovery", "Recovery", caption, provenance))
    index = {"provenance": provenance, "figures": made}
    write_atomic(directory / "figures.json", dumps(index, indent=1).encode())
    return made

"""A sweep report's curves over seeds and its static figures (PNG and SVG, for papers): each best
configuration's loss curve (median and IQR over seeds) per axis point, each target's steps and the
final loss against each axis, one performance profile per target and, for a completion or
sensing problem with its truth, ``recovery`` (the final ‖W − M‖_F/‖M‖_F per method and axis
point, and the effective-rank curves).
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

DIVERGED = 1e30  # loss / initial loss above this is drawn as a gap (a log axis must end somewhere)


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


def _save(fig, path: Path) -> None:
    """Save ``fig`` as ``path``.png and .svg (the static figures, for papers)."""
    for suffix, kwargs in ((".svg", {}), (".png", {"dpi": 100})):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=suffix[1:], **kwargs)
        write_atomic(path.parent / (path.name + suffix), buffer.getvalue())  # names hold dots
    plt.close(fig)


def _panels(count: int, width=4.2, height=3.2, columns=3, sharey=True):
    columns = min(columns, count)
    rows = -(-count // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(width * columns, height * rows), squeeze=False, sharey=sharey
    )
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def profile_figure(methods, taus, rho, target, colours, path: Path) -> None:
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


def curves_figure(quantiles, best, points, colours, path: Path) -> None:
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


def axis_figure(rows, axis, order, targets, colours, path: Path) -> None:
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


def recovery_figure(rows, best, recovery, points, colours, path: Path) -> None:
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

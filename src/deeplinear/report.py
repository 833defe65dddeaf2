"""Fair comparisons from a sweep: best hyperparameters, time to target, performance profiles,
and one self-contained HTML report (figures inline) that opens offline.

For every run: the steps, seconds and FLOPs until the loss first falls to each target (relative
to the initial loss); seconds are the run's share of its batch's wall time (batch time ÷ batch
size), so methods run in batches of different sizes compare fairly. Per group (axis point ×
method) the best learning rate is the best by the sweep's ``select`` (default: the smallest
median steps to the first target across seeds; ties: the smaller median final loss).
The performance profile (Dolan & Moré 2002) puts each method, at its best learning rate, on every
problem (axis point × seed): ρ(τ) is the fraction of problems it solves within τ times the
fastest method's time.
"""

from __future__ import annotations

import base64
import html
import io
import json
import tomllib
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from .errors import UsageError
from .results import run_series
from .rundir import write_atomic
from .sweep import Sweep, load, parse, read
from .verdict import classify


def _first(values, mask):
    hit = np.flatnonzero(mask)
    return float(values[hit[0]]) if hit.size else np.inf


def _area(loss) -> float:
    """Mean log10 of the loss relative to its start (inf if the run diverged)."""
    if not np.all(np.isfinite(loss)):
        return np.inf
    return float(np.mean(np.log10(np.maximum(loss / loss[0], 1e-300))))


def run_summaries(table, targets) -> list[dict]:
    """One row per run: identity, final loss and (steps, seconds, FLOPs) to each target."""
    out = []
    for series in run_series(table).values():
        loss = series["loss"]
        row = {
            "run_id": series["run_id"][0],
            "group": series["group"][0],
            "method": series["method"][0],
            "learning_rate": float(series["learning_rate"][0]),
            "seed": int(series["seed"][0]),
            "final": float(loss[-1]),
            "point": {k[5:]: series[k][0] for k in series if k.startswith("axis:")},
            "auc": _area(loss),
        }
        for target in targets:
            mask = loss <= target * loss[0]
            row[f"steps@{target:g}"] = _first(series["step"], mask)
            # a batch's wall time is shared by its members: charge each run its share
            row[f"seconds@{target:g}"] = _first(series["seconds"] / series["batch_size"], mask)
            row[f"flops@{target:g}"] = (
                _first(series["flops"], mask) if "flops" in series else np.inf
            )
        out.append(row)
    return out


def best_configs(summaries, target, select: str = "time_to_target") -> dict:
    """Per group, the learning rate that is best by ``select`` (median across seeds).

    ``time_to_target``: fewest steps to ``target`` (ties: lower final loss); ``final_loss``: the
    lowest final loss; ``auc``: the lowest mean log-loss over the record (area under the curve).
    """
    key = f"steps@{target:g}"
    best = {}
    for group in sorted({r["group"] for r in summaries}):
        rows = [r for r in summaries if r["group"] == group]
        rates = sorted({r["learning_rate"] for r in rows})

        def score(rate, rows=rows):
            chosen = [r for r in rows if r["learning_rate"] == rate]
            finals = np.median([r["final"] if np.isfinite(r["final"]) else np.inf for r in chosen])
            if select == "final_loss":
                return (finals,)
            if select == "auc":
                return (np.median([r["auc"] for r in chosen]), finals)
            return (np.median([r[key] for r in chosen]), finals)

        rate = min(rates, key=score)
        chosen = [r for r in rows if r["learning_rate"] == rate]
        best[group] = {
            "learning_rate": rate,
            "runs": chosen,
            "method": chosen[0]["method"],
            "point": chosen[0]["point"],
        }
    return best


def performance_profile(best, target, measure="seconds"):
    """(methods, τ grid, ρ(τ) per method) over problems = (axis point, seed)."""
    key = f"{measure}@{target:g}"
    costs: dict = {}
    for entry in best.values():
        for r in entry["runs"]:
            problem = (json.dumps(entry["point"], sort_keys=True, default=str), r["seed"])
            costs.setdefault(problem, {})[entry["method"]] = r[key]
    methods = sorted({m for c in costs.values() for m in c})
    ratios = {m: [] for m in methods}
    for by_method in costs.values():
        fastest = min(by_method.values())
        for m in methods:
            cost = by_method.get(m, np.inf)
            ratios[m].append(
                cost / fastest if np.isfinite(cost) and np.isfinite(fastest) else np.inf
            )
    taus = np.geomspace(1, 1e4, 200)
    return methods, taus, {m: [(np.asarray(ratios[m]) <= t).mean() for t in taus] for m in methods}


DIVERGED = 1e30  # loss / initial loss above this is drawn as a gap (a log axis must end somewhere)


def _png(fig, path: Path) -> str:
    """Save ``fig`` as ``path``.png and .svg; return the PNG as base64 for inlining."""
    svg = io.BytesIO()
    fig.savefig(svg, format="svg")
    write_atomic(path.with_suffix(".svg"), svg.getvalue())
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path.with_suffix(".png"), buffer.getvalue())
    return base64.b64encode(buffer.getvalue()).decode()


def _profile_figure(methods, taus, rho, target, path: Path) -> str:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, m in enumerate(methods):
        ax.step(taus, rho[m], where="post", label=m, color=f"C{i % 10}")
    ax.set_xscale("log")
    ax.set_xlabel("τ (time to target ÷ the fastest method's)")
    ax.set_ylabel("fraction of problems solved")
    ax.set_title(f"Performance profile, time to {target:g} of the initial loss")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig, path)


def _curves_figure(table, best, path: Path) -> str:
    series = run_series(table)
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (_, entry) in enumerate(sorted(best.items())):
        curves = [series[r["run_id"]] for r in entry["runs"]]
        length = min(len(c["loss"]) for c in curves)
        rel = np.array([c["loss"][:length] / c["loss"][0] for c in curves])
        rel[~(rel < DIVERGED)] = np.nan  # diverging rows (up to inf) are no quantile to draw
        steps = curves[0]["step"][:length]
        with warnings.catch_warnings():  # steps where every run is NaN stay NaN (not drawn)
            warnings.simplefilter("ignore", RuntimeWarning)
            q25, q50, q75 = np.nanpercentile(rel, [25, 50, 75], axis=0)
        label = f"{entry['method']} η={entry['learning_rate']:.3g} {_point(entry['point'])}"
        ax.plot(steps, q50, color=f"C{i % 10}", label=label)
        ax.fill_between(steps, q25, q75, color=f"C{i % 10}", alpha=0.2)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss / initial (median, IQR across seeds)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig, path)


def _point(point) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in point.items())


def _floors(plan) -> dict:
    """(group id, seed) → the reachable minimum of that axis point's problem for that seed."""
    from .floors import reachable_minimum
    from .runfile import build

    out = {}
    for group in plan.groups:
        for seed in group.seeds:
            try:
                setup = build(plan.run_config(group, seed))
            except UsageError:  # e.g. its .npz data moved since the sweep: not judged
                continue
            out[group.id, seed] = reachable_minimum(setup.problem, setup.widths, setup.objective)
    return out


def _plan(directory: Path) -> Sweep:
    """The sweep in ``directory``, its relative paths (an ``.npz`` problem) resolved where the
    sweep file was when it ran (``manifest.json``'s ``base_dir``), else beside the copy."""
    try:
        base = json.loads((directory / "manifest.json").read_text()).get("base_dir")
    except (OSError, ValueError, AttributeError):
        base = None
    if not (isinstance(base, str) and Path(base).is_dir()):
        return load(directory / "sweep.toml")
    text = (directory / "sweep.toml").read_text()
    return parse(tomllib.loads(text), source=text, base_dir=Path(base))


def _verdicts(series, runs, floors: dict, target: float) -> str:
    """How the runs of one configuration end: ``verdict.classify`` against each run's own
    reachable minimum (it depends on the axis point and the seed)."""
    kinds: dict = {}
    for r in runs:
        data = series[r["run_id"]]
        floor = floors.get((r["group"], r["seed"]))
        if (data["loss"] <= target * data["loss"][0]).any():
            kind = f"reached {target:g}"
        elif floor is None:
            kind = "not judged (its problem's data is not found)"
        else:
            kind = classify(data["step"], data["loss"], floor)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join(f"{k} ×{n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))


def write_report(directory: str | Path) -> Path:
    """Analyse the sweep in ``directory`` and write ``report.html`` there."""
    directory = Path(directory)
    table = read(directory)
    plan = _plan(directory)
    source, targets = plan.source, plan.targets
    summaries = run_summaries(table, targets)
    best = best_configs(summaries, targets[0], plan.select)
    series = run_series(table)
    floors = _floors(plan)
    methods, taus, rho = performance_profile(best, targets[0])
    rows = []
    for _, entry in sorted(best.items()):
        runs = entry["runs"]
        cells = [entry["method"], _point(entry["point"]), f"{entry['learning_rate']:.3g}"]
        for t in targets:
            solved = sum(bool(np.isfinite(r[f"steps@{t:g}"])) for r in runs)
            medians = [
                np.median([r[f"{k}@{t:g}"] for r in runs]) for k in ("steps", "seconds", "flops")
            ]
            cells += [f"{solved}/{len(runs)}", *(f"{m:.4g}" for m in medians)]
        cells.append(_verdicts(series, runs, floors, targets[-1]))
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = ["method", "axis point", "best η"]
    for t in targets:
        head += [f"solved @{t:g}", "median steps", "median s (share)", "median FLOPs"]
    head.append("verdicts across seeds (from the records; see deeplinear explain)")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
        "font-size:13px}pre{background:#f6f6f6;padding:1em}"
    )
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    profile = _profile_figure(methods, taus, rho, targets[0], directory / "profile")
    curves = _curves_figure(table, best, directory / "curves")
    page = "\n".join(
        [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>deeplinear sweep report</title><style>{style}</style></head><body>",
            "<h1>Sweep report</h1>",
            f"<p>{len(summaries)} runs in {len(best)} groups; medians across seeds at each group's "
            f"best learning rate (chosen by {plan.select.replace('_', ' ')}, median across seeds; "
            f"target {targets[0]:g} of the initial loss). "
            "inf = not reached.</p>",
            f"<table><tr>{header}</tr>{''.join(rows)}</table>",
            f"<h2>Performance profile</h2><img src='data:image/png;base64,{profile}'>",
            f"<h2>Loss curves</h2><img src='data:image/png;base64,{curves}'>",
            f"<h2>Sweep file</h2><pre>{html.escape(source)}</pre></body></html>",
        ]
    )
    out = directory / "report.html"
    write_atomic(out, page.encode())
    return out

"""Figures, drawn from results tables only (they never run experiments).

``notebook_figures`` redraws the notebook's two figures: GD/Adam over 3000 steps (the runs of
methods that declare ``first_order``), and the first 190 steps with LM added; each with loss and
gradient magnitude on log scales, each method in its class's ``line_style`` (Adam's family
dashed), a diverged run drawn up to its last finite loss and marked × there (at the step it
diverged), ``LM step=0.05`` bold black, the 2017 ``rcond=-1`` runs dotted in their modern twin's
colour; the legend outside the axes, beside them.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter

from deeplinear.methods import METHODS  # imported when drawn: it loads JAX
from deeplinear.store.directories import write_atomic
from deeplinear.store.results import run_series


def _decade(value, _position=None) -> str:
    """Plain-text log tick labels ("1e-8"): mathtext labels cost a third of the drawing time."""
    exponent = np.log10(value) if value > 0 else np.nan
    if np.isfinite(exponent) and abs(exponent - round(exponent)) < 1e-9:
        return f"1e{round(exponent)}"
    return f"{value:.0e}"


def _method_class(series):
    """The registered class of a run's method (None for one not registered here)."""

    return METHODS.get(series["method"][0])


RCOND_2017 = " rcond=-1"  # the label suffix of the notebook's literal 2017 LM runs


def _style(series, index: int) -> dict:
    """Colour by ``index`` (10 colours, then the same colours dash-dotted), line style by the
    method's class; the 2017 rcond=-1 runs dotted (in their modern twin's colour, by index)."""
    label, cls = series["run"][0], _method_class(series)
    style: dict = {"lw": 1.5, "color": f"C{index % 10}"}
    if cls is not None and cls.line_style != "-":
        style["ls"] = cls.line_style
    if index >= 10:
        style["ls"] = "-."
    if label.removesuffix(RCOND_2017) == "LM step=0.05":
        style.update(lw=5, color="k", alpha=0.8)
    if RCOND_2017 in label:
        style["ls"] = ":"
        if style["lw"] > 1.5:
            style["lw"] = 2.5  # beside its bold modern twin
    return style


def _colour_indices(runs: list) -> list[tuple[int, dict]]:
    """(colour index, series) per run: a 2017 rcond=-1 run shares its modern twin's index (its
    dotted line tells them apart), every other run has its own."""
    index, pairs = {}, []
    for series in runs:
        key = series["run"][0].removesuffix(RCOND_2017)
        pairs.append((index.setdefault(key, len(index)), series))
    return pairs


DIVERGED_HEADROOM = 1e4  # the y-axes end this far above the largest initial value


def _panel_pair(runs, title: str, upto: int | None, floor=None):
    fig, (ax_loss, ax_grad) = plt.subplots(2, 1, figsize=(14, 9), sharex=True)
    fig.subplots_adjust(left=0.07, right=0.74, top=0.95, bottom=0.07, hspace=0.08)
    # a diverging run climbs to ~1e300 before its first non-finite loss: the axes stop above
    # every run's start, and its × sits where its curve leaves them (at the step it diverged)
    top = {
        ax: DIVERGED_HEADROOM * max((_first_finite(s[key]) for _, s in runs), default=1.0)
        for ax, key in ((ax_loss, "loss"), (ax_grad, "grad_norm"))
    }
    marked = 0
    for index, series in runs:
        steps, loss, grad = series["step"], series["loss"], series["grad_norm"]
        label, style = series["run"][0], _style(series, index)
        keep = np.isfinite(loss)
        if upto is not None:
            keep &= steps <= upto
        diverged = not np.isfinite(loss[-1])
        if diverged:
            label = f"{label} (diverged at step {steps[-1]})"
        shown_loss = np.minimum(loss[keep], 10 * top[ax_loss])  # leaves the axes, not the scale
        ax_loss.semilogy(steps[keep], shown_loss, label=label, **style)
        ax_grad.semilogy(steps[keep], np.minimum(grad[keep], 10 * top[ax_grad]), **style)
        finite = np.flatnonzero(np.isfinite(loss))
        if diverged and len(finite) and (upto is None or steps[finite[-1]] <= upto):
            last = finite[-1]  # the run's last finite loss, at the step before it diverged
            ax_loss.semilogy(
                steps[last],
                min(loss[last], top[ax_loss]),
                marker="x",
                ms=12,
                mew=2.5,
                ls="none",
                color=style["color"],
                zorder=5,
                clip_on=False,
            )
            ax_loss.annotate(  # the × of runs diverging in the first steps overlap: say which
                f"{series['run'][0]} diverged at step {steps[-1]}",
                xy=(steps[last], min(loss[last], top[ax_loss])),
                xytext=(14, -11 * marked),
                textcoords="offset points",
                fontsize=8,
                color=style["color"],
                va="top",
                bbox={"fc": "white", "ec": "none", "alpha": 0.85, "pad": 1},
                zorder=6,
            )
            marked += 1
    for ax, limit in top.items():
        low, high = ax.get_ylim()
        if high > limit:
            ax.set_ylim(low, limit)
    if floor is not None and floor.value > 0:
        ax_loss.axhline(
            floor.value, color="0.5", lw=0.8, ls="-.", label="exact minimum (rounding of Y = A·X)"
        )
        ax_loss.axhspan(
            floor.value,
            floor.value + floor.resolution,
            color="0.85",
            alpha=0.6,
            label="the loop's round-off: below its top the loss is rounding",
        )
    ax_loss.plot([], [], "kx", ms=8, mew=2, ls="none", label="× last finite loss of a diverged run")
    ax_loss.set_ylabel("loss  Σ‖W1 W2 x − y‖²")
    ax_grad.set_ylabel("gradient magnitude")
    ax_grad.set_xlabel("step (updates applied)")
    ax_loss.set_title(title, loc="left")
    for ax in (ax_loss, ax_grad):
        ax.grid(True, which="major", alpha=0.3)
        ax.minorticks_off()
        ax.yaxis.set_major_formatter(FuncFormatter(_decade))
    # beside the axes, never over the curves (one legend: both panels share the runs' styles)
    ax_loss.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)
    return fig


def _first_finite(values) -> float:
    """The run's initial value (its first finite, positive one), 1.0 if it has none."""
    values = np.asarray(values, float)
    good = values[np.isfinite(values) & (values > 0)]
    return float(good[0]) if len(good) else 1.0


def _save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
    return path


def notebook_figures(
    table, out_dir: Path, *, seed: int, condition_number: float, floor=None
) -> list[Path]:
    """Write ``figure1_gd_adam.png`` and ``figure2_with_lm.png`` into ``out_dir`` (``floor``: a
    ``floors.Floor``, drawn on the second with the loop's round-off above it)."""
    runs = _colour_indices(list(run_series(table).values()))  # the index fixes the colour
    first_order = [(i, r) for i, r in runs if getattr(_method_class(r), "first_order", True)]
    head = f"seed {seed}: W1·W2·X ≈ A·X, true κ(A) = {condition_number:.3g} (the notebook said 1e5)"
    fig1 = _panel_pair(first_order, f"GD and Adam, 3000 steps — {head}", None, None)
    fig2 = _panel_pair(runs, f"First 190 steps with LM — {head}", 190, floor)
    fig2.axes[0].set_xlim(0, 190)
    fig2.axes[0].set_yticks(10.0 ** np.arange(-28, 7, 4))
    return [
        _save(fig1, out_dir / "figure1_gd_adam.png"),
        _save(fig2, out_dir / "figure2_with_lm.png"),
    ]


def _grid(count: int, title: str):
    cols = min(4, max(1, count))
    rows = -(-count // cols)
    height = 3.2 * rows + 0.6
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, height), squeeze=False)
    fig.suptitle(title)
    fig.subplots_adjust(
        left=0.1 if cols < 3 else 0.06,
        right=0.98,
        top=1 - 0.75 / height,
        bottom=0.5 / height,
        hspace=0.5,
        wspace=0.45,
    )
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def _log_axes(ax):
    ax.set_yscale("log")
    ax.minorticks_off()
    ax.yaxis.set_major_formatter(FuncFormatter(_decade))
    ax.grid(True, alpha=0.3)


def run_titles(series: dict) -> dict[str, str]:
    """A readable panel title per run id: the run's label (``GD step=0.001``), with its method's
    name where two runs would otherwise share a title, never the internal run id alone."""
    labels = {run_id: str(data["run"][0]) for run_id, data in series.items()}
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    titles = {}
    for run_id, label in labels.items():
        if counts[label] > 1 and "method" in series[run_id]:
            label = f"{label} ({series[run_id]['method'][0]})"
        titles[run_id] = label
    return titles


def mode_figure(series: dict, comparison: dict, out: Path) -> Path:
    """1 − (fraction learned) of each target mode against steps, one panel per run."""
    runs = [(k, v) for k, v in series.items() if "mode_learned" in v]
    titles = run_titles(series)
    fig, axes = _grid(len(runs), "How much of each target singular mode is still missing")
    for ax, (run_id, data) in zip(axes, runs):
        missing = np.abs(1 - data["mode_learned"])
        for i in range(missing.shape[1]):
            ax.plot(
                data["step"],
                np.maximum(missing[:, i], 1e-17),
                lw=1.2,
                color=f"C{i % 10}",
                label=f"mode {i + 1}",
            )
        theory_run = comparison.get("runs", {}).get(run_id)
        if theory_run is not None:
            predicted = np.abs(1 - theory_run["predicted_learned"])
            ax.plot(data["step"], np.maximum(predicted, 1e-17), "k:", lw=1.0)
            ax.plot([], [], "k:", label="exact GD recursion")
        _log_axes(ax)
        ax.set_title(titles[run_id], fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("|1 − u_iᵀ W v_i / s_i|", fontsize=8)
        if ax is axes[0]:
            ax.legend(fontsize=6, loc="best")
    return _save(fig, out)


def prediction_figure(series: dict, continuations: dict, verdicts, floor, out: Path) -> Path:
    """The excess over the reachable minimum (``floors.Floor``), relative to its initial value:
    recorded, continued, the target (where reachable), the verdict's ETA range, and the loop's
    round-off (below it the excess is rounding)."""
    kinds = ", ".join(floor.kinds)
    title = f"Excess over the reachable minimum {floor.value:.3g} ({kinds}), relative to its start"
    if not floor.known:
        title = "Loss relative to its start (the reachable minimum is unknown: 0 bounds it below)"
    fig, axes = _grid(len(series), title)
    by_run = {v.run: v for v in verdicts}
    titles = run_titles(series)
    tiny = max(floor.resolution, np.finfo(np.float64).tiny) * 1e-2

    def relative(loss, start):
        return np.maximum(np.asarray(loss) - floor.value, tiny) / start

    for ax, (run_id, data) in zip(axes, series.items()):
        start = max(data["loss"][0] - floor.value, tiny)
        ax.plot(data["step"], relative(data["loss"], start), color="C0", lw=1.4, label="recorded")
        extra = continuations.get(run_id)
        if extra is not None and extra.steps:
            ax.plot(
                np.concatenate(extra.steps),
                relative(np.concatenate(extra.loss), start),
                color="C1",
                lw=1.0,
                ls="--",
                label="continued",
            )
        verdict = by_run.get(run_id)
        if verdict is not None:
            if verdict.target_reachable and verdict.target_loss is not None:
                goal = (verdict.target_loss - floor.value) / start
                ax.axhline(goal, color="0.4", lw=0.8, ls=":", label="target")
            eta = verdict.eta_steps
            if eta is not None and np.isfinite(eta[1]) and eta[1] > 0:
                last = data["step"][-1]
                ax.axvspan(
                    last + verdict.eta_steps[0],
                    max(last + verdict.eta_steps[1], last + verdict.eta_steps[0] + 1),
                    color="C2",
                    alpha=0.25,
                    label="ETA range",
                )
            ax.set_title(f"{titles[run_id]}: {verdict.kind}", fontsize=9)
        else:
            ax.set_title(titles[run_id], fontsize=9)
        ax.axhspan(
            tiny / start, floor.resolution / start, color="0.85", alpha=0.6, label="loop round-off"
        )
        ax.set_ylabel("(loss − min) / (initial − min)", fontsize=8)
        _log_axes(ax)
        ax.set_ylim(top=min(ax.get_ylim()[1], 1e12))  # diverged runs would swamp the scale
        ax.set_xlabel("step")
        if ax is axes[0]:
            ax.legend(fontsize=6, loc="best")
    return _save(fig, out)


def spectrum_figure(spectra: dict, out: Path, titles: dict | None = None) -> Path:
    """Non-zero Gauss-Newton eigenvalues at each checkpoint, one panel per run (``titles``: run
    id → readable title, ``run_titles``)."""
    titles = titles or {}
    fig, axes = _grid(max(1, len(spectra)), "Gauss-Newton spectrum (2JᵀJ) at checkpoints")
    if not spectra:
        axes[0].text(0.5, 0.5, "no checkpoints recorded", ha="center", transform=axes[0].transAxes)
    for ax, (run_id, rows) in zip(axes, spectra.items()):
        for step, eig in zip(rows["step"], rows["eigenvalues"]):
            ax.scatter(np.full(len(eig), max(step, 1)), eig, s=4, color="C0")
        ax.plot(np.maximum(rows["step"], 1), rows["lambda_min"], "C3.-", lw=1, label="λ_min⁺")
        ax.plot(np.maximum(rows["step"], 1), rows["lambda_max"], "C2.-", lw=1, label="λ_max")
        ax.set_xscale("log")
        _log_axes(ax)
        ax.set_title(titles.get(run_id, run_id), fontsize=9)
        ax.set_xlabel("step (log; 0 shown at 1)")
        ax.set_ylabel("eigenvalue of 2JᵀJ", fontsize=8)
        if ax is axes[0]:
            ax.legend(fontsize=6)
    return _save(fig, out)


def recovery_figure(series: dict, continuations: dict, verdicts, out: Path) -> Path:
    """Per run (one row each): the loss relative to its start, the recovery error
    ‖W − M‖_F/‖M‖_F with the recovery target and the continuation, and the effective rank of W
    (``diagnostics.effective_rank``) beside the truth's rank."""
    runs = [(k, v) for k, v in series.items() if "recovery_error" in v]
    by_run = {v.run: v for v in verdicts}
    titles = run_titles(series)
    rows = max(1, len(runs))
    fig, axes = plt.subplots(rows, 3, figsize=(14, 3.1 * rows + 0.6), squeeze=False)
    fig.suptitle("Fit, recovery and effective rank (recorded solid, continued dashed)")
    fig.subplots_adjust(left=0.07, right=0.98, top=1 - 0.7 / (3.1 * rows + 0.6), hspace=0.55,
                        wspace=0.3, bottom=0.45 / (3.1 * rows + 0.6))  # fmt: skip
    for (ax_loss, ax_rec, ax_rank), (run_id, data) in zip(axes, runs):
        verdict = by_run.get(run_id)
        recovery = None if verdict is None else verdict.recovery
        start = _first_finite(data["loss"])
        extra = continuations.get(run_id)
        continued = extra is not None and extra.steps
        ax_loss.plot(data["step"], np.maximum(data["loss"] / start, 1e-300), color="C0", lw=1.4)
        ax_rec.plot(data["step"], data["recovery_error"], color="C3", lw=1.4, label="recorded")
        if continued:
            steps = np.concatenate(extra.steps)
            ax_loss.plot(steps, np.maximum(np.concatenate(extra.loss) / start, 1e-300),
                         color="C0", lw=1.0, ls="--")  # fmt: skip
            if getattr(extra, "recovery", None):
                ax_rec.plot(steps, np.concatenate(extra.recovery), color="C3", lw=1.0, ls="--",
                            label="continued")  # fmt: skip
        if recovery is not None:
            ax_rec.axhline(recovery.target, color="0.4", lw=0.8, ls=":", label="target")
        if "effective_rank" in data:
            ax_rank.plot(data["step"], data["effective_rank"], color="C2", lw=1.4)
        fit = "" if verdict is None else f": {verdict.kind}"
        ax_loss.set_title(f"{titles[run_id]}{fit}", fontsize=9)
        ax_rec.set_title(
            "recovery" + ("" if recovery is None else f": {recovery.kind}"), fontsize=9
        )
        ax_rank.set_title("effective rank of W (exp of the σ entropy)", fontsize=9)
        ax_loss.set_ylabel("loss / initial", fontsize=8)
        ax_rec.set_ylabel("‖W − M‖_F / ‖M‖_F", fontsize=8)
        ax_rank.set_ylabel("effective rank", fontsize=8)
        for ax in (ax_loss, ax_rec):
            _log_axes(ax)
        ax_rank.grid(True, alpha=0.3)
        for ax in (ax_loss, ax_rec, ax_rank):
            ax.set_xlabel("step")
        if run_id == runs[0][0]:
            ax_rec.legend(fontsize=6, loc="best")
    return _save(fig, out)


def sharpness_figure(series: dict, out: Path) -> Path:
    """Per run that records the sharpness (``[diagnostics] sharpness``): λ_max of the loss's
    Hessian against the step with GD's stability limit 2/η (Cohen et al. 2021: it rises to it
    and hovers there), and the loss on a second axis (it keeps falling, not monotonically)."""
    runs = [(k, v) for k, v in series.items() if "sharpness" in v]
    titles = run_titles(series)
    fig, axes = plt.subplots(1, max(1, len(runs)), figsize=(4.6 * max(1, len(runs)), 3.8),
                             squeeze=False)  # fmt: skip
    fig.suptitle("Sharpness (λ_max of the Hessian, Lanczos) against 2/η; loss (grey, right)")
    fig.subplots_adjust(left=0.07, right=0.93, top=0.83, bottom=0.14, wspace=0.45)
    for ax, (run_id, data) in zip(axes[0], runs):
        rate = float(data["learning_rate"][0])
        ax.plot(data["step"], data["sharpness"], color="C3", lw=1.3, label="sharpness")
        ax.axhline(2 / rate, color="k", lw=0.9, ls="--", label="2/η")
        ax.axhspan(0.9 * 2 / rate, 1.1 * 2 / rate, color="0.85", alpha=0.5, label="±10 %")
        ax.set_ylim(0, 1.4 * max(2 / rate, float(np.nanmax(data["sharpness"]))))
        ax.set_title(titles[run_id], fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("sharpness", fontsize=8)
        ax.grid(True, alpha=0.3)
        twin = ax.twinx()
        twin.plot(data["step"], data["loss"], color="0.5", lw=0.9)
        twin.set_yscale("log")
        twin.set_ylabel("loss", fontsize=8)
        if run_id == runs[0][0]:
            ax.legend(fontsize=6, loc="lower right")
    return _save(fig, out)


def explain_figures(
    series, spectra, continuations, verdicts, comparison, out_dir: Path, floor
) -> list[Path]:
    """modes.png (where a target's modes are known), prediction.png, gn_spectrum.png;
    held_out.png for a ratings run; recovery.png where runs record the recovery error (a
    completion or sensing problem with its truth); sharpness.png where they record the
    sharpness."""
    files = []
    if any("mode_learned" in data for data in series.values()):  # a target's modes known
        files.append(mode_figure(series, comparison, out_dir / "modes.png"))
    files += [
        prediction_figure(series, continuations, verdicts, floor, out_dir / "prediction.png"),
        spectrum_figure(spectra, out_dir / "gn_spectrum.png", run_titles(series)),
    ]
    if any("validation_rmse" in data for data in series.values()):
        files.append(held_out_figure(series, continuations, verdicts, out_dir / "held_out.png"))
    if any("recovery_error" in data for data in series.values()):
        files.append(recovery_figure(series, continuations, verdicts, out_dir / "recovery.png"))
    if any("sharpness" in data for data in series.values()):
        files.append(sharpness_figure(series, out_dir / "sharpness.png"))
    return files


def held_out_figure(series: dict, continuations: dict, verdicts, out: Path) -> Path:
    """A ratings run's RMSE on its training, validation and test ratings against steps,
    recorded (solid) and continued by explain (dashed), the best validation step marked."""
    runs = [(k, v) for k, v in series.items() if "validation_rmse" in v]
    by_run = {v.run: v for v in verdicts}
    titles = run_titles(series)
    fig, axes = _grid(len(runs), "Training and held-out RMSE (clipped predictions)")
    colours = {"train_rmse": "C0", "validation_rmse": "C1", "test_rmse": "C2"}
    for ax, (run_id, data) in zip(axes, runs):
        extend = continuations.get(run_id)
        more = None if extend is None else extend.held_out_series()
        for name, colour in colours.items():
            ax.plot(data["step"], data[name], color=colour, label=name.replace("_", " "))
            if more is not None:
                ax.plot(more["step"], more[name], color=colour, ls="--")
        held = getattr(by_run.get(run_id), "held_out", None)
        if held is not None and held.best_step is not None:
            ax.axvline(held.best_step, color="0.4", lw=0.8, ls=":", label="best validation")
            ax.set_title(f"{titles.get(run_id, run_id)}\n{held.kind}", fontsize=8)
        else:
            ax.set_title(titles.get(run_id, run_id), fontsize=8)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("RMSE", fontsize=8)
        ax.grid(True, alpha=0.3)
        if run_id == runs[0][0]:
            ax.legend(fontsize=6)
    return _save(fig, out)

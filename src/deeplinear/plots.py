"""Figures, drawn from results tables only (they never run experiments).

``notebook_figures`` redraws the notebook's two figures: GD/Adam over 3000 steps (the runs of
methods that declare ``first_order``), and the first 190 steps with LM added; each with loss and
gradient magnitude on log scales, each method in its class's ``line_style`` (Adam's family
dashed), diverged runs marked × at their first point, ``LM step=0.05`` bold black.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter

from .results import run_series
from .rundir import write_atomic


def _decade(value, _position=None) -> str:
    """Plain-text log tick labels ("1e-8"): mathtext labels cost a third of the drawing time."""
    exponent = np.log10(value) if value > 0 else np.nan
    if np.isfinite(exponent) and abs(exponent - round(exponent)) < 1e-9:
        return f"1e{round(exponent)}"
    return f"{value:.0e}"


def _method_class(series):
    """The registered class of a run's method (None for one not registered here)."""
    from .methods import METHODS  # imported when drawn: it loads JAX

    return METHODS.get(series["method"][0])


def _style(series, index: int) -> dict:
    label, cls = series["run"][0], _method_class(series)
    style: dict = {"lw": 1.5, "color": f"C{index % 10}"}
    if cls is not None and cls.line_style != "-":
        style["ls"] = cls.line_style
    if label == "LM step=0.05":
        style.update(lw=5, color="k", alpha=0.8)
    if "rcond=-1" in label:
        style["ls"] = ":"
    return style


def _panel_pair(runs, title: str, upto: int | None, floor=None):
    fig, (ax_loss, ax_grad) = plt.subplots(2, 1, figsize=(12, 9), sharex=True)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.95, bottom=0.07, hspace=0.08)
    for index, series in runs:
        steps, loss, grad = series["step"], series["loss"], series["grad_norm"]
        label, style = series["run"][0], _style(series, index)
        if not np.isfinite(loss[-1]):
            ax_loss.semilogy(
                steps[:1],
                loss[:1],
                marker="x",
                ms=10,
                mew=2,
                ls="none",
                label=f"(diverged at step {steps[-1]}) {label}",
                **{k: v for k, v in style.items() if k != "ls"},
            )
            continue
        keep = steps <= upto if upto is not None else slice(None)
        ax_loss.semilogy(steps[keep], loss[keep], label=label, **style)
        ax_grad.semilogy(steps[keep], grad[keep], label=label, **style)
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
    ax_loss.set_ylabel("loss  Σ‖W1 W2 x − y‖²")
    ax_grad.set_ylabel("gradient magnitude")
    ax_grad.set_xlabel("step (updates applied)")
    ax_loss.set_title(title)
    for ax in (ax_loss, ax_grad):
        ax.grid(True, which="major", alpha=0.3)
        ax.minorticks_off()
        ax.yaxis.set_major_formatter(FuncFormatter(_decade))
        ax.legend(loc="best", fontsize=8)
    return fig


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
    runs = list(enumerate(run_series(table).values()))  # index fixes each run's colour
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
        wspace=0.3,
    )
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def _log_axes(ax):
    ax.set_yscale("log")
    ax.minorticks_off()
    ax.yaxis.set_major_formatter(FuncFormatter(_decade))
    ax.grid(True, alpha=0.3)


def mode_figure(series: dict, comparison: dict, out: Path) -> Path:
    """1 − (fraction learned) of each target mode against steps, one panel per run."""
    runs = [(k, v) for k, v in series.items() if "mode_learned" in v]
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
        ax.set_title(data["run"][0], fontsize=9)
        ax.set_xlabel("step")
        if ax is axes[0]:
            ax.set_ylabel("|1 − u_iᵀ W v_i / s_i|")
            ax.legend(fontsize=6, loc="lower left")
    return _save(fig, out)


def prediction_figure(series: dict, continuations: dict, verdicts, floor, out: Path) -> Path:
    """The excess over the reachable minimum (``floors.Floor``), relative to its initial value:
    recorded, continued, the target (where reachable), the verdict's ETA range, and the loop's
    round-off (below it the excess is rounding)."""
    kinds = ", ".join(floor.kinds)
    fig, axes = _grid(
        len(series),
        f"Excess over the reachable minimum {floor.value:.3g} ({kinds}), relative to its start",
    )
    by_run = {v.run: v for v in verdicts}
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
            ax.set_title(f"{data['run'][0]}: {verdict.kind}", fontsize=9)
        ax.axhspan(
            tiny / start, floor.resolution / start, color="0.85", alpha=0.6, label="loop round-off"
        )
        ax.set_ylabel("(loss − min) / (initial − min)", fontsize=8)
        _log_axes(ax)
        ax.set_ylim(top=min(ax.get_ylim()[1], 1e12))  # diverged runs would swamp the scale
        ax.set_xlabel("step")
        if ax is axes[0]:
            ax.legend(fontsize=6, loc="lower left")
    return _save(fig, out)


def spectrum_figure(spectra: dict, out: Path) -> Path:
    """Non-zero Gauss-Newton eigenvalues at each checkpoint, one panel per run."""
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
        ax.set_title(run_id, fontsize=8)
        ax.set_xlabel("step (log; 0 shown at 1)")
        if ax is axes[0]:
            ax.legend(fontsize=6)
    return _save(fig, out)


def explain_figures(
    series, spectra, continuations, verdicts, comparison, out_dir: Path, floor
) -> list[Path]:
    return [
        mode_figure(series, comparison, out_dir / "modes.png"),
        prediction_figure(series, continuations, verdicts, floor, out_dir / "prediction.png"),
        spectrum_figure(spectra, out_dir / "gn_spectrum.png"),
    ]

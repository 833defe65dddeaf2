"""Figures, drawn from results tables only (they never run experiments).

``notebook_figures`` redraws the notebook's two figures: GD/Adam over 3000 steps, and the first
190 steps with LM added; each with loss and gradient magnitude on log scales, Adam dashed,
diverged runs marked × at their first point, ``LM step=0.05`` bold black.
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


def _style(series, index: int) -> dict:
    method, label = series["method"][0], series["run"][0]
    style: dict = {"lw": 1.5, "color": f"C{index % 10}"}
    if "adam" in method:
        style["ls"] = "--"
    if label == "LM step=0.05":
        style.update(lw=5, color="k", alpha=0.8)
    if "rcond=-1" in label:
        style["ls"] = ":"
    return style


def _panel_pair(runs, title: str, upto: int | None, floor: float | None):
    fig, (ax_loss, ax_grad) = plt.subplots(2, 1, figsize=(12, 9), sharex=True)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.95, bottom=0.07, hspace=0.08)
    for index, series in runs:
        steps, loss, grad = series["step"], series["loss"], series["grad_norm"]
        label, style = series["run"][0], _style(series, index)
        if not np.isfinite(loss[-1]):
            ax_loss.semilogy(
                steps[:1], loss[:1], marker="x", ms=10, mew=2, ls="none",
                label=f"(diverged at step {steps[-1]}) {label}",
                **{k: v for k, v in style.items() if k != "ls"},
            )  # fmt: skip
            continue
        keep = steps <= upto if upto is not None else slice(None)
        ax_loss.semilogy(steps[keep], loss[keep], label=label, **style)
        ax_grad.semilogy(steps[keep], grad[keep], label=label, **style)
    if floor is not None and floor > 0:
        ax_loss.axhline(floor, color="0.5", lw=0.8, ls="-.", label="round-off floor of Y = A·X")
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
    table, out_dir: Path, *, seed: int, condition_number: float, floor: float | None = None
) -> list[Path]:
    """Write ``figure1_gd_adam.png`` and ``figure2_with_lm.png`` into ``out_dir``."""
    runs = list(enumerate(run_series(table).values()))  # index fixes each run's colour
    first_order = [(i, r) for i, r in runs if r["method"][0] != "seed-lm"]
    head = f"seed {seed}: W1·W2·X ≈ A·X, true κ(A) = {condition_number:.3g} (the notebook said 1e5)"
    fig1 = _panel_pair(first_order, f"GD and Adam, 3000 steps — {head}", None, None)
    fig2 = _panel_pair(runs, f"First 190 steps with LM — {head}", 190, floor)
    fig2.axes[0].set_xlim(0, 190)
    fig2.axes[0].set_yticks(10.0 ** np.arange(-28, 7, 4))
    return [
        _save(fig1, out_dir / "figure1_gd_adam.png"),
        _save(fig2, out_dir / "figure2_with_lm.png"),
    ]

"""The printed summary of a reproduction: the problem's truth, a table of runs, and what the
notebook got wrong, each claim backed by a number measured in this run."""

from __future__ import annotations

import numpy as np

from .experiment import LM_FIDELITY_FLOOR
from .reproduce import Reproduction
from .results import run_series


def _fmt(x) -> str:
    return "—" if x is None else f"{x:.3e}"


def run_table(table) -> list[str]:
    """Per run: final and best loss, the step it diverged at, and its batch's wall time."""
    lines = [f"{'run':<24}{'final loss':>12}{'best loss':>12}{'diverged at':>13}{'time (s)':>10}"]
    for series in run_series(table).values():
        loss = series["loss"]
        finite = loss[np.isfinite(loss)]
        diverged = None if np.isfinite(loss[-1]) else int(series["step"][-1])
        lines.append(
            f"{series['run'][0]:<24}{_fmt(loss[-1] if diverged is None else None):>12}"
            f"{_fmt(finite.min() if finite.size else None):>12}"
            f"{('step ' + str(diverged)) if diverged is not None else '—':>13}"
            f"{series['seconds'][-1]:>10.3f}"
        )
    return lines


def findings(reproduction: Reproduction) -> list[str]:
    """What the notebook got wrong, measured on this seed."""
    problem = reproduction.problem
    runs = {s["run"][0]: s for s in reproduction.runs.values()}
    out = [
        f"- κ(A) is {problem.condition_number:.3g}, not 1e5: np.linspace(1, 1e-5, 10) scales the "
        "rows of A, not its singular values.",
    ]
    gd = runs.get("GD step=1e-05")
    if gd is not None and np.isfinite(gd["loss"][-1]) and len(gd["loss"]) > 1000:
        tail = np.log(gd["loss"][-1001:])
        slope = np.polyfit(np.arange(tail.size), tail, 1)[0]
        out.append(
            f"- GD is slow, not stuck: 'GD step=1e-05' fell ×{np.exp(tail[0] - tail[-1]):.2f} over "
            f"its last 1000 steps (loss × {np.exp(slope):.6f} per step) and is still falling."
        )
    modern, legacy = runs.get("LM step=0.2"), runs.get("LM step=0.2 rcond=-1")
    lm = modern or legacy
    if lm is not None:
        true, printed = lm["loss"], lm["loss_notebook"]
        keep = true > LM_FIDELITY_FLOOR * true[0]
        ratio = printed[keep] / true[keep]
        out.append(
            "- Its LM loss is (Σ residual)², not Σ residual²: for "
            f"'{lm['run'][0]}' the printed value is ×{ratio.min():.3g} to ×{ratio.max():.3g} "
            "the true loss (column loss_notebook keeps it)."
        )
    floor = float(problem.objective().floor)
    if modern is not None:
        first = int(modern["step"][np.argmax(modern["loss"] < 10 * floor)])
        text = (
            f"- Its LM 'floor' is the 2017 lstsq cut-off: with modern lstsq, 'LM step=0.2' reaches "
            f"{modern['loss'].min():.2e} (the round-off floor of Y = A·X is {floor:.2e}) by step "
            f"{first}"
        )
        if legacy is not None:
            text += f"; with rcond=-1 (2017) its best is {legacy['loss'].min():.2e}."
        else:
            text += "; run with --rcond both to see the 2017 setting stall."
        out.append(text)
    elif legacy is not None:
        out.append(
            f"- With rcond=-1 (2017) 'LM step=0.2' stalls at {legacy['loss'].min():.2e}; "
            "run with --rcond modern to see it reach the round-off floor."
        )
    return out


def summary_lines(reproduction: Reproduction) -> list[str]:
    problem = reproduction.problem
    s = problem.singular_values
    lines = [
        f"deeplinear reproduce — seed {reproduction.seed}: A is {problem.A.shape[0]}×"
        f"{problem.A.shape[1]}, n = {problem.X.shape[1]} samples",
        "singular values of A: "
        + " ".join(f"{v:.3g}" for v in s)
        + f";  true κ(A) = {problem.condition_number:.3g}",
        "",
        *run_table(reproduction.table),
        "(time: wall seconds of the run's batch, compile excluded; batched runs share it)",
        "",
        "Where the notebook misleads:",
        *findings(reproduction),
    ]
    if reproduction.check is not None:
        lines += ["", "Check against the notebook's algorithms in plain NumPy "
                  "(largest relative deviation; LM while loss > 1e-12 × initial):"]  # fmt: skip
        lines += [f"  {label:<24}{dev:.2e}" for label, dev in reproduction.check.items()]
    if reproduction.files:
        lines += ["", "wrote " + ", ".join(str(p) for p in reproduction.files)]
    return lines

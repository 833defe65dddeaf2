"""The printed summary of a reproduction: the problem's truth, a table of runs, and what the
notebook got wrong, each claim backed by a number measured in this run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from deeplinear.diagnostics.floors import widths_of
from deeplinear.notebook2017.experiment import (
    LITERAL_LM_VARIANT,
    LM_FIDELITY_FLOOR,
    LM_RUN,
    SLOW_GD_RUN,
)
from deeplinear.store.results import run_series

if TYPE_CHECKING:  # reproduce imports matplotlib: `deeplinear run` needs only run_table
    from deeplinear.notebook2017.reproduce import Reproduction


def _fmt(x) -> str:
    return "—" if x is None else f"{x:.3e}"


def run_table(table, final_losses: dict | None = None, floor=None) -> list[str]:
    """Per run: final and best loss, the step it diverged at, and its batch's wall time.

    ``final_losses`` (label → (value, bound), ``execution.final_losses``: the reported final
    loss, the final weights' double-double loss near convergence) replaces the loop's float64
    final loss where given (the loop's value is off by up to ~1e-26 at the seed's size; see
    ``floors``). With a ``floors.Floor``, a best loss within the loop's round-off of
    the minimum is marked ``*``: its digits are rounding.
    """
    final_losses = final_losses or {}
    everything = run_series(table).values()
    width = max([24, *(len(series["run"][0]) + 2 for series in everything)])
    lines = [
        f"{'run':<{width}}{'final loss':>12}{'best loss':>12}{'diverged at':>13}{'time (s)':>10}"
    ]
    for series in everything:
        loss = series["loss"]
        finite = loss[np.isfinite(loss)]
        diverged = None if np.isfinite(loss[-1]) else int(series["step"][-1])
        final = final_losses.get(series["run"][0], (loss[-1],))[0]
        lines.append(
            f"{series['run'][0]:<{width}}{_fmt(final if diverged is None else None):>12}"
            f"{_best(finite, floor):>12}"
            f"{('step ' + str(diverged)) if diverged is not None else '—':>13}"
            f"{series['seconds'][-1]:>10.3f}"
        )
    return lines


def _best(finite, floor) -> str:
    if not finite.size:
        return _fmt(None)
    best = finite.min()
    return _fmt(best) + ("*" if floor is not None and floor.reached(best) else "")


def findings(reproduction: Reproduction) -> list[str]:
    """What the notebook got wrong, measured on this seed."""
    problem = reproduction.problem
    runs = reproduction.runs.values()
    out = [
        f"- κ(A) is {problem.condition_number:.3g}, not 1e5: np.linspace(1, 1e-5, 10) scales the "
        "rows of A, not its singular values.",
    ]
    gd = _find(runs, *SLOW_GD_RUN)
    if gd is not None and np.isfinite(gd["loss"][-1]) and len(gd["loss"]) > 1000:
        tail = np.log(gd["loss"][-1001:])
        slope = np.polyfit(np.arange(tail.size), tail, 1)[0]
        out.append(
            f"- GD is slow, not stuck: '{gd['run'][0]}' fell ×{np.exp(tail[0] - tail[-1]):.2f} "
            f"over its last 1000 steps (loss × {np.exp(slope):.6f} per step) and is still falling."
        )
    modern, legacy = _find(runs, *LM_RUN), _find(runs, *LM_RUN, literal=True)
    lm = modern or legacy
    if lm is not None:
        true, printed = lm["loss"], lm["loss_notebook"]
        keep = true > LM_FIDELITY_FLOOR * true[0]
        ratio = printed[keep] / true[keep]
        every = printed[true > 0] / true[true > 0]
        out.append(
            "- Its LM loss is (Σ residual)², not Σ residual²: for "
            f"'{lm['run'][0]}' the printed value is ×{ratio.min():.3g} to ×{ratio.max():.3g} "
            f"the true loss while the loss is above {LM_FIDELITY_FLOOR:g} of its start "
            f"(×{every.min():.2g} to ×{every.max():.3g} over all {true.size} records; column "
            "loss_notebook keeps it)."
        )
    floor = problem.floor(widths_of(reproduction.weights))
    if modern is not None:
        first = int(modern["step"][np.argmax(floor.reached(modern["loss"]))])
        label = modern["run"][0]
        final, bound = reproduction.final_losses.get(label, (modern["loss"][-1], None))
        how = "float64" if bound is None else f"double-double, ±{bound:.0e}"
        text = (
            f"- Its LM 'floor' is the 2017 lstsq cut-off: with modern lstsq, '{label}' is "
            f"within the loop's round-off ({floor.resolution:.1e}) of the exact minimum "
            f"{floor.value:.2e} (the rounding of Y = A·X) by step {first}; its final loss is "
            f"{final:.2e} ({how})"
        )
        if legacy is not None:
            text += f"; with rcond=-1 (2017) its best is {legacy['loss'].min():.2e}."
        else:
            text += "; run with --rcond both to see the 2017 setting stall."
        out.append(text)
    elif legacy is not None:
        out.append(
            f"- With rcond=-1 (2017) '{legacy['run'][0]}' stalls at {legacy['loss'].min():.2e}; "
            "run with --rcond modern to see it reach the exact minimum."
        )
    return out


def _find(runs, batch, rate: float, literal: bool = False):
    """The run of ``batch`` (``experiment.Batch``) at ``rate`` (the 2017 literal LM with
    ``literal``), or None where the reproduction did not run it."""
    for series in runs:
        if (
            series["method"][0] == batch.method
            and series["learning_rate"][0] == rate
            and (series["variant"][0] == LITERAL_LM_VARIANT) == literal
        ):
            return series
    return None


def summary_lines(reproduction: Reproduction) -> list[str]:
    problem = reproduction.problem
    floor = problem.floor(widths_of(reproduction.weights))
    s = problem.singular_values
    lines = [
        f"deeplinear reproduce — seed {reproduction.seed}: A is {problem.A.shape[0]}×"
        f"{problem.A.shape[1]}, n = {problem.X.shape[1]} samples",
        "singular values of A: "
        + " ".join(f"{v:.3g}" for v in s)
        + f";  true κ(A) = {problem.condition_number:.3g}",
        "",
        *run_table(reproduction.table, reproduction.final_losses, floor),
        "(final loss: the final weights' loss in double-double arithmetic near the minimum, else "
        "the loop's float64 value; best loss: the loop's "
        f"float64 value, * where within its round-off {floor.resolution:.1e} of the exact minimum "
        f"{floor.value:.2e}; time: wall seconds of the run's batch, compile excluded; batched "
        "runs share it)",
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

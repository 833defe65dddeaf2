"""One way to judge a run, for run and sweep directories alike: its fit verdict
(``verdict.judge`` on the excess over the reachable minimum, continued where a ``Continuation``
is given), the per-mode evidence of its end, and the recovery verdict of a measured run with its
truth, reconciled with the fit verdict."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from deeplinear.diagnostics import theory
from deeplinear.diagnostics.floors import Floor, recovery_resolution
from deeplinear.diagnostics.identifiability import identifiability
from deeplinear.errors import UsageError
from deeplinear.objectives.measurement import is_measured
from deeplinear.problems.measured import MeasuredProblem
from deeplinear.verdict import (
    Verdict,
    default_recovery_target,
    judge,
    judge_held_out,
    judge_recovery_of,
    mode_evidence,
)


@dataclass(frozen=True)
class Context:
    """What every verdict of one ``explain`` is judged against."""

    target: float  # the loss target, relative to the initial loss (or excess)
    relative_to: str  # "initial" | "excess"
    budget_steps: int  # how far a run may be continued
    recovery_target: float  # ‖W − M‖/‖M‖ for the recovery verdict


@dataclass(frozen=True)
class RunRecord:
    """One run as the judge sees it: its recorded rows and what it was run with."""

    run_id: str
    data: dict  # column → recorded values (``results.run_series``)
    method: object
    learning_rate: float
    setup: object  # ``execution.Setup``: problem, objective, widths, probe
    floor: Floor
    extend: object | None = None  # a ``Continuation`` from the run's end, or None
    gn_rate: float | None = None  # the Gauss-Newton predicted rate at the run's end
    notes: tuple[str, ...] = ()  # evidence about how the record was obtained (a re-run)


def judge_run(record: RunRecord, context: Context, comparison: dict) -> Verdict:
    """The finished verdict of one run: fit, per-mode evidence and recovery."""
    data, method, rate = record.data, record.method, record.learning_rate
    floor, gauge = at_record_end(record)
    verdict = judge(
        record.run_id,
        data["step"],
        data["loss"],
        floor=floor,
        target=context.target,
        relative_to=context.relative_to,
        grad_norm=data.get("grad_norm"),
        gn_rate=record.gn_rate,
        learning_rate=rate,
        gd_like=method.gauss_newton_rate,
        extend=record.extend,
        budget_steps=context.budget_steps,
        theory_steps=theory_steps(comparison, method, rate, context.budget_steps),
    )
    learned = learned_modes(data, record.extend)
    if learned is not None and verdict.kind != "diverged":
        verdict.evidence += mode_evidence(learned, record.floor.width)
    verdict.evidence += [*gauge, *record.notes]
    verdict.recovery = judge_recovery(
        data, verdict, record.setup, record.floor, record.extend,
        target=context.recovery_target, budget_steps=context.budget_steps,
    )  # fmt: skip
    verdict.held_out = judge_held_out_of(data, record.extend)
    return verdict


def judge_held_out_of(run_data: dict, extend=None):
    """A ratings run's held-out verdict (``verdict.judge_held_out``) on its record and, where
    ``extend`` continued it, the continuation's records after it; None for other runs."""
    if "validation_rmse" not in run_data:
        return None
    names = ("step", "loss", "train_rmse", "validation_rmse", "test_rmse")
    series = {name: np.asarray(run_data[name], dtype=np.float64) for name in names}
    more = None if extend is None else extend.held_out_series()
    if more is not None:
        series = {name: np.concatenate([series[name], more[name]]) for name in names}
    return judge_held_out(
        series["step"], series["loss"], series["train_rmse"], series["validation_rmse"],
        test_rmse=series["test_rmse"],
    )  # fmt: skip


def at_record_end(record: RunRecord) -> tuple[Floor, list[str]]:
    """The floor the fit is judged against, its resolution that of the weights at the record's
    end (``Floor.resolution_at``: never less than the floor's, more where their gauge rounds
    worse than the balanced best map's), and the evidence line saying so."""
    floor, extend = record.floor, record.extend
    weights = None if extend is None else tuple(np.asarray(w)[0] for w in extend.weights)
    factor = getattr(record.setup.objective, "factor", None)
    right = None if factor is None else np.asarray(factor).T
    resolution = floor.resolution_at(weights, right)
    if not resolution > floor.resolution:
        return floor, []
    line = (
        f"round-off of these weights: {resolution:.1e}, their gauge rounding "
        f"{resolution / floor.resolution:.3g}× worse than the balanced best map's (where the "
        f"resolution {floor.resolution:.1e} was measured)"
    )
    return dataclasses.replace(floor, resolution=resolution), [line]


def judge_recovery(run_data: dict, verdict, setup, floor, extend, *, target, budget_steps):
    """The recovery verdict of one run beside its fit ``verdict`` (None without a truth):
    judged on the recorded ``recovery_error`` and, where ``extend`` (a ``Continuation``) is
    given, continued further until it cannot change."""
    if "recovery_error" not in run_data or not is_measured(setup.objective):
        return None
    handle = None if extend is None else extend.recovery_handle
    recovery = judge_recovery_of(
        run_data["step"],
        np.asarray(run_data["recovery_error"], dtype=np.float64),
        fit=verdict,
        target=target,
        resolution=recovery_resolution(setup.problem, floor),
        grad_norm=run_data.get("grad_norm"),
        extend=handle,
        budget_steps=budget_steps,
        noise=float(getattr(setup.problem, "noise", 0.0) or 0.0),
    )
    return not_identifiable(recovery, identifiability_of(setup))


PREDICTIONS = ("recovering linearly", "recovering sublinearly", "recovery stalled", "too short")


def not_identifiable(recovery, counts):
    """``recovery`` where Ω can determine M; where it cannot (``counts`` not identifiable), a
    verdict that predicted recovery (an ETA, "stalled", "too short") says instead that no
    number of steps recovers M: what the run measured (recovered, unstable, diverged) stands."""
    if counts is None or counts.identifiable or recovery.kind not in PREDICTIONS:
        return recovery
    why = "; ".join(counts.reasons())
    error = "" if recovery.error is None else f"; ‖W − M‖/‖M‖ = {recovery.error:.3g}"
    headline = (
        f"does not recover M, and no method could: not identifiable from these entries ({why})"
        f"{error} at step {recovery.step}"
    )
    evidence = [f"instead of: {recovery.headline}", *recovery.evidence]
    return dataclasses.replace(
        recovery, kind="does not recover", headline=headline, eta_steps=None, eta_method=None,
        evidence=evidence,
    )  # fmt: skip


def recovery_target_for(target: float, given: float | None) -> float:
    """The recovery target: ``given``, checked to lie in (0, 1), or where none is given the
    default for the loss target ``target`` (``verdict.default_recovery_target``: √target)."""
    value = default_recovery_target([target]) if given is None else given
    if not 0 < value < 1:
        raise UsageError(f"--recovery-target must be in (0, 1) (‖W − M‖/‖M‖), got {value:g}")
    return value


def theory_steps(comparison, method, rate: float, budget: int):
    """goal ↦ the step the exact decoupled recursion reaches it, where the theory applies."""
    if not comparison.get("applies") or not method.gauss_newton_rate:
        return None
    rate = float(method.learning_rate_used(rate))
    s, layers, c, rest = comparison["_modes"]
    horizon = 2 * max(budget, 1)  # the recursion is cheap: look past the budget
    return lambda goal: theory.decoupled_gd_first_below(layers, s, rate, c, rest, goal, horizon)


def learned_modes(data: dict, extend) -> np.ndarray | None:
    """How much of each mode the run's end has learned: continued, else its last record."""
    now = None if extend is None else extend.modes
    if now is not None:
        return now
    learned = data.get("mode_learned")
    if learned is None or np.ndim(learned) != 2 or not np.all(np.isfinite(learned[-1])):
        return None
    return learned[-1]


def identifiability_of(setup):
    """The identifiability counts of a completion's Ω (``diagnostics.identifiability``) at the
    truth's rank, or the model's narrowest width without a truth; None for other problems."""
    problem = setup.problem
    if not isinstance(problem, MeasuredProblem) or problem.kind != "completion":
        return None
    rank = problem.rank if problem.has_truth else int(min(setup.widths))
    return identifiability(*problem.line_counts, problem.shape, rank)

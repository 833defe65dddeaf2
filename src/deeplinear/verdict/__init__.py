"""Is it a floor, or slow convergence? A verdict per run, with its evidence.

Everything is judged on the **excess loss** ``f − f*`` above the reachable minimum f* of the
problem at its architecture (``floors.Floor``: round-off, label noise, or the Eckart–Young
residual when a width is below the target's rank), never on the loss alone. ``judge`` classifies
a run as

- **converged** — the excess is within the round-off of the loop's loss (``Floor.resolution``);
- **diverged** — a non-finite loss;
- **converging linearly** / **sublinear** — log-excess falls at a stable rate / a falling rate;
- **plateau** — no measurable progress, but the gradient is not zero: continuing (within the step
  budget) escapes, or the run sits near a saddle of the loss;
- **saddle** — the gradient is zero (to round-off) with excess left: for deep linear nets every
  local minimum is global (Baldi & Hornik 1989; Kawaguchi 2016), so this is a saddle; the Hessian's
  smallest eigenvalue and the escape after a small perturbation say how strict;
- **unstable** — the loss touches the target but does not stay below it;
- **oscillating** / **stalled** — no net progress over the whole budget, with a non-zero gradient
  (a floor of the method at this step size, not of the problem);
- **too short** — fewer than 4 records.

**ETAs** are ranges with their origin: ``measured`` (the run was continued until it crossed the
target *and stayed below it* for at least as many steps again, or, for an unstable run, the
spread of the crossing over runs from the initial weights perturbed at 1e-12), ``extrapolated``
(rates fitted on several windows of the evidence, widened by the Gauss-Newton prediction
``(1 − η λ_min⁺)²`` where it applies), or ``theory`` (the exact decoupled recursion). A target at
or below the reachable minimum is **unreachable**: no ETA, and the verdict says why.

``judge`` is three steps, one module each: ``_continuation`` extends the evidence with the run's
handle until the verdict cannot change and answers the classification's questions;
``_classification`` turns the evidence and those answers into a kind and its numbers (pure, no
words); ``_wording`` writes the headline and the evidence sentences. ``_evidence`` holds the
record with its continuation and ``classify``, the shape of a loss curve.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from deeplinear.diagnostics.floors import Floor
from deeplinear.verdict import _continuation as continuation
from deeplinear.verdict._classification import (
    ESCAPE_PERTURBATION,
    NEAR_CRITICAL,
    PERTURBED_RUNS,
    Finding,
    Question,
    Setting,
    classify_run,
)
from deeplinear.verdict._continuation import Handle
from deeplinear.verdict._eta import reliable as reliable_eta
from deeplinear.verdict._evidence import (
    WINDOWS,
    ZERO_GRADIENT,
    Evidence,
    classify,
    steps_to,
    window_rates,
)
from deeplinear.verdict._held_out import HELD_OUT_KINDS, HeldOutVerdict, judge_held_out
from deeplinear.verdict._recovery import (
    RECOVERY_KINDS,
    Recovery,
    default_recovery_target,
    judge_recovery,
    reconciled,
    recovery_floor,
    remaining,
)
from deeplinear.verdict._wording import mode_evidence, words

__all__ = [
    "ESCAPE_PERTURBATION",
    "HELD_OUT_KINDS",
    "KINDS",
    "NEAR_CRITICAL",
    "PERTURBED_RUNS",
    "RECOVERY_KINDS",
    "WINDOWS",
    "ZERO_GRADIENT",
    "Evidence",
    "Finding",
    "Handle",
    "HeldOutVerdict",
    "Question",
    "Recovery",
    "Setting",
    "Verdict",
    "classify",
    "classify_run",
    "default_recovery_target",
    "judge",
    "judge_held_out",
    "judge_recovery_of",
    "mode_evidence",
    "reliable_eta",
    "steps_to",
    "window_rates",
]

KINDS = (
    "converged",
    "converging linearly",
    "sublinear",
    "plateau",
    "saddle",
    "oscillating",
    "unstable",
    "stalled",
    "diverged",
    "too short",
)


@dataclass
class Verdict:
    """One run's verdict; ``record()`` is its entry in ``verdicts.json``."""

    run: str
    kind: str
    headline: str
    step: int  # the last step of the evidence: what the verdict applies to
    floor: Floor | None = None
    excess_loss: float | None = None  # at ``step``
    target: float = 1e-10
    relative_to: str = "initial"  # the target is relative to the initial loss, or its excess
    target_loss: float | None = None  # the target as a loss
    target_reachable: bool = True
    rate: float | None = None  # per-step excess factor, e_{t+1} ≈ rate · e_t
    rates: tuple[float, ...] = ()
    eta_steps: tuple[float, float] | None = None  # more steps to the target, (low, high)
    eta_seconds: tuple[float, float] | None = None
    eta_method: str | None = None  # measured | extrapolated | theory | None
    theory_steps: float | None = None  # more steps to the target by the decoupled theory
    grad_norm: float | None = None  # at ``step``
    hessian_min: float | None = None
    hessian_max: float | None = None
    escape: dict | None = None  # saddle: perturbation, measured and predicted escape steps
    crossing: dict | None = None  # unstable: first crossing, its spread, how high it rises
    evidence: list[str] = field(default_factory=list)
    recovery: Recovery | None = None  # the recovery verdict, where the truth is known
    held_out: object | None = None  # a ratings run: ``judge_held_out``'s HeldOutVerdict

    @classmethod
    def stating(cls, run: str, found: Finding, setting: Setting, headline, evidence) -> Verdict:
        """The verdict that states ``found`` in ``headline`` and ``evidence``."""
        return cls(
            run,
            found.kind,
            headline,
            found.step,
            floor=setting.floor,
            excess_loss=found.excess_loss,
            target=setting.target,
            relative_to=setting.relative_to,
            target_loss=setting.goal,
            target_reachable=setting.reachable,
            rate=found.rate,
            rates=found.rates,
            eta_steps=found.eta_steps,
            eta_seconds=found.eta_seconds,
            eta_method=found.eta_method,
            theory_steps=found.theory_steps,
            grad_norm=found.grad_norm,
            hessian_min=found.hessian_min,
            hessian_max=found.hessian_max,
            escape=found.escape,
            crossing=found.crossing,
            evidence=evidence,
        )

    def lines(self) -> list[str]:
        out = [f"{self.run}: {self.headline}", *(f"    {e}" for e in self.evidence)]
        if self.recovery is not None:
            out.append(f"    recovery: {self.recovery.headline}")
            out += [f"        {e}" for e in self.recovery.evidence]
        if self.held_out is not None:
            out.append(f"    held-out: {self.held_out.headline}")
            if self.held_out.what_would_move_it:
                out.append(f"        what would move it: {self.held_out.what_would_move_it}")
        return out

    def record(self) -> dict:
        return {
            "run": self.run,
            "kind": self.kind,
            "headline": self.headline,
            "step": self.step,
            "floor": None
            if self.floor is None
            else {"value": self.floor.value, "kinds": list(self.floor.kinds)},
            "floor_detail": None if self.floor is None else self.floor.as_dict(),
            "excess_loss": self.excess_loss,
            "target": self.target,
            "relative_to": self.relative_to,
            "target_loss": self.target_loss,
            "target_reachable": self.target_reachable,
            "rate": self.rate,
            "eta_steps": None if self.eta_steps is None else list(self.eta_steps),
            "eta_seconds": None if self.eta_seconds is None else list(self.eta_seconds),
            "eta_method": self.eta_method,
            "theory_steps": self.theory_steps,
            "grad_norm": self.grad_norm,
            "hessian_min": self.hessian_min,
            "hessian_max": self.hessian_max,
            "escape": self.escape,
            "crossing": self.crossing,
            "evidence": self.evidence,
            "recovery": None if self.recovery is None else self.recovery.record(),
            "held_out": None if self.held_out is None else self.held_out.record(),
        }


def judge(
    run: str,
    steps: np.ndarray,
    loss: np.ndarray,
    *,
    floor: Floor,
    target: float = 1e-10,
    relative_to: str = "initial",
    grad_norm: np.ndarray | None = None,
    seconds_per_step: float | None = None,
    gn_rate: float | None = None,
    learning_rate: float | None = None,
    gd_like: bool = False,
    extend: Handle | None = None,
    budget_steps: int = 1_000_000,
    segment_steps: int | None = None,
    theory_steps=None,
) -> Verdict:
    """The verdict for one run (see the module docstring).

    ``target`` is relative to the initial loss (``relative_to="initial"``) or to the initial
    excess over the reachable minimum (``"excess"``). ``extend`` continues the run in segments
    (the first ``segment_steps`` long, default the recorded length within 1e3–5e4, then doubling)
    up to ``budget_steps`` in all, until the verdict cannot change; it also answers questions
    about critical points and perturbed runs (see :class:`Handle`). ``theory_steps(goal)`` gives
    the step at which an exact theory puts the target, where one applies.
    """
    evidence = Evidence.of_record(steps, loss, grad_norm)
    setting = Setting.of(
        floor,
        target,
        relative_to,
        evidence.loss[0],
        gn_rate=gn_rate,
        learning_rate=learning_rate,
        gd_like=gd_like,
        budget_steps=budget_steps,
    )
    if extend is not None and budget_steps > 0:
        if segment_steps is None:
            segment_steps = int(np.clip(evidence.steps[-1], 1000, 50_000))
        continuation.extend(evidence, extend, floor, setting.goal, budget_steps, segment_steps)
    seconds = continuation.seconds_per_step(seconds_per_step, extend)
    setting = replace(setting, seconds_per_step=seconds)
    found = continuation.settle(
        lambda facts: classify_run(evidence, facts, setting), extend, theory_steps
    )
    return Verdict.stating(run, found, setting, *words(found, setting))


def judge_recovery_of(
    steps: np.ndarray,
    error: np.ndarray,
    *,
    fit: Verdict,
    target: float,
    resolution: float,
    grad_norm: np.ndarray | None = None,
    extend=None,
    budget_steps: int = 1_000_000,
    segment_steps: int | None = None,
    noise: float = 0.0,
) -> Recovery:
    """The recovery verdict (``_recovery``) beside ``fit``, the run's fit verdict.

    ``error`` is the recorded ‖W − M‖_F/‖M‖_F; ``target`` an absolute relative error.
    ``extend``, where given, is the run's handle after the fit's continuation: ``so_far()``
    gives the (steps, error, grad_norm) it continued, ``spent`` its steps, and a call of ``n``
    continues further (within ``budget_steps`` in all) until the recovery verdict cannot change.
    """
    evidence = Evidence.of_record(steps, error, grad_norm)
    floor = recovery_floor(resolution, fit.floor.width, fit.floor.target_rank)
    if extend is not None:
        more = extend.so_far()
        if len(more[0]):
            evidence.add(*more)
        evidence.spent = extend.spent

    def fit_state() -> str | None:
        """Where the fit stopped changing what the recovery can become, if it did."""
        if fit.kind == "converged":
            return "floor"
        if fit.eta_method == "measured" and fit.kind != "unstable":
            return "target"
        return "critical point" if evidence.zero_gradient() else None

    if extend is not None and budget_steps > 0:
        if segment_steps is None:
            segment_steps = int(np.clip(evidence.steps[-1], 1000, 50_000))
        rule = remaining(lambda: fit_state() is not None)
        continuation.extend(evidence, extend, floor, target, budget_steps, segment_steps, rule)
    recovery = judge_recovery(
        evidence, target=target, floor=floor, fit_state=fit_state(), fit_kind=fit.kind,
        noise=noise,
    )  # fmt: skip
    return reconciled(recovery, fit)

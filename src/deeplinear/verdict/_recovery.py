"""Does the run recover the truth M? A verdict on ‖W − M‖_F/‖M‖_F beside the fit's.

The fit verdict judges the loss — what the measurements see. Where the truth is known (the
``recovery_error`` column, ``diagnostics.RecoveryProbe``) the recovery verdict judges the same
way the error e_t = ‖W_t − M‖_F/‖M‖_F, with the fit's machinery: its ``Evidence`` (the record,
grown by the run's handle), ``classify`` of log e against a floor of 0 with the round-off
``resolution``, crossings of the target (``target``: an absolute relative error), and rates
fitted on windows (``window_rates``, ``steps_to``). Its kinds:

- **recovered** — e crossed the target and stayed below it (measured, as the fit's); or e is
  at round-off;
- **recovering linearly** / **recovering sublinearly** — log e falls at a steady / a slowing
  rate: the ETA extrapolated from the windows' rates (and the power law if sublinear);
- **does not recover** — e stopped above the target while the fit reached its floor, its
  target (and stays below it) or a critical point: the run fits the measurements with another
  matrix (the measurements do not
  determine M, or the implicit bias chose another interpolant), or, with label noise, the
  noise limits the error;
- **recovery stalled** — e stopped falling while the fit is still moving;
- **unstable** (crossed and rose again), **diverged**, **too short**.

Continuing for the recovery (``remaining``) stops once the verdict cannot change: crossed and
stayed below as long again, at round-off, or stopped with the fit settled (at its floor, below
its target, or at a zero gradient).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from deeplinear.diagnostics.floors import Floor
from deeplinear.verdict._eta import fmt_range, reaches
from deeplinear.verdict._evidence import Evidence, classify, steps_to, window_rates

RECOVERY_KINDS = (
    "recovered",
    "recovering linearly",
    "recovering sublinearly",
    "does not recover",
    "recovery stalled",
    "unstable",
    "diverged",
    "too short",
)


@dataclass
class Recovery:
    """One run's recovery verdict; ``record()`` is its ``recovery`` object in verdicts.json."""

    kind: str
    headline: str
    step: int  # the last step of the evidence
    error: float | None  # ‖W − M‖_F/‖M‖_F at ``step``
    target: float
    resolution: float
    rate: float | None = None  # per-step factor of the error, e_{t+1} ≈ rate · e_t
    eta_steps: tuple[float, float] | None = None  # more steps after the record to the target
    eta_method: str | None = None  # measured | extrapolated | None
    crossed_at: int | None = None
    evidence: list[str] = field(default_factory=list)

    def record(self) -> dict:
        return {
            "kind": self.kind,
            "headline": self.headline,
            "step": self.step,
            "error": self.error,
            "target": self.target,
            "resolution": self.resolution,
            "rate": self.rate,
            "eta_steps": None if self.eta_steps is None else list(self.eta_steps),
            "eta_method": self.eta_method,
            "crossed_at": self.crossed_at,
            "evidence": self.evidence,
        }


def default_recovery_target(loss_targets, declared=()) -> float:
    """The recovery error ‖W − M‖/‖M‖ judged and counted to when none is asked for: the last
    declared one, else √ of the last loss target (a loss fallen by t is an error fallen by about
    √t). Explain of a run, of a sweep and the report's step counts all take it from here."""
    if declared:
        return float(declared[-1])
    return float(np.sqrt(loss_targets[-1]))


def recovery_floor(resolution: float, width: int, rank: int) -> Floor:
    """The error's own floor for ``classify``: 0, unresolvable below ``resolution``."""
    how = "the recovery error: 0 at the truth, round-off below the resolution"
    return Floor(0.0, ("round-off",), 0.0, 0.0, width, rank, resolution, how)


def remaining(fit_settled):
    """The continuation rule for the recovery evidence (see the module docstring)."""

    def rule(evidence: Evidence, floor: Floor, goal: float) -> int | None:
        if not np.isfinite(evidence.loss[-1]):
            return 0
        first, highest = evidence.crossing(goal)
        if first is not None:
            if highest > 1:
                return 0
            return max(0, 2 * int(evidence.steps[first]) - evidence.last)
        kind, _ = classify(evidence.steps, evidence.loss, floor)
        if kind == "converged":
            return 0
        if kind in ("stalled", "oscillating") and (fit_settled() or evidence.zero_gradient()):
            return 0
        return None

    return rule


def judge_recovery(
    evidence: Evidence, *, target: float, floor: Floor, fit_state: str | None,
    fit_kind: str = "", noise: float = 0.0,
) -> Recovery:  # fmt: skip
    """The recovery verdict of the (grown) evidence of the error (see the module docstring).

    ``fit_state``: where the fit settled — ``"floor"`` (converged), ``"target"`` (crossed its
    target and stayed below), ``"critical point"`` (a zero gradient) — or None (still moving).
    """
    e, steps = evidence.loss, evidence.steps
    last = float(e[-1]) if np.isfinite(e[-1]) else None
    base = {"step": evidence.last, "error": last, "target": target, "resolution": floor.resolution}
    spent = "" if not evidence.spent else f" (continued to step {evidence.last})"
    if last is None:
        return Recovery("diverged", "diverged: the recovery error is not finite", **base)
    first, highest = evidence.crossing(target)
    if first is not None and highest > 1:
        at = int(steps[first])
        headline = (
            f"unstable: the recovery error touches the target {target:.0e} at step {at} but "
            f"rises to {highest:.2g}× it again (now {last:.2g}){spent}"
        )
        return Recovery("unstable", headline, crossed_at=at, **base)
    if first is not None:
        return _recovered(evidence, first, base, spent)
    kind, shape = classify(steps, e, floor)
    if kind == "converged":
        headline = (
            f"recovered to round-off: ‖W − M‖/‖M‖ = {last:.1e} (within the resolution "
            f"{floor.resolution:.0e}; the target {target:.0e} lies below it){spent}"
        )
        return Recovery("recovered", headline, **base)
    if kind == "too short" and fit_state in ("floor", "target"):  # e.g. a one-shot solver
        return _stopped(evidence, base, fit_state, fit_kind, noise, spent)
    if kind == "too short":
        return Recovery("too short", f"too few records ({shape['rows']}) to judge", **base)
    if kind in ("stalled", "oscillating"):
        return _stopped(evidence, base, fit_state, fit_kind, noise, spent)
    return _extrapolated(evidence, base, kind, shape, floor, spent)


def _recovered(evidence, first, base, spent) -> Recovery:
    at = int(evidence.steps[first])
    origin = evidence.recorded_until
    before = int(evidence.steps[first - 1]) if first > 0 else at
    eta = (0.0, 0.0) if at <= origin else (float(max(before - origin, 0)), float(at - origin))
    where = "within the record" if at <= origin else f"{eta[1]:.0f} steps after the record"
    headline = (
        f"recovered: ‖W − M‖/‖M‖ = {base['error']:.1e} (≤ the target {base['target']:.0e}), "
        f"first at step {at} ({where}, measured), and below it for the "
        f"{evidence.last - at} steps after{spent}"
    )
    return Recovery(
        "recovered", headline, crossed_at=at, eta_steps=eta, eta_method="measured", **base
    )


def _stopped(evidence, base, fit_state, fit_kind, noise, spent) -> Recovery:
    error, target = base["error"], base["target"]
    fit = {
        "floor": "the loss reached its floor",
        "target": "the loss reached its target and stays below it",
        "critical point": "the loss stopped at a critical point",
    }.get(fit_state)
    if fit is not None and noise:
        headline = (
            f"does not recover M: {fit} while the recovery error stays at {error:.3g} > the "
            f"target {target:.0e} (label noise σ = {noise:.3g}: the fit absorbs part of the "
            f"noise, and the error stops at the estimate's statistical error){spent}"
        )
        return Recovery("does not recover", headline, **base)
    if fit is not None:
        headline = (
            f"fits the observations but does not recover M: {fit} while the recovery error "
            f"stays at {error:.3g} > the target {target:.0e} (another interpolant: the "
            f"observations do not determine M, or the implicit bias chose another matrix that "
            f"fits them){spent}"
        )
        return Recovery("does not recover", headline, **base)
    headline = (
        f"recovery stalled at ‖W − M‖/‖M‖ = {error:.3g} (> the target {target:.0e}) while the "
        f"fit has not settled (fit: {fit_kind or 'not judged'}){spent}"
    )
    return Recovery("recovery stalled", headline, **base)


def _extrapolated(evidence, base, kind, shape, floor, spent) -> Recovery:
    e = np.maximum(evidence.loss, floor.resolution)
    s = evidence.steps
    fits = window_rates(s, e)
    rates = [r for r, _, _ in fits]
    estimates = [steps_to(e[-1], base["target"], r) for r in rates]
    if kind == "sublinear":
        p, t = shape["exponent"], float(s[-1])
        estimates.append(t * (e[-1] / base["target"]) ** (1 / p) - t if p > 0 else np.inf)
    done = float(evidence.last - evidence.recorded_until)
    low, high = min(estimates) + done, max(estimates) + done
    words = "recovering linearly" if kind == "converging linearly" else "recovering sublinearly"
    headline = (
        f"{words}: ‖W − M‖/‖M‖ = {base['error']:.2g}, falling by {1 - rates[0]:.2g} of itself "
        f"per step; {_eta(base['target'], low, high)} (extrapolated){spent}"
    )
    sources = "; ".join(f"rate {1 - r:.2e}/step on steps {a}–{b}" for r, a, b in fits)
    return Recovery(
        words,
        headline,
        rate=rates[0],
        eta_steps=(low, high),
        eta_method="extrapolated",
        evidence=[f"extrapolated from the recovery error: {sources}"],
        **base,
    )


def reconciled(recovery: Recovery, fit) -> Recovery:
    """``recovery`` with an extrapolated ETA never shorter than the fit ETA it needs.

    Near M the loss is quadratic in the error, f ≈ f_now·(e/e_now)², so an error ``target``
    needs a loss f_now·(target/e_now)². Where that is at or below the fit's target loss, the
    recovery cannot come before the fit reaches its target: its ETA is at least the fit's.
    """
    if recovery.eta_method != "extrapolated" or recovery.eta_steps is None:
        return recovery
    if fit.eta_steps is None or fit.excess_loss is None or fit.target_loss is None:
        return recovery
    if recovery.error is None or not recovery.error > 0:
        return recovery
    loss = fit.excess_loss + (fit.floor.value if fit.floor is not None else 0.0)
    needed = loss * (recovery.target / recovery.error) ** 2
    low, high = recovery.eta_steps
    fit_low, fit_high = (float(x) for x in fit.eta_steps)
    if not needed <= fit.target_loss or (low >= fit_low and high >= fit_high):
        return recovery
    eta = (max(low, fit_low), max(high, fit_high))
    before, after = _eta(recovery.target, low, high), _eta(recovery.target, *eta)
    note = (
        f"the error {recovery.target:.0e} needs the loss near {needed:.1e} (quadratic in the "
        f"error), at or below the fit's target {fit.target_loss:.1e}, which the fit reaches in "
        f"{_range(fit_low, fit_high)} more steps: the recovery's own extrapolation "
        f"({_range(low, high)}) is raised to it"
    )
    return dataclasses.replace(
        recovery,
        eta_steps=eta,
        headline=recovery.headline.replace(before, after),
        evidence=[*recovery.evidence, note],
    )


_range = fmt_range


def _eta(target: float, low: float, high: float) -> str:
    """``reaches the target 1e-05 in … more steps``, ``no reliable ETA to the target …`` or
    ``reaches the target … never at these rates`` (``_eta.reaches``)."""
    if not np.isfinite(low):
        return f"reaches the target {target:.0e} never at these rates"
    return reaches(f"the target {target:.0e}", low, high)

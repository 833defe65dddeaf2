"""A run's kind and its numbers, from the evidence and the facts its handle gave: no words.

``classify_run`` is pure. Where it needs a fact the evidence cannot give (the crossings of runs
from perturbed initial weights, the critical point at the end, the escape of a perturbed copy,
the loss in double-double, the exact theory's prediction) it returns the ``Question`` instead;
``_continuation.settle`` answers it and asks again. The rules, in order:

1. the initial loss is already at the reachable minimum: converged, nothing to learn;
2. a non-finite loss: diverged;
3. crossed the target and rose above it again: unstable — the ETA is the spread of the crossing
   over ``PERTURBED_RUNS`` runs from the initial weights × (1 + 1e-12 ξ);
4. the excess is within the round-off: converged (double-double loss where affordable);
5. crossed and stayed below: the ETA is measured; a record whose own rates would have put the
   crossing > 10× later was a plateau;
6. no progress (stalled, oscillating): a saddle (zero gradient, λ_min < 0: escape measured and
   predicted), a critical point without negative curvature (``minimum``: the floor where it is
   unknown, a spurious local minimum or a non-strict saddle where it is known), a plateau near a
   saddle (‖g‖²/(2 λ_max e) < ``NEAR_CRITICAL``), or the method's floor;
7. too few records;
8. not reached within the evidence where the exact theory reaches it: the theory's ETA;
9. else extrapolated: rates on three windows, the Gauss-Newton rate, the power law if sublinear.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from deeplinear.diagnostics.curvature import saddle_escape_prediction
from deeplinear.diagnostics.floors import Floor
from deeplinear.verdict._evidence import Evidence, classify, steps_to, tail_rate, window_rates

ESCAPE_PERTURBATION = 1e-6  # ‖δ‖ of the push along the Hessian's most negative direction
NEAR_CRITICAL = 1e-3  # ‖g‖²/(2 λ_max · excess) below this: "near a critical point"
PERTURBED_RUNS = 6  # runs from the initial weights perturbed at 1e-12, for an unstable crossing
NEGATIVE_CURVATURE = 1e-8  # λ_min below −this × max |λ|: a negative eigenvalue, not round-off


@dataclass(frozen=True)
class Question:
    """A fact the classification needs: ``theory(*args)`` or the run handle's ``name(*args)``
    (``_continuation.answer``)."""

    name: str  # "theory" or a method of ``Handle``
    args: tuple = ()


@dataclass(frozen=True)
class Setting:
    """What a verdict is asked: the floor, the target, and what is known of the method."""

    floor: Floor
    target: float  # relative to the initial loss, or to its excess over the floor
    relative_to: str  # "initial" | "excess"
    goal: float  # the target as a loss
    reachable: bool  # the goal is above the floor by more than the round-off
    gn_rate: float | None = None  # the Gauss-Newton prediction of the local rate
    learning_rate: float | None = None
    gd_like: bool = False  # plain GD: the saddle escape prediction applies
    budget_steps: int = 1_000_000
    seconds_per_step: float | None = None

    @classmethod
    def of(cls, floor: Floor, target: float, relative_to: str, initial_loss: float, **known):
        if relative_to == "excess":
            goal = floor.value + target * float(floor.excess(initial_loss))
        else:
            goal = target * float(initial_loss)
        return cls(floor, target, relative_to, goal, floor.reachable(goal), **known)

    def seconds(self, eta) -> tuple[float, float] | None:
        s = self.seconds_per_step
        return None if s is None else tuple(e * s for e in eta)


@dataclass(frozen=True)
class Finding:
    """A run's kind and its numbers. ``basis`` names the rule that decided it (``start``,
    ``diverged``, ``unstable``, ``converged``, ``measured``, ``saddle``, ``minimum``,
    ``no progress``, ``too short``, ``theory``, ``extrapolated``); the fields after
    ``crossing`` are the numbers the verdict's sentences quote."""

    kind: str
    basis: str
    step: int  # the last step of the evidence
    initial_loss: float
    excess_loss: float | None = None
    grad_norm: float | None = None
    rate: float | None = None
    rates: tuple[float, ...] = ()
    eta_steps: tuple[float, float] | None = None
    eta_seconds: tuple[float, float] | None = None
    eta_method: str | None = None
    theory_steps: float | None = None  # more steps to the target by the theory
    hessian_min: float | None = None
    hessian_max: float | None = None
    escape: dict | None = None
    crossing: dict | None = None
    theory_step: float | None = None  # the step at which the theory reaches the target
    shape: dict = field(default_factory=dict)  # ``classify``'s numbers for the whole evidence
    continued_to: int | None = None  # the last step continued to (None: the record alone)
    crossed_at: int | None = None  # the first step at or below the target
    above_until: int | None = None  # the last step above it before that
    stayed: int | None = None  # steps recorded below it after
    record_escape: tuple[float, int] | None = None  # (record's predicted steps, halving step)
    accurate: tuple[float, float] | None = None  # the loss in double-double, its error bound
    point: object | None = None  # ``curvature.CriticalPoint`` at the end (stalled runs)
    escape_horizon: int | None = None
    fits: tuple[tuple[float, int, int], ...] = ()  # (rate, first step, last step) per window
    gn_rate: float | None = None  # the Gauss-Newton rate, where it entered the ETA


def classify_run(evidence: Evidence, facts: dict, setting: Setting) -> Finding | Question:
    """The finding for the evidence and facts, or the question whose answer it needs first."""
    floor, loss = setting.floor, evidence.loss
    finite = np.isfinite(loss[-1])
    base = Finding(
        "",
        "",
        evidence.last,
        float(loss[0]),
        excess_loss=float(floor.excess(loss[-1])) if finite else None,
        grad_norm=float(evidence.grad[-1]) if finite and evidence.grad is not None else None,
        continued_to=evidence.last if evidence.spent else None,
    )
    kind, shape = classify(evidence.steps, loss, floor)
    base = replace(base, shape=shape)
    if floor.reached(loss[0]):
        return replace(base, kind="converged", basis="start")
    if kind == "diverged":
        return replace(base, kind=kind, basis="diverged")
    if setting.reachable:
        if "theory" not in facts:
            return Question("theory", (setting.goal,))
        predicted = facts["theory"]
        if predicted is not None:
            more = float(max(predicted - evidence.recorded_until, 0))
            base = replace(base, theory_steps=more, theory_step=predicted)
    first, highest = evidence.crossing(setting.goal)
    if first is not None and highest > 1:
        return _unstable(base, evidence, facts, setting, first, highest)
    if kind == "converged":
        return _converged(base, evidence, facts, setting, first)
    if first is not None:
        return _measured(base, evidence, setting, first)
    if kind in ("stalled", "oscillating"):
        return _stuck(base, evidence, facts, setting, kind)
    if kind == "too short":
        return replace(base, kind=kind, basis="too short")
    if (
        base.theory_steps is not None
        and evidence.last < evidence.recorded_until + base.theory_steps
    ):
        eta = (base.theory_steps, base.theory_steps)
        return replace(
            base,
            kind=kind,
            basis="theory",
            eta_steps=eta,
            eta_method="theory",
            eta_seconds=setting.seconds(eta),
        )
    return _extrapolated(base, evidence, setting, kind)


def _unstable(base, evidence, facts, setting, first, highest) -> Finding | Question:
    """Touches the target but does not stay: the crossing step is not a measurement."""
    at, goal = int(evidence.steps[first]), setting.goal
    crossing = {
        "first_step": at,
        "fraction_above_after": float(np.mean(evidence.loss[first:] > goal)),
        "highest_over_target": highest,
    }
    if "crossings" not in facts:
        horizon = int(min(max(2 * at, at + 1000), max(setting.budget_steps, at + 1)))
        return Question("crossings", (goal, horizon, PERTURBED_RUNS))
    eta_steps = eta_method = None
    if facts["crossings"] is not None:
        hits = np.asarray(facts["crossings"], dtype=np.float64)
        crossing["perturbed_first_steps"] = hits.tolist()
        if np.all(np.isfinite(hits)):
            lo, hi = float(min(hits.min(), at)), float(max(hits.max(), at))
            origin = evidence.recorded_until
            crossing["spread"] = [lo, hi]
            if hi > origin:
                eta_steps, eta_method = (max(lo - origin, 0.0), hi - origin), "measured"
    return replace(
        base,
        kind="unstable",
        basis="unstable",
        crossing=crossing,
        eta_steps=eta_steps,
        eta_method=eta_method,
    )


def _crossing_steps(evidence, first) -> tuple[float, float]:
    """More steps from the end of the record to the crossing: (last record above, first below)."""
    at = int(evidence.steps[first])
    before = int(evidence.steps[first - 1]) if first > 0 else at
    origin = evidence.recorded_until
    return float(max(before - origin, 0)), float(max(at - origin, 0))


def _converged(base, evidence, facts, setting, first) -> Finding | Question:
    if "accurate_loss" not in facts:
        return Question("accurate_loss")
    exact = facts["accurate_loss"]
    found = replace(base, kind="converged", basis="converged", accurate=exact)
    if exact is not None:
        found = replace(found, excess_loss=exact[0] - setting.floor.value)
    if first is not None and setting.reachable:
        found = replace(
            found,
            eta_steps=_crossing_steps(evidence, first),
            eta_method="measured",
            crossed_at=evidence.steps[first],
        )
    return found


def _measured(base, evidence, setting, first) -> Finding:
    """The run crossed the target and stayed below it."""
    floor = setting.floor
    at = int(evidence.steps[first])
    before = int(evidence.steps[first - 1]) if first > 0 else at
    upto = first + 1
    n = evidence.recorded
    recorded_kind, _ = classify(evidence.steps[:n], evidence.loss[:n], floor)
    recorded = "plateau" if recorded_kind == "stalled" and not evidence.zero_gradient() else ""
    kind = recorded or classify(evidence.steps[:upto], evidence.loss[:upto], floor)[0]
    if kind in ("too short", "converged", "stalled", "oscillating"):
        kind = "converging linearly" if kind != "too short" else kind
    escaped = _escape_from_record(evidence, floor, at)
    if escaped is not None:
        kind = "plateau"
    found = replace(
        base,
        kind=kind,
        basis="measured",
        eta_method="measured",
        crossed_at=at,
        above_until=before,
        stayed=evidence.last - at,
        record_escape=escaped,
    )
    if at <= evidence.recorded_until:
        return replace(found, eta_steps=(0.0, 0.0))
    eta = _crossing_steps(evidence, first)
    return replace(
        found,
        eta_steps=eta,
        eta_seconds=setting.seconds(eta),
        rate=tail_rate(evidence.steps[:upto], evidence.loss[:upto], floor),
    )


def _escape_from_record(evidence, floor, at: int) -> tuple[float, int] | None:
    """Was the record a plateau? Its own rates would have put the crossing > 10× later: then
    (those rates' steps to the crossing, the step at which the excess has halved)."""
    origin = evidence.recorded_until
    n = int(np.searchsorted(evidence.steps, origin, side="right"))
    if at <= origin or n < 4:
        return None
    excess = np.maximum(floor.excess(evidence.loss), floor.resolution)
    rates = [r for r, _, _ in window_rates(evidence.steps[:n], excess[:n])]
    goal_excess = max(float(floor.excess(evidence.loss[evidence.steps == at][0])), 0.0)
    predicted = min(steps_to(excess[n - 1], max(goal_excess, floor.resolution), r) for r in rates)
    if predicted <= 10 * (at - origin):
        return None
    half = excess[n - 1] / 2
    later = np.flatnonzero((evidence.steps > origin) & (excess <= half))
    return predicted, int(evidence.steps[later[0]]) if later.size else at


def _stuck(base, evidence, facts, setting, kind) -> Finding | Question:
    """No progress after the whole budget: a saddle, a plateau near one, or the method's floor."""
    point = None
    if kind == "stalled":
        if "critical_point" not in facts:
            return Question("critical_point")
        point = facts["critical_point"]
    if point is not None:
        base = replace(
            base,
            grad_norm=point.grad_norm,
            hessian_min=point.hessian_min,
            hessian_max=point.hessian_max,
            point=point,
        )
    zero = evidence.zero_gradient()
    if kind == "stalled" and zero and point is not None and _negative(point, setting.floor):
        return _saddle(base, evidence, facts, setting, point)
    if kind == "stalled" and zero and point is not None:
        return replace(base, kind="stalled", basis="minimum")
    if kind == "oscillating":
        return replace(base, kind=kind, basis="no progress")
    near = point is not None and point.hessian_min < 0 and _nearly_critical(point, base.excess_loss)
    return replace(base, kind="plateau" if near else "stalled", basis="no progress")


def _negative(point, floor: Floor) -> bool:
    """Does the Hessian have a negative eigenvalue? Where the floor is unknown (a stop may be
    the minimum itself), only one beyond round-off (−1e-8 of max |λ|) counts; where it is known
    (excess left: a saddle, however flat), any."""
    if floor.known:
        return point.hessian_min < 0
    scale = max(abs(point.hessian_max), abs(point.hessian_min))
    return point.hessian_min < -NEGATIVE_CURVATURE * scale


def _nearly_critical(point, excess: float) -> bool:
    """Is the gradient too small to matter? A step 1/λ along it gains ‖g‖²/(2λ) ≪ the excess."""
    curvature = max(abs(point.hessian_max), abs(point.hessian_min))
    if curvature == 0 or excess <= 0:
        return point.grad_norm == 0
    return point.grad_norm**2 / (2 * curvature * excess) < NEAR_CRITICAL


def _saddle(base, evidence, facts, setting, point) -> Finding | Question:
    """Zero gradient, a negative Hessian eigenvalue: how long a push of δ along it takes to
    lose 10 % of the excess, measured and (plain GD) predicted by log(x/δ)/log(1 + η|λ_min|)."""

    delta = ESCAPE_PERTURBATION
    drop = 0.1 * base.excess_loss
    horizon = max(10_000, 2 * evidence.last)
    if "escape" not in facts:
        return Question("escape", (point, delta, horizon, drop))
    predicted = None
    if setting.gd_like and setting.learning_rate is not None:
        size = float(np.sqrt(2 * drop / abs(point.hessian_min)))
        predicted = saddle_escape_prediction(point.hessian_min, setting.learning_rate, delta, size)
    escape = {
        "perturbation": delta,
        "loss_drop": drop,
        "measured_steps": facts["escape"],
        "predicted_steps": predicted,
    }
    return replace(base, kind="saddle", basis="saddle", escape=escape, escape_horizon=horizon)


def _extrapolated(base, evidence, setting, kind) -> Finding:
    """Rates on three windows of the finite evidence (and the Gauss-Newton rate, and a power
    law for a sublinear run) put the target somewhere in [min, max] of their predictions."""
    floor = setting.floor
    excess = np.maximum(floor.excess(evidence.loss), floor.resolution)
    finite = np.isfinite(excess)
    s, e = evidence.steps[finite], excess[finite]
    fits = window_rates(s, e)
    rates = [r for r, _, _ in fits]
    found = replace(
        base, kind=kind, basis="extrapolated", rate=rates[0], rates=tuple(rates), fits=tuple(fits)
    )
    if not setting.reachable:
        return found
    goal_excess = setting.goal - floor.value
    estimates = [steps_to(e[-1], goal_excess, r) for r in rates]
    gn_rate = setting.gn_rate if setting.gn_rate is not None and 0 < setting.gn_rate < 1 else None
    if gn_rate is not None:
        estimates.append(steps_to(e[-1], goal_excess, gn_rate))
    if kind == "sublinear":
        p = base.shape["exponent"]
        t = float(s[-1])
        estimates.append(t * (e[-1] / goal_excess) ** (1 / p) - t if p > 0 else np.inf)
    done = float(evidence.last - evidence.recorded_until)
    low, high = min(estimates) + done, max(estimates) + done
    return replace(
        found,
        eta_steps=(low, high),
        eta_method="extrapolated",
        eta_seconds=setting.seconds((low, high)),
        gn_rate=gn_rate,
    )

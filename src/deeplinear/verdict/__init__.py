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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..floors import Floor

WINDOWS = (0.1, 0.25, 0.5)  # fractions of the evidence used for rate fits
SLOW = ("converging linearly", "sublinear", "plateau")  # still progressing: slow, not stuck
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
ZERO_GRADIENT = 1e-12  # relative to the problem's gradient scale: "the gradient is zero"
ESCAPE_PERTURBATION = 1e-6  # ‖δ‖ of the push along the Hessian's most negative direction
NEAR_CRITICAL = 1e-3  # ‖g‖²/(2 λ_max · excess) below this: "near a critical point"
PERTURBED_RUNS = 6  # runs from the initial weights perturbed at 1e-12, for an unstable crossing


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

    def lines(self) -> list[str]:
        return [f"{self.run}: {self.headline}", *(f"    {e}" for e in self.evidence)]

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
        }


class Handle(Protocol):
    """What ``judge`` may ask of a run beyond its record (``explain.Continuation`` is one)."""

    def __call__(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Continue by ``n`` steps; return the new (steps, loss, grad_norm) records."""

    def critical_point(self):
        """``curvature.CriticalPoint`` at the current end of the run."""

    def escape(self, point, delta: float, steps: int, drop: float) -> int | None:
        """Steps for a copy perturbed by ``delta`` along ``point.direction`` to lose ``drop``."""

    def crossings(self, goal: float, steps: int, count: int) -> np.ndarray:
        """First steps ≤ ``goal`` of ``count`` runs from perturbed initial weights (inf: none)."""


# ---------------------------------------------------------------- the shape of the evidence


def _fit_rate(steps, values) -> float:
    """Per-step factor from a least-squares line through (step, log value)."""
    slope = np.polyfit(np.asarray(steps, dtype=np.float64), np.log(values), 1)[0]
    return float(np.exp(slope))


def window_rates(steps: np.ndarray, values: np.ndarray) -> list[tuple[float, int, int]]:
    """(rate, first step, last step) fitted on the last 10 %, 25 % and 50 % of the evidence."""
    out = []
    n = len(steps)
    for fraction in WINDOWS:
        k = min(n, max(4, round(fraction * n)))
        out.append((_fit_rate(steps[-k:], values[-k:]), int(steps[-k]), int(steps[-1])))
    return out


def steps_to(current: float, target: float, rate: float) -> float:
    """Steps for a value to fall from ``current`` to ``target`` at a constant per-step ``rate``."""
    if current <= target:
        return 0.0
    if rate >= 1:
        return np.inf
    return float(np.log(target / current) / np.log(rate))


def _misfit(x, y) -> float:
    """RMS residual of the least-squares line through (x, y)."""
    coefficients = np.polyfit(x, y, 1)
    return float(np.sqrt(np.mean((np.polyval(coefficients, x) - y) ** 2)))


def _settled(reached: np.ndarray) -> int | None:
    """Index from which every entry of ``reached`` is True (None if the last is False)."""
    if not reached.size or not reached[-1]:
        return None
    misses = np.flatnonzero(~reached)
    return 0 if not misses.size else int(misses[-1] + 1)


def classify(steps, loss, floor: Floor) -> tuple[str, dict]:
    """The shape of the evidence's last half, judged on the excess over ``floor``."""
    steps, loss = np.asarray(steps), np.asarray(loss, dtype=np.float64)
    if not np.isfinite(loss[-1]):
        return "diverged", {"step": int(steps[-1])}
    settled = _settled(floor.reached(loss))
    if settled is not None:
        return "converged", {"step": int(steps[settled])}
    if len(steps) < 4:
        return "too short", {"rows": len(steps)}
    half = max(4, len(steps) // 2)
    excess = np.maximum(floor.excess(loss), floor.resolution)
    tail = np.log(excess[-half:])
    diffs = np.diff(tail)
    rises = float(np.mean(diffs > 0)) if diffs.size else 0.0
    drop = float(tail[0] - tail[-1])
    fluctuation = float(np.sum(np.abs(diffs[diffs > 0])))
    if rises >= 0.25 and drop <= fluctuation:
        return "oscillating", {"rises": rises, "drop": drop, "fluctuation": fluctuation}
    if drop < 1e-3:
        return "stalled", {"drop": drop, "from": int(steps[-half])}
    fits = window_rates(steps, excess)
    speeds = [-np.log(r) for r, _, _ in fits]  # larger = faster
    t = steps[-half:].astype(np.float64)
    log_t = np.log(np.maximum(t, 1))
    linear_misfit, power_misfit = _misfit(t, tail), _misfit(log_t, tail)
    slowing = speeds[-1] > 0 and speeds[0] < 0.5 * speeds[-1]
    if slowing or (linear_misfit > 1e-8 and power_misfit < 0.5 * linear_misfit):
        exponent = -np.polyfit(log_t, tail, 1)[0]
        return "sublinear", {"fits": fits, "exponent": float(exponent)}
    return "converging linearly", {"fits": fits}


# ---------------------------------------------------------------- the verdict


@dataclass
class _Evidence:
    """The record and its continuation, grown segment by segment."""

    steps: np.ndarray
    loss: np.ndarray
    grad: np.ndarray | None
    recorded_until: int = 0
    spent: int = 0

    def add(self, steps, loss, grad) -> None:
        self.steps = np.concatenate([self.steps, steps])
        self.loss = np.concatenate([self.loss, loss])
        if self.grad is not None:
            self.grad = np.concatenate([self.grad, grad])

    @property
    def last(self) -> int:
        return int(self.steps[-1])


def _crossing(evidence: _Evidence, goal: float) -> tuple[int | None, float]:
    """First step with loss ≤ goal, and the highest loss after it relative to the goal."""
    below = np.flatnonzero(evidence.loss <= goal)
    if not below.size:
        return None, np.nan
    after = evidence.loss[below[0] :]
    if not np.all(np.isfinite(after)):
        return int(below[0]), np.inf
    if goal <= 0:
        return int(below[0]), np.inf if np.any(after > goal) else 1.0
    return int(below[0]), float(np.max(after) / goal)


def _zero_gradient(evidence: _Evidence) -> bool:
    if evidence.grad is None or not np.isfinite(evidence.grad[-1]):
        return False
    scale = max(float(np.nanmax(evidence.grad)), float(np.sqrt(evidence.loss[0])))
    return evidence.grad[-1] <= ZERO_GRADIENT * scale


def _remaining(evidence: _Evidence, floor: Floor, goal: float) -> int | None:
    """Steps still needed before more would change nothing the verdict says (None: unknown)."""
    if not np.isfinite(evidence.loss[-1]):
        return 0
    kind, _ = classify(evidence.steps, evidence.loss, floor)
    if kind == "converged":
        return 0
    first, highest = _crossing(evidence, goal)
    if first is not None:
        if highest > 1:
            return 0  # crossed and rose again: unstable, whatever comes next
        return max(0, 2 * int(evidence.steps[first]) - evidence.last)  # stay below as long again
    return 0 if kind == "stalled" and _zero_gradient(evidence) else None


def _continue(evidence, extend, floor, goal, budget: int, segment: int) -> None:
    """Extend the evidence in segments (doubling, up to 64× the first) until nothing more is
    needed (``_remaining``) or the budget is spent."""
    size = segment
    while evidence.spent < budget:
        needed = _remaining(evidence, floor, goal)
        if needed == 0:
            return
        n = min(size if needed is None else needed, budget - evidence.spent)
        evidence.add(*extend(n))
        evidence.spent += n
        size = min(2 * size, 64 * segment)


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
    steps, loss = np.asarray(steps), np.asarray(loss, dtype=np.float64)
    grad = None if grad_norm is None else np.asarray(grad_norm, dtype=np.float64)
    if relative_to == "excess":
        goal = floor.value + target * float(floor.excess(loss[0]))
    else:
        goal = target * float(loss[0])
    reachable = floor.reachable(goal)
    evidence = _Evidence(steps, loss, grad, recorded_until=int(steps[-1]))
    base = Verdict(
        run,
        "",
        "",
        int(steps[-1]),
        floor=floor,
        target=target,
        relative_to=relative_to,
        target_loss=goal,
        target_reachable=reachable,
    )
    if segment_steps is None:
        segment_steps = int(np.clip(steps[-1], 1000, 50_000))
    recorded_kind, _ = classify(steps, loss, floor)
    if extend is not None and budget_steps > 0:
        _continue(evidence, extend, floor, goal, budget_steps, segment_steps)
    base.step = evidence.last
    finite = np.isfinite(evidence.loss)
    if finite[-1]:
        base.excess_loss = float(floor.excess(evidence.loss[-1]))
        if evidence.grad is not None:
            base.grad_norm = float(evidence.grad[-1])
    kind, info = classify(evidence.steps, evidence.loss, floor)
    if floor.reached(loss[0]):
        base.kind = "converged"
        base.headline = (
            f"starts at the reachable minimum {floor.value:.3g} (initial loss {loss[0]:.3g}, "
            f"within the loop's round-off {floor.resolution:.1e}): nothing to learn"
        )
        return base
    if not reachable:
        base.evidence.append(
            f"the target {goal:.3g} is unreachable: the best possible loss is {floor.value:.4g} "
            f"({floor.why()}), within the loop's round-off {floor.resolution:.1e}"
            if goal > floor.value
            else f"the target {goal:.3g} is unreachable: the best possible loss is "
            f"{floor.value:.4g} ({floor.why()})"
        )
    if kind == "diverged":
        base.kind = kind
        base.headline = f"diverged at step {info['step']} (non-finite loss)"
        return base
    if theory_steps is not None and reachable:
        predicted = theory_steps(goal)
        if predicted is not None:
            base.theory_steps = float(max(predicted - evidence.recorded_until, 0))
            more = f" ({base.theory_steps:.0f} more)" if base.theory_steps else ""
            base.evidence.append(
                f"theory: the exact decoupled GD recursion first reaches {goal:.3g} at step "
                f"{predicted:.0f}{more}"
            )
    first, highest = _crossing(evidence, goal)
    if first is not None and highest > 1:
        return _unstable(base, evidence, goal, first, highest, extend, budget_steps)
    if kind == "converged":
        return _converged(base, evidence, info, goal, first, extend)
    if first is not None:
        recorded = "plateau" if recorded_kind == "stalled" and not _zero_gradient(evidence) else ""
        return _measured(base, evidence, goal, first, recorded, seconds_per_step, extend)
    if kind in ("stalled", "oscillating"):
        return _stuck(base, evidence, kind, info, extend, learning_rate, gd_like)
    if kind == "too short":
        base.kind = kind
        base.headline = f"too few records ({info['rows']}) to judge: record more often"
        return base
    if (
        base.theory_steps is not None
        and evidence.last < evidence.recorded_until + base.theory_steps
    ):
        return _from_theory(base, evidence, kind, seconds_per_step, extend)
    return _extrapolated(base, evidence, kind, info, goal, gn_rate, seconds_per_step, extend)


def _from_theory(base, evidence, kind, seconds_per_step, extend) -> Verdict:
    """Not measured, but an exact theory applies (the decoupled GD recursion): use it."""
    eta = (base.theory_steps, base.theory_steps)
    base.kind, base.eta_steps, base.eta_method = kind, eta, "theory"
    base.eta_seconds = _seconds(eta, seconds_per_step, extend)
    base.headline = (
        f"{kind}; reaches {_target_words(base)} in {_fmt_range(*eta)} more steps"
        f"{_seconds_text(base.eta_seconds)} (theory: the exact decoupled GD recursion)"
    )
    return base


def _seconds(eta, seconds_per_step, extend):
    if seconds_per_step is None and extend is not None:
        seconds_per_step = getattr(extend, "seconds_per_step", None)
    return None if seconds_per_step is None else tuple(e * seconds_per_step for e in eta)


def _converged(base, evidence, info, goal, first, extend) -> Verdict:
    floor = base.floor
    base.kind = "converged"
    where = f"by step {info['step']}"
    exact = extend.accurate_loss() if hasattr(extend, "accurate_loss") else None
    excess = f"excess {base.excess_loss:.1e} (the loop's float64 value)"
    if exact is not None:
        value, bound = exact
        base.excess_loss = value - floor.value
        excess = f"loss {value:.3g} in double-double (±{bound:.0e}), excess {base.excess_loss:.1e}"
    base.headline = (
        f"converged to the reachable minimum {floor.value:.3g} ({', '.join(floor.kinds)}) {where}; "
        f"{excess}: within the loop's round-off {floor.resolution:.1e}"
    )
    if first is not None and base.target_reachable:
        before, at = _crossing_steps(evidence, first)
        base.eta_steps, base.eta_method = (before, at), "measured"
        base.evidence.insert(
            0, f"reached {_target_words(base)} ({goal:.3g}) at step {evidence.steps[first]}"
        )
    return base


def _crossing_steps(evidence, first) -> tuple[float, float]:
    """More steps from the end of the record to the crossing: (last record above, first below)."""
    at = int(evidence.steps[first])
    before = int(evidence.steps[first - 1]) if first > 0 else at
    origin = evidence.recorded_until
    return float(max(before - origin, 0)), float(max(at - origin, 0))


def _measured(base, evidence, goal, first, recorded, seconds_per_step, extend) -> Verdict:
    """The run crossed the target and stayed below it."""
    at = int(evidence.steps[first])
    before = int(evidence.steps[first - 1]) if first > 0 else at
    origin = evidence.recorded_until
    upto = first + 1
    kind = recorded or classify(evidence.steps[:upto], evidence.loss[:upto], base.floor)[0]
    if kind in ("too short", "converged", "stalled", "oscillating"):
        kind = "converging linearly" if kind != "too short" else kind
    escaped = _escape_from_record(evidence, base.floor, at)
    if escaped is not None:
        kind = "plateau"
        base.evidence.append(escaped)
    stayed = evidence.last - at
    if at <= origin:
        base.kind = kind
        base.eta_steps, base.eta_method = (0.0, 0.0), "measured"
        base.headline = (
            f"reached {base.target:.0e} of the initial{' excess' * (base.relative_to == 'excess')}"
            f" loss at step {at} and stayed below it for the {stayed} steps after ({kind})"
        )
        return base
    eta = _crossing_steps(evidence, first)
    seconds = _seconds(eta, seconds_per_step, extend)
    base.kind, base.eta_steps, base.eta_method, base.eta_seconds = kind, eta, "measured", seconds
    base.rate = _tail_rate(evidence, base.floor, upto)
    words = f"{kind} — slow, not stuck" if kind in ("converging linearly", "sublinear") else kind
    if kind == "plateau":
        words = "plateau — slow, not stuck: the run escapes it"
    base.headline = (
        f"{words}; reaches {_target_words(base)} in {_fmt_range(*eta)} more steps"
        f"{_seconds_text(seconds)} (measured)"
    )
    base.evidence.insert(
        0,
        f"measured: continuing the run, the loss reached {goal:.3g} between steps {before} and "
        f"{at}, and stayed below it for the {stayed} steps after",
    )
    return base


def _escape_from_record(evidence, floor, at: int) -> str | None:
    """Was the record a plateau? Its own rates would have put the crossing > 10× later."""
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
    where = int(evidence.steps[later[0]]) if later.size else at
    record = "never" if not np.isfinite(predicted) else f"in {_fmt_steps(predicted)} steps"
    return (
        f"plateau: the record's own rates would reach the target {record}; instead the excess "
        f"halves by step {where} and the run accelerates"
    )


def _unstable(base, evidence, goal, first, highest, extend, budget) -> Verdict:
    """Touches the target but does not stay: the crossing step is not a measurement."""
    at = int(evidence.steps[first])
    after = evidence.loss[first:]
    above = float(np.mean(after > goal))
    base.kind = "unstable"
    rise = "to a non-finite loss" if not np.isfinite(highest) else f"to {highest:.2g}× the target"
    base.crossing = {
        "first_step": at,
        "fraction_above_after": above,
        "highest_over_target": highest,
    }
    spread = ""
    if extend is not None and hasattr(extend, "crossings"):
        horizon = int(min(max(2 * at, at + 1000), max(budget, at + 1)))
        hits = np.asarray(extend.crossings(goal, horizon, PERTURBED_RUNS), dtype=np.float64)
        base.crossing["perturbed_first_steps"] = hits.tolist()
        if np.all(np.isfinite(hits)):
            lo, hi = float(min(hits.min(), at)), float(max(hits.max(), at))
            origin = evidence.recorded_until
            base.crossing["spread"] = [lo, hi]
            if hi > origin:
                base.eta_steps = (max(lo - origin, 0.0), hi - origin)
                base.eta_method = "measured"
            spread = (
                f"; from the initial weights perturbed at 1e-12 it first crosses at "
                f"{lo:.0f}–{hi:.0f}"
            )
        else:
            spread = (
                f"; {int(np.sum(~np.isfinite(hits)))} of {hits.size} runs from the initial weights "
                "perturbed at 1e-12 never cross it"
            )
    base.headline = (
        f"unstable: touches {_target_words(base)} at step {at} but does not stay — it rises "
        f"{rise} on {above:.0%} of the later records{spread}"
    )
    return base


def _stuck(base, evidence, kind, info, extend, learning_rate, gd_like) -> Verdict:
    """No progress after the whole budget: a saddle, a plateau near one, or the method's floor."""
    zero = _zero_gradient(evidence)
    point = None
    if extend is not None and hasattr(extend, "critical_point") and kind == "stalled":
        point = extend.critical_point()
        base.grad_norm = point.grad_norm
        base.hessian_min, base.hessian_max = point.hessian_min, point.hessian_max
    excess = base.excess_loss
    if kind == "stalled" and zero and point is not None and point.hessian_min < 0:
        return _saddle(base, evidence, point, extend, learning_rate, gd_like)
    spent = f"after continuing to step {evidence.last}" if evidence.spent else "in the record"
    if kind == "oscillating":
        base.kind = kind
        base.headline = (
            f"oscillating {spent}: no net progress at this step size (a floor of the method, "
            f"not of the problem: excess {excess:.2g} above the reachable minimum)"
        )
        base.evidence.insert(
            0,
            f"over the last half of the evidence the loss rose in {info['rises']:.0%} of the "
            f"records; net log-decrease {info['drop']:.2g} ≤ its rises {info['fluctuation']:.2g}",
        )
        return base
    near = point is not None and point.hessian_min < 0 and _nearly_critical(point, excess)
    base.kind = "plateau" if near else "stalled"
    base.headline = (
        f"{base.kind} {spent}: excess {excess:.2g} above the reachable minimum, gradient "
        f"{base.grad_norm:.2g}"
        + (
            f"; the Hessian has a negative eigenvalue {point.hessian_min:.3g}: near a saddle, "
            "more steps (or a perturbation) should escape"
            if near
            else "; not near a critical point of the loss (a gradient step of 1/λ_max would "
            "gain a large part of the excess): a floor of the method"
        )
    )
    return base


def _nearly_critical(point, excess: float) -> bool:
    """Is the gradient too small to matter? A step 1/λ along it gains ‖g‖²/(2λ) ≪ the excess."""
    curvature = max(abs(point.hessian_max), abs(point.hessian_min))
    if curvature == 0 or excess <= 0:
        return point.grad_norm == 0
    return point.grad_norm**2 / (2 * curvature * excess) < NEAR_CRITICAL


def _saddle(base, evidence, point, extend, learning_rate, gd_like) -> Verdict:
    from ..curvature import saddle_escape_prediction

    excess = base.excess_loss
    base.kind = "saddle"
    delta = ESCAPE_PERTURBATION
    drop = 0.1 * excess
    measured = None
    horizon = max(10_000, 2 * evidence.last)
    if hasattr(extend, "escape"):
        measured = extend.escape(point, delta, horizon, drop)
    predicted = None
    if gd_like and learning_rate is not None:
        size = float(np.sqrt(2 * drop / abs(point.hessian_min)))
        predicted = saddle_escape_prediction(point.hessian_min, learning_rate, delta, size)
    base.escape = {
        "perturbation": delta,
        "loss_drop": drop,
        "measured_steps": measured,
        "predicted_steps": predicted,
    }
    measured_text = (
        f"escapes (loses 10 % of the excess) in {measured} steps"
        if measured is not None
        else f"does not escape within {horizon} steps"
    )
    predicted_text = (
        f"; predicted log(x/δ)/log(1 + η|λ_min|) ≈ {predicted:.0f}" if predicted else ""
    )
    base.headline = (
        f"saddle: the gradient is zero ({point.grad_norm:.1e}) with excess {excess:.3g} above the "
        f"reachable minimum; the Hessian's smallest eigenvalue is {point.hessian_min:.4g} (a "
        f"strict saddle: GD started exactly here never leaves)"
    )
    negatives = getattr(point, "negative_directions", None)
    base.evidence.insert(
        0,
        (f"{negatives} negative Hessian eigenvalues; " if negatives else "")
        + f"perturbed by δ = {delta:.1e} along its eigenvector, the run {measured_text}"
        + predicted_text,
    )
    return base


def _extrapolated(base, evidence, kind, info, goal, gn_rate, seconds_per_step, extend) -> Verdict:
    floor = base.floor
    excess = np.maximum(floor.excess(evidence.loss), floor.resolution)
    finite = np.isfinite(excess)
    s, e = evidence.steps[finite], excess[finite]
    fits = window_rates(s, e)
    rates = [r for r, _, _ in fits]
    base.kind, base.rate, base.rates = kind, rates[0], tuple(rates)
    how = "the record" if not evidence.spent else f"a continuation to step {evidence.last}"
    if not base.target_reachable:
        base.headline = (
            f"{kind} towards the reachable minimum {floor.value:.4g} ({', '.join(floor.kinds)}) at "
            f"{1 - rates[0]:.2g} per step (excess {base.excess_loss:.2g}); the target is "
            "unreachable"
        )
        return base
    goal_excess = goal - floor.value
    estimates = [steps_to(e[-1], goal_excess, r) for r in rates]
    sources = [f"rate {1 - r:.2e}/step on steps {a}–{b}" for r, a, b in fits]
    if gn_rate is not None and 0 < gn_rate < 1:
        estimates.append(steps_to(e[-1], goal_excess, gn_rate))
        sources.append(f"Gauss-Newton prediction {1 - gn_rate:.2e}/step")
    if kind == "sublinear":
        p = info["exponent"]
        t = float(s[-1])
        estimates.append(t * (e[-1] / goal_excess) ** (1 / p) - t if p > 0 else np.inf)
        sources.append(f"power law excess ∝ t^-{p:.2f}")
    done = float(evidence.last - evidence.recorded_until)
    low, high = min(estimates) + done, max(estimates) + done
    base.eta_steps, base.eta_method = (low, high), "extrapolated"
    base.eta_seconds = _seconds((low, high), seconds_per_step, extend)
    base.evidence.insert(0, f"extrapolated from {how}: " + "; ".join(sources))
    if high > 4 * max(low, 1):
        base.evidence.insert(
            1,
            "range wider than ×4: the fitted rates disagree — the rate is still changing as "
            "modes are learned, so a single line does not predict well",
        )
    base.headline = (
        f"{kind} at {1 - rates[0]:.2g} per step; reaches {_target_words(base)} in "
        f"{_fmt_range(low, high)} more steps{_seconds_text(base.eta_seconds)} (extrapolated)"
    )
    return base


def _tail_rate(evidence, floor, upto) -> float | None:
    s, loss = evidence.steps[:upto], evidence.loss[:upto]
    k = max(4, len(s) // 10)
    e = np.maximum(floor.excess(loss[-k:]), floor.resolution)
    return _fit_rate(s[-k:], e) if len(s) >= 2 else None


def _target_words(verdict) -> str:
    of = "initial excess" if verdict.relative_to == "excess" else "initial loss"
    return f"{verdict.target:.0e} of the {of}"


def _fmt_steps(n: float) -> str:
    return "∞" if not np.isfinite(n) else f"{n:.2g}" if n >= 1e4 else f"{n:.0f}"


def _fmt_range(lo: float, hi: float, unit: str = "") -> str:
    if np.isclose(lo, hi, rtol=0.05):
        return f"≈{_fmt_steps(lo)}{unit}"
    return f"{_fmt_steps(lo)}–{_fmt_steps(hi)}{unit}"


def _seconds_text(seconds) -> str:
    if seconds is None:
        return ""
    lo, hi = seconds
    if np.isclose(lo, hi, rtol=0.05):
        return f" (≈{lo:.2g} s here)"
    return f" ({lo:.2g}–{hi:.2g} s here)"


def mode_evidence(mode_learned, width: int | None = None) -> list[str]:
    """Which target modes are still missing, as 1 − fraction learned (what ``modes.png`` plots)."""
    if mode_learned is None or len(mode_learned) == 0:
        return []
    missing = np.abs(1 - np.asarray(mode_learned, dtype=np.float64))
    late = np.flatnonzero(missing > 1e-2)
    if not late.size:
        return [f"all {missing.size} target modes are ≥ 99 % learned"]
    parts = ", ".join(f"{i + 1}: {missing[i]:.3g}" for i in late)
    line = f"modes still missing (1 − fraction learned, as in modes.png): {parts}"
    if width is not None and width < missing.size:
        line += f"; modes {width + 1}–{missing.size} cannot all be learned at width {width}"
    return [line]

"""Is it a floor, or slow convergence? A verdict per run, with its evidence.

From a recorded loss curve (and, when available, the diagnostics, the Gauss-Newton spectrum and a
way to continue the run), ``judge`` classifies the run as

- **diverged** — a non-finite loss;
- **converged** — the loss is within 10× the problem's round-off floor;
- **oscillating** — in the last half of the record the loss rises as often as a quarter of the
  time and has not net-decreased by more than it fluctuates;
- **stalled** — the last half of the record decreased the loss by less than 0.1 %;
- **converging linearly** — log-loss falls at a stable rate (the rates fitted on the last 10 %,
  25 % and 50 % of the record agree within ×2);
- **sublinear** — the fitted rate keeps falling: the rate on the last 10 % is under half that
  on the last 50 %, or log-loss is fitted better by a line in log t (loss ~ t^(−p)) than in t.

The **ETA** to a target (relative to the initial loss) is a *range*, and the verdict says how it
was obtained: *measured* (the run was continued until it got there), or *extrapolated* from the
rates of several fit windows of the record (or of its continuation), widened by the Gauss-Newton
prediction ``(1 − η λ_min⁺)²`` where that applies. A range wider than ×4 says why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

WINDOWS = (0.1, 0.25, 0.5)  # fractions of the record used for rate fits
SLOW = ("converging linearly", "sublinear")  # still making progress: slow, not stuck
STOPPERS = (
    "converged",
    "oscillating",
    "stalled",
    "diverged",
    "too short",
)  # verdicts continuing won't change


@dataclass
class Verdict:
    run: str
    kind: str
    headline: str
    rate: float | None = None  # per-step loss factor, loss_{t+1} ≈ rate · loss_t
    rates: tuple[float, ...] = ()
    eta_steps: tuple[float, float] | None = None  # more steps to the target, (low, high)
    eta_seconds: tuple[float, float] | None = None
    eta_method: str = ""
    target: float = 1e-10
    evidence: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"{self.run}: {self.headline}", *(f"    {e}" for e in self.evidence)]


def _fit_rate(steps, loss) -> float:
    """Per-step loss factor from a least-squares line through (step, log loss)."""
    slope = np.polyfit(steps.astype(np.float64), np.log(loss), 1)[0]
    return float(np.exp(slope))


def window_rates(steps: np.ndarray, loss: np.ndarray) -> list[tuple[float, int, int]]:
    """(rate, first step, last step) fitted on the last 10 %, 25 % and 50 % of the record."""
    out = []
    n = len(steps)
    for fraction in WINDOWS:
        k = min(n, max(4, round(fraction * n)))
        out.append((_fit_rate(steps[-k:], loss[-k:]), int(steps[-k]), int(steps[-1])))
    return out


def steps_to(current: float, target: float, rate: float) -> float:
    """Steps for the loss to fall from ``current`` to ``target`` at a constant per-step ``rate``."""
    if current <= target:
        return 0.0
    if rate >= 1:
        return np.inf
    return float(np.log(target / current) / np.log(rate))


def _fmt_steps(n: float) -> str:
    return "∞" if not np.isfinite(n) else f"{n:.2g}" if n >= 1e4 else f"{n:.0f}"


def _fmt_range(lo: float, hi: float, unit: str = "") -> str:
    if np.isclose(lo, hi, rtol=0.05):
        return f"≈{_fmt_steps(lo)}{unit}"
    return f"{_fmt_steps(lo)}–{_fmt_steps(hi)}{unit}"


def classify(steps, loss, floor: float) -> tuple[str, dict]:
    """The kind of run, and the numbers the decision used."""
    if not np.isfinite(loss[-1]):
        return "diverged", {"step": int(steps[-1])}
    if loss[-1] <= 10 * floor:
        first = int(steps[np.argmax(loss <= 10 * floor)])
        return "converged", {"step": first}
    if len(steps) < 4:
        return "too short", {"rows": len(steps)}
    half = max(4, len(steps) // 2)
    tail = np.log(loss[-half:])
    diffs = np.diff(tail)
    rises = float(np.mean(diffs > 0)) if diffs.size else 0.0
    drop = tail[0] - tail[-1]
    fluctuation = float(np.sum(np.abs(diffs[diffs > 0])))
    if rises >= 0.25 and drop <= fluctuation:
        return "oscillating", {"rises": rises, "drop": drop, "fluctuation": fluctuation}
    if drop < 1e-3:
        return "stalled", {"drop": drop, "from": int(steps[-half])}
    fits = window_rates(steps, loss)
    speeds = [-np.log(r) for r, _, _ in fits]  # larger = faster
    info = {"fits": fits}
    t = steps[-half:].astype(np.float64)
    log_t = np.log(np.maximum(t, 1))
    linear_misfit = _misfit(t, tail)
    power_misfit = _misfit(log_t, tail)
    slowing = speeds[-1] > 0 and speeds[0] < 0.5 * speeds[-1]
    if slowing or (linear_misfit > 1e-8 and power_misfit < 0.5 * linear_misfit):
        exponent = -np.polyfit(log_t, tail, 1)[0]
        return "sublinear", {**info, "exponent": float(exponent)}
    return "converging linearly", info


def _misfit(x, y) -> float:
    """RMS residual of the least-squares line through (x, y)."""
    coefficients = np.polyfit(x, y, 1)
    return float(np.sqrt(np.mean((np.polyval(coefficients, x) - y) ** 2)))


def judge(
    run: str,
    steps: np.ndarray,
    loss: np.ndarray,
    *,
    floor: float,
    target: float = 1e-10,
    seconds_per_step: float | None = None,
    gn_rate: float | None = None,
    mode_learned: np.ndarray | None = None,
    extend: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None,
    budget_steps: int = 1_000_000,
    segment_steps: int | None = None,
) -> Verdict:
    """The verdict for one run (see the module docstring).

    ``target`` is relative to the initial loss. ``extend(n)`` continues the run by ``n`` more
    steps and returns the new (steps, loss) records; it is called in segments of
    ``segment_steps`` (default: the recorded length, within 1e3–5e4), up to ``budget_steps`` in
    all, until the target is reached or the verdict cannot change any more.
    """
    steps, loss = np.asarray(steps), np.asarray(loss, dtype=np.float64)
    goal = target * loss[0]
    if segment_steps is None:  # as long as the record, within [1e3, 5e4]
        segment_steps = int(np.clip(steps[-1], 1000, 50_000))
    kind, info = classify(steps, loss, floor)
    evidence = _mode_evidence(mode_learned) if kind != "diverged" else []
    if kind == "diverged":
        return Verdict(
            run,
            kind,
            f"diverged at step {info['step']} (non-finite loss)",
            target=target,
            evidence=evidence,
        )
    if kind == "converged":
        return Verdict(
            run,
            kind,
            f"converged to round-off (loss {loss[-1]:.2e} ≤ 10× the floor {floor:.1e}) by step "
            f"{info['step']}",
            target=target,
            evidence=evidence,
        )
    if loss[-1] <= goal:
        first = int(steps[np.argmax(loss <= goal)])
        also = "" if kind == "too short" else f" ({kind})"
        head = f"reached {target:.0e} of the initial loss at step {first}{also}"
        return Verdict(
            run,
            kind,
            head,
            eta_steps=(0.0, 0.0),
            eta_method="recorded",
            target=target,
            evidence=evidence,
        )
    if kind == "too short":
        return Verdict(
            run,
            kind,
            f"too few records ({info['rows']}) to judge: record more often",
            target=target,
            evidence=evidence,
        )
    if kind == "oscillating":
        evidence.insert(
            0,
            f"over steps {steps[len(steps) // 2]}–{steps[-1]} the loss rose in {info['rises']:.0%}"
            f" of the records; net log-decrease {info['drop']:.2g} ≤ its rises "
            f"{info['fluctuation']:.2g}",
        )
        return Verdict(
            run,
            kind,
            "oscillating: no net progress at this step size (a floor "
            "for this method, not for the problem)",
            target=target,
            evidence=evidence,
        )

    measured_from, base_steps, base_loss = None, steps, loss
    if extend is not None and budget_steps > 0:
        pieces_steps, pieces_loss, spent = [], [], 0
        while spent < budget_steps:
            more_steps, more_loss = extend(min(segment_steps, budget_steps - spent))
            spent += segment_steps
            pieces_steps.append(more_steps)
            pieces_loss.append(more_loss)
            if np.any(more_loss <= goal) or not np.all(np.isfinite(more_loss)):
                break
            sofar = np.concatenate([loss, *pieces_loss])
            if classify(np.concatenate([steps, *pieces_steps]), sofar, floor)[0] in STOPPERS:
                break  # more steps would not change the verdict
        more_steps, more_loss = np.concatenate(pieces_steps), np.concatenate(pieces_loss)
        reached = np.flatnonzero(more_loss <= goal)
        if reached.size:
            at = int(more_steps[reached[0]])
            before = int(more_steps[reached[0] - 1]) if reached[0] > 0 else int(steps[-1])
            eta = (float(before - steps[-1]), float(at - steps[-1]))
            evidence.insert(
                0,
                f"measured: continuing the run, the loss reached {target:.0e} of the initial "
                f"between steps {before} and {at} (records every {at - before} steps)",
            )
            upto = reached[0] + 1
            kind, _ = classify(
                np.concatenate([steps, more_steps[:upto]]),
                np.concatenate([loss, more_loss[:upto]]),
                floor,
            )
            if seconds_per_step is None:
                seconds_per_step = getattr(extend, "seconds_per_step", None)
            seconds = None if seconds_per_step is None else tuple(e * seconds_per_step for e in eta)
            verdict_words = f"{kind} — slow, not stuck" if kind in SLOW else kind
            head = (
                f"{verdict_words}; reaches {target:.0e} of the initial loss in "
                f"{_fmt_range(*eta)} more steps{_seconds_text(seconds)} (measured)"
            )
            return Verdict(
                run,
                kind,
                head,
                rate=_fit_rate(*_tail(more_steps, more_loss)),
                eta_steps=eta,
                eta_seconds=seconds,
                eta_method="measured",
                target=target,
                evidence=evidence,
            )
        finite = np.isfinite(more_loss)
        base_steps = np.concatenate([steps, more_steps[finite]])
        base_loss = np.concatenate([loss, more_loss[finite]])
        measured_from = int(base_steps[-1])
        kind, info = classify(base_steps, base_loss, floor)
        if kind in STOPPERS:
            evidence.insert(0, f"continued to step {measured_from}: now {kind}")
            return Verdict(
                run,
                kind,
                f"{kind} after continuing to step {measured_from}",
                target=target,
                evidence=evidence,
            )
    if kind == "stalled":
        evidence.insert(0, f"the loss fell by {info['drop']:.1e} (log) since step {info['from']}")
        return Verdict(
            run,
            kind,
            "stalled: no measurable progress in the last half of the record",
            target=target,
            evidence=evidence,
        )

    fits = info["fits"]
    rates = [r for r, _, _ in fits]
    estimates = [steps_to(base_loss[-1], goal, r) for r in rates]
    sources = [f"rate {1 - r:.2e}/step on steps {a}–{b}" for r, a, b in fits]
    if gn_rate is not None and 0 < gn_rate < 1:
        estimates.append(steps_to(base_loss[-1], goal, gn_rate))
        sources.append(f"Gauss-Newton prediction {1 - gn_rate:.2e}/step")
    if kind == "sublinear":
        p = info["exponent"]
        t = float(base_steps[-1])
        power = t * (base_loss[-1] / goal) ** (1 / p) - t if p > 0 else np.inf
        estimates.append(power)
        sources.append(f"power law loss ∝ t^-{p:.2f}")
    done = float(base_steps[-1] - steps[-1])
    low, high = min(estimates) + done, max(estimates) + done
    seconds = (
        None if seconds_per_step is None else (low * seconds_per_step, high * seconds_per_step)
    )
    how = "extrapolated from " + (
        "the record" if measured_from is None else f"a continuation to step {measured_from}"
    )
    evidence.insert(0, f"{how}: " + "; ".join(sources))
    if high > 4 * max(low, 1):
        evidence.insert(
            1,
            "range wider than ×4: the fitted rates disagree — the rate is still changing as "
            "modes are learned, so a single line does not predict well",
        )
    rate = rates[0]
    head = (
        f"{kind} at {1 - rate:.2g} per step; reaches {target:.0e} of the initial loss in "
        f"{_fmt_range(low, high)} more steps{_seconds_text(seconds)} ({how.split(' from')[0]})"
    )
    return Verdict(
        run,
        kind,
        head,
        rate=rate,
        rates=tuple(rates),
        eta_steps=(low, high),
        eta_seconds=seconds,
        eta_method=how,
        target=target,
        evidence=evidence,
    )


def _tail(steps, loss):
    k = max(4, len(steps) // 10)
    keep = np.isfinite(loss[-k:])
    return steps[-k:][keep], loss[-k:][keep]


def _seconds_text(seconds) -> str:
    if seconds is None:
        return ""
    lo, hi = seconds
    if np.isclose(lo, hi, rtol=0.05):
        return f" (≈{lo:.2g} s here)"
    return f" ({lo:.2g}–{hi:.2g} s here)"


def _mode_evidence(mode_learned) -> list[str]:
    if mode_learned is None or len(mode_learned) == 0:
        return []
    learned = np.asarray(mode_learned, dtype=np.float64)
    missing = np.flatnonzero(np.abs(1 - learned) > 1e-2)
    if not missing.size:
        return [f"all {learned.size} target modes are ≥ 99 % learned"]
    parts = ", ".join(f"{i + 1}: {learned[i]:.3g}" for i in missing)
    return [f"modes not yet learned (fraction of each target singular mode): {parts}"]

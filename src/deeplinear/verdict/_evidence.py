"""The evidence a verdict rests on — the record and its continuation — and the shape of its curve.

``classify`` reads the last half of a loss curve as its excess ``e = f − f*`` over the reachable
minimum: converged (every loss from some step on within ``Floor.resolution``), diverged, too
short, oscillating (log e rises on ≥ 25 % of the steps and falls no more than it rises), stalled
(log e falls < 1e-3), sublinear (log e is closer to a line in log t than in t, or the fitted
rate slows) or converging linearly. Rates are per-step factors ``e_{t+1} ≈ r e_t`` fitted on
log e over the last 10 %, 25 % and 50 % of the curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deeplinear.diagnostics.floors import Floor

WINDOWS = (0.1, 0.25, 0.5)  # fractions of the evidence used for rate fits
ZERO_GRADIENT = 1e-12  # relative to the problem's gradient scale: "the gradient is zero"


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


def tail_rate(steps, loss, floor: Floor) -> float | None:
    """The rate fitted on the last 10 % (at least 4 records) of a curve's excess."""
    k = max(4, len(steps) // 10)
    e = np.maximum(floor.excess(loss[-k:]), floor.resolution)
    return _fit_rate(steps[-k:], e) if len(steps) >= 2 else None


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


@dataclass
class Evidence:
    """The record (its first ``recorded`` rows) and its continuation, grown segment by segment;
    ``spent`` counts the steps continued."""

    steps: np.ndarray
    loss: np.ndarray
    grad: np.ndarray | None
    recorded: int = 0
    spent: int = 0

    @classmethod
    def of_record(cls, steps, loss, grad_norm) -> Evidence:
        steps, loss = np.asarray(steps), np.asarray(loss, dtype=np.float64)
        grad = None if grad_norm is None else np.asarray(grad_norm, dtype=np.float64)
        return cls(steps, loss, grad, recorded=len(steps))

    def add(self, steps, loss, grad) -> None:
        self.steps = np.concatenate([self.steps, steps])
        self.loss = np.concatenate([self.loss, loss])
        if self.grad is not None:
            self.grad = np.concatenate([self.grad, grad])

    @property
    def last(self) -> int:
        return int(self.steps[-1])

    @property
    def recorded_until(self) -> int:
        """The last recorded step: ETAs count more steps from here."""
        return int(self.steps[self.recorded - 1])

    def crossing(self, goal: float) -> tuple[int | None, float]:
        """Index of the first loss ≤ goal, and the highest loss after it relative to the goal."""
        below = np.flatnonzero(self.loss <= goal)
        if not below.size:
            return None, np.nan
        after = self.loss[below[0] :]
        if not np.all(np.isfinite(after)):
            return int(below[0]), np.inf
        if goal <= 0:
            return int(below[0]), np.inf if np.any(after > goal) else 1.0
        return int(below[0]), float(np.max(after) / goal)

    def zero_gradient(self) -> bool:
        """Is the last gradient norm zero to round-off (≤ 1e-12 of the largest seen or √f₀)?"""
        if self.grad is None or not np.isfinite(self.grad[-1]):
            return False
        scale = max(float(np.nanmax(self.grad)), float(np.sqrt(self.loss[0])))
        return self.grad[-1] <= ZERO_GRADIENT * scale

"""The verdict on real data: is the held-out error limited by the optimizer or by the data?

A ratings run records, at every record, the training loss f (the regularized objective), the
training RMSE and the validation RMSE v (entries never trained on). ``judge_held_out`` reads the
validation curve's **tail** — the records in the last ``TAIL`` = 25 % of the step range, at least
``MIN_TAIL`` of them — through a line in log-step, ``v ≈ a + β log₁₀ t``: β is the change per ×10
steps, ``drop = −β log₁₀(t_end/t_tail)`` the fitted fall over the tail, and se(β) its standard
error. The noise σ of v is the smaller of two upper bounds: the tail fit's residual RMS and
``1.4826 · median|Δ²v| / √6`` (white noise's second differences have variance 6σ²). The rules,
in order:

1. a non-finite training loss: **diverged**;
2. no finite validation RMSE: **not held out** (no validation split);
3. fewer than ``MIN_RECORDS`` = 6 records with a validation RMSE: **too short**;
4. the held-out error still falls clearly — ``drop ≥ FLAT · v_end`` (0.1 %, which implies a
   gain ≥ 0.8 % per ×10 more steps) and ``−β ≥ SIGNIFICANT · se(β)`` (3): **optimization-
   limited**, with an ETA of the training loss to within ``TRAIN_GOAL`` (0.01 %) of its floor;
5. the held-out error rose from its minimum — the median of the last 3 records exceeds the
   minimum of a 5-record moving average by more than ``max(RISE · v_best, 4σ)`` (0.5 %): a
   sustained rise, which one noisy point cannot make — while the training loss fell since the
   best record: **overfitting** from the best step (**unstable** where the training loss did not
   fall: the optimizer, not the fit, moved the held-out error);
6. else **statistical floor**: the held-out error is flat within its noise and resolution; the
   training loss still falls, or is flat too (relative change over the tail < ``TRAIN_FLAT``).

The ETA (rule 4): with ``floor_loss`` known, the excess ``e = f − floor_loss`` is fitted as a
geometric decay ``e_{t+1} ≈ r e_t`` on the last 10 %, 25 % and 50 % of the records (the lab's
``window_rates``), and ``rate_hint`` joins them. Without it, the rate of fall ``d = −Δf/Δt`` is
fitted instead (for ``e = c rᵗ``, ``d = e · ln(1/r)``, so d decays at the same r and
``e_end = d_end / ln(1/r)`` estimates the excess and the floor). The interval is the spread of
``log(goal/e_end)/log r`` over the rates, read by ``_eta.reaches``: wider than ×100 or past 1e10
steps it is "no reliable ETA".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from deeplinear.verdict._eta import reaches, reliable
from deeplinear.verdict._evidence import steps_to, window_rates

HELD_OUT_KINDS = (
    "optimization-limited",
    "statistical floor",
    "overfitting",
    "unstable",
    "diverged",
    "too short",
    "not held out",
)
MIN_RECORDS = 6  # records with a finite validation RMSE needed to judge it
TAIL = 0.25  # the tail: the last quarter of the step range
MIN_TAIL = 5  # records in the tail at least
FLAT = 1e-3  # a fitted fall over the tail below this (relative) is flat
SIGNIFICANT = 3.0  # −β / se(β) at least this: a fall the noise cannot make
RISE = 5e-3  # a rise above the minimum beyond this (relative) and 4σ: overfitting
NOISE_RISE = 4.0
TRAIN_FLAT = 1e-5  # a training loss whose relative change over the tail is below this is flat
TRAIN_GOAL = 1e-4  # the ETA is to a training loss within 0.01 % of its floor

MOVES = {
    "optimization-limited": "more steps (or a faster method)",
    "statistical floor": "more data or a better model (rank, regularization, biases)",
    "overfitting": "stop earlier or raise regularization",
    "unstable": "a smaller step size",
    "diverged": "a smaller step size",
    "too short": "more records (record more often or run longer)",
    "not held out": "a validation split (set validation_fraction, e.g. 0.1)",
}


@dataclass(frozen=True)
class HeldOutVerdict:
    """Which floor a ratings run's held-out error has hit, with the numbers that decided it."""

    kind: str
    headline: str
    best_step: int | None
    best_validation: float | None
    eta_steps: tuple[float, float] | None  # more steps of the training loss to its floor
    evidence: dict = field(default_factory=dict)
    what_would_move_it: str = ""

    def record(self) -> dict:
        """The verdict as plain JSON (non-finite numbers as ``None``)."""
        return {
            "kind": self.kind,
            "headline": self.headline,
            "best_step": self.best_step,
            "best_validation": _plain(self.best_validation),
            "eta_steps": None if self.eta_steps is None else [_plain(e) for e in self.eta_steps],
            "evidence": _plain(self.evidence),
            "what_would_move_it": self.what_would_move_it,
        }


def _plain(x):
    """NumPy scalars, arrays and tuples as JSON values; NaN and ±∞ as ``None``."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_plain(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    return x


@dataclass(frozen=True)
class Trend:
    """The tail's line ``v ≈ a + β log₁₀ t`` and the curve's noise."""

    first: int  # index of the tail's first record
    slope: float  # β, the change per ×10 steps
    slope_se: float
    drop: float  # the fitted fall over the tail (> 0: falling)
    noise: float  # σ

    def falling(self, level: float) -> bool:
        """Rule 4: a fall over the tail ≥ 0.1 % of ``level`` that the noise cannot make."""
        return self.drop >= FLAT * level and -self.slope >= SIGNIFICANT * self.slope_se


def tail_start(steps: np.ndarray) -> int:
    """Index of the first record in the last ``TAIL`` of the step range (≥ ``MIN_TAIL`` kept)."""
    t0, t1 = float(steps[0]), float(steps[-1])
    first = int(np.searchsorted(steps, t1 - TAIL * (t1 - t0)))
    return max(0, min(first, len(steps) - MIN_TAIL))


def trend(steps: np.ndarray, values: np.ndarray) -> Trend:
    """The tail's log-step line, its standard error and the noise (module docstring)."""
    first = tail_start(steps)
    x = np.log10(np.maximum(steps[first:].astype(np.float64), 1.0))
    y = values[first:]
    spread = float(np.sum((x - x.mean()) ** 2))
    if spread == 0.0:
        slope, residual = 0.0, y - y.mean()
    else:
        slope = float(np.sum((x - x.mean()) * (y - y.mean())) / spread)
        residual = y - (y.mean() + slope * (x - x.mean()))
    ssr = float(np.sum(residual**2))
    se = np.sqrt(ssr / max(len(y) - 2, 1) / spread) if spread > 0 else np.inf
    second = np.diff(values, 2)
    by_differences = 1.4826 * float(np.median(np.abs(second))) / np.sqrt(6) if second.size else 0
    resolution = 1e-12 * float(np.max(np.abs(values)))
    noise = max(min(float(np.sqrt(ssr / len(y))), by_differences), resolution)
    drop = -slope * float(x[-1] - x[0])
    return Trend(first, slope, float(se), drop, noise)


def _smoothed(values: np.ndarray, width: int = 5) -> np.ndarray:
    """The centred moving average over ``width`` records (narrower at the ends)."""
    half = width // 2
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    i = np.arange(len(values))
    lo, hi = np.maximum(i - half, 0), np.minimum(i + half + 1, len(values))
    return (cumulative[hi] - cumulative[lo]) / (hi - lo)


def rise(values: np.ndarray, noise: float) -> tuple[float, float]:
    """(the rise of the last 3 records' median above the smoothed minimum, its threshold)."""
    low = float(np.min(_smoothed(values)))
    end = float(np.median(values[-3:]))
    return end - low, max(RISE * low, NOISE_RISE * noise)


def _excess_from_fall(steps, loss, last: int, rate: float) -> float:
    """The excess at the end of a geometric decay ``e = c rᵗ`` from its fall over the records
    ``last`` → ``last + 1`` (t_a → t_b): e(t_b) = (f(t_a) − f(t_b)) / (r^−(t_b − t_a) − 1),
    then × r^(t_end − t_b)."""
    if not rate < 1:
        return np.inf
    gap = float(steps[last + 1] - steps[last])
    at_b = float(loss[last] - loss[last + 1]) / np.expm1(-gap * np.log(rate))
    return at_b * rate ** float(steps[-1] - steps[last + 1])


def training_eta(steps, loss, *, floor_loss=None, rate_hint=None) -> dict:
    """More steps for the training loss to come within ``TRAIN_GOAL`` of its floor (docstring):
    ``{"eta": (low, high) | None, "rates": [...], "floor": known or estimated, ...}``."""
    steps = np.asarray(steps, dtype=np.float64)[len(steps) // 2 :]
    loss = np.asarray(loss, dtype=np.float64)[len(loss) // 2 :]
    hint = [float(rate_hint)] if rate_hint is not None and 0 < rate_hint < 1 else []
    if floor_loss is not None:
        resolution = 1e-15 * max(abs(float(loss[0])), 1e-300)
        excess = np.maximum(loss - floor_loss, resolution)
        rates = [r for r, _, _ in window_rates(steps, excess)] + hint
        floor, at_end = float(floor_loss), {r: float(excess[-1]) for r in rates}
    else:
        fall = -np.diff(loss) / np.diff(steps)
        middle = 0.5 * (steps[1:] + steps[:-1])
        keep = np.flatnonzero(np.isfinite(fall) & (fall > 0))
        if keep.size < 4:
            return {"eta": None, "rates": [], "floor": None, "why": "the loss does not fall"}
        rates = [r for r, _, _ in window_rates(middle[keep], fall[keep])] + hint
        at_end = {r: _excess_from_fall(steps, loss, int(keep[-1]), r) for r in rates}
        floor = float(loss[-1] - min(at_end.values()))
    goal = TRAIN_GOAL * abs(floor) if floor and floor > 0 else TRAIN_GOAL * abs(float(loss[-1]))
    estimates = [steps_to(at_end[r], goal, r) if np.isfinite(at_end[r]) else np.inf for r in rates]
    if floor_loss is not None:
        estimates += _power_law(steps, excess, goal, falls=False)
    else:
        estimates += _power_law(middle[keep], fall[keep], goal, falls=True)
    eta = (float(min(estimates)), float(max(estimates)))
    return {
        "eta": eta,
        "rates": rates,
        "floor": floor,
        "goal": goal,
        "known": floor_loss is not None,
    }


def _misfit(x: np.ndarray, y: np.ndarray) -> float:
    """RMS residual of the least-squares line through (x, y)."""
    return float(np.sqrt(np.mean((np.polyval(np.polyfit(x, y, 1), x) - y) ** 2)))


def _power_law(t: np.ndarray, y: np.ndarray, goal: float, *, falls: bool) -> list[float]:
    """The power law's estimate where log y is closer to a line in log t than in t (as
    ``classify``'s sublinear rule): excess e ∝ t^−p reaches ``goal`` at t (e/goal)^(1/p); for
    the rate of fall (``falls``) y ∝ t^−(p+1) and e = y t / p. p ≤ 0 never reaches it."""
    if len(t) < 4 or np.any(t <= 0):
        return []
    log_t, log_y = np.log(t), np.log(y)
    if not _misfit(log_t, log_y) < 0.5 * _misfit(t, log_y):
        return []
    p = -float(np.polyfit(log_t, log_y, 1)[0]) - (1.0 if falls else 0.0)
    if p <= 0:
        return [np.inf]
    excess = float(y[-1]) * float(t[-1]) / p if falls else float(y[-1])
    if excess <= goal:
        return [0.0]
    growth = np.log(excess / goal) / p  # log of the factor on t
    return [float(t[-1]) * np.expm1(growth) if growth < 700 else np.inf]


def _checked(*arrays) -> list[np.ndarray]:
    """The four curves as float arrays of one length, steps strictly increasing."""
    steps = np.asarray(arrays[0])
    out = [steps] + [np.asarray(a, dtype=np.float64).ravel() for a in arrays[1:]]
    if steps.ndim != 1 or any(len(a) != len(steps) for a in out):
        shapes = ", ".join(str(np.shape(a)) for a in arrays)
        raise ValueError(f"judge_held_out: the curves must be 1-D of one length, got {shapes}")
    if len(steps) > 1 and np.any(np.diff(steps) <= 0):
        raise ValueError("judge_held_out: `steps` must be strictly increasing")
    return out


def _moving_median(values: np.ndarray, width: int = 5) -> np.ndarray:
    """The centred moving median over ``width`` records (narrower at the ends)."""
    half = width // 2
    n = len(values)
    return np.array([np.median(values[max(i - half, 0) : i + half + 1]) for i in range(n)])


def flat_since(values: np.ndarray, noise: float, first: int) -> tuple[int, float, float]:
    """(index from which the moving median stays within max(3σ, 0.1 %) of the tail's median,
    that level, its spread 1.4826 · MAD since then, at least σ)."""
    level = float(np.median(values[first:]))
    band = max(3.0 * noise, FLAT * abs(level))
    inside = np.abs(_moving_median(values) - level) <= band
    outside = np.flatnonzero(~inside)
    since = first if inside.size and not inside[-1] else int(outside[-1] + 1) if outside.size else 0
    part = values[since:]
    spread = max(1.4826 * float(np.median(np.abs(part - np.median(part)))), noise)
    return since, float(np.median(part)), spread


def judge_held_out(
    steps,
    loss,
    train_rmse,
    validation_rmse,
    *,
    floor_loss: float | None = None,
    rate_hint: float | None = None,
    test_rmse=None,
) -> HeldOutVerdict:
    """The held-out verdict of one ratings run (module docstring: the rules and thresholds).

    ``loss`` is the training objective, ``train_rmse`` and ``validation_rmse`` the RMSEs at the
    same records (NaN where not measured); ``floor_loss`` the training loss's floor if known;
    ``rate_hint`` a predicted per-step factor of its excess (e.g. Gauss-Newton's). ``test_rmse``
    is only reported (at the best validation step), never used to decide.
    """
    steps, loss, train, valid = _checked(steps, loss, train_rmse, validation_rmse)
    test = None if test_rmse is None else _checked(steps, test_rmse)[1]
    if not np.all(np.isfinite(loss)):
        return _diverged(steps, loss, valid)
    measured = np.isfinite(valid)
    if not measured.any():
        return _verdict(
            "not held out",
            "not held out: no validation RMSE was recorded (all NaN), so nothing tells a fit "
            "from a floor: set validation_fraction (e.g. 0.1) to hold out a validation split",
            None,
            None,
            {"records": len(steps)},
        )
    if measured.sum() < MIN_RECORDS:
        return _too_short(steps, valid, measured)
    s, f, t, v = steps[measured], loss[measured], train[measured], valid[measured]
    best = int(np.argmin(v))
    shape = trend(s, v)
    evidence = {
        "records": len(s),
        "tail_from_step": int(s[shape.first]),
        "validation_slope_per_decade": shape.slope,
        "validation_slope_se": shape.slope_se,
        "validation_drop_over_tail": shape.drop,
        "validation_noise": shape.noise,
        "validation_end": float(v[-1]),
        "best_step": int(s[best]),
        "best_validation": float(v[best]),
        "train_rmse_end": float(t[-1]),
        "loss_end": float(f[-1]),
        "loss_change_over_tail": _relative_fall(f, shape.first),
    }
    if test is not None and np.isfinite(test[measured][best]):
        evidence["test_rmse_at_best"] = float(test[measured][best])
    level = abs(float(np.median(v[-3:])))
    if shape.falling(level):
        eta = training_eta(steps, loss, floor_loss=floor_loss, rate_hint=rate_hint)
        return _optimization_limited(s, f, t, v, shape, eta, evidence)
    up, threshold = rise(v, shape.noise)
    evidence.update(rise_above_minimum=up, rise_threshold=threshold)
    if up > threshold:
        return _rose(s, f, t, v, best, evidence)
    return _floor(s, f, t, v, shape, best, evidence)


def _relative_fall(values: np.ndarray, first: int) -> float:
    """(values[first] − values[-1]) / |values[-1]|: > 0 falling."""
    return float((values[first] - values[-1]) / max(abs(float(values[-1])), 1e-300))


def _verdict(kind, headline, best_step, best_value, evidence, eta=None) -> HeldOutVerdict:
    return HeldOutVerdict(kind, headline, best_step, best_value, eta, evidence, MOVES[kind])


def _best_so_far(steps, valid) -> tuple[int | None, float | None]:
    finite = np.flatnonzero(np.isfinite(valid))
    if not finite.size:
        return None, None
    i = finite[np.argmin(valid[finite])]
    return int(steps[i]), float(valid[i])


def _diverged(steps, loss, valid) -> HeldOutVerdict:
    at = int(np.flatnonzero(~np.isfinite(loss))[0])
    step, value = _best_so_far(steps[:at], valid[:at])
    before = (
        ""
        if step is None
        else f" (the best validation RMSE before it is {value:.4g} at step {step})"
    )
    headline = (
        f"diverged: the training loss is non-finite from step {int(steps[at])}: "
        f"lower the step size{before}"
    )
    return _verdict("diverged", headline, step, value, {"non_finite_from_step": int(steps[at])})


def _too_short(steps, valid, measured) -> HeldOutVerdict:
    n = int(measured.sum())
    step, value = _best_so_far(steps, valid)
    headline = (
        f"too short: {n} record{'s' if n != 1 else ''} with a validation RMSE; at least "
        f"{MIN_RECORDS} are needed to tell a falling held-out error from a flat or rising one"
    )
    return _verdict("too short", headline, step, value, {"records": n})


def _eta_words(eta: dict) -> tuple[str, tuple[float, float] | None]:
    """The ETA clause and the interval a reader can use (None where it is no ETA)."""
    target = f"within {100 * TRAIN_GOAL:.2g} % of its floor"
    if eta["eta"] is None:
        return f"no ETA for the training loss to its floor ({eta['why']})", None
    low, high = eta["eta"]
    if not np.isfinite(low):
        return "no ETA for the training loss to its floor: its fall is not slowing yet", None
    if reliable(low, high):
        return "the training loss " + reaches(target, low, high), (low, high)
    return reaches(f"within {100 * TRAIN_GOAL:.2g} % of the training loss's floor", low, high), None


def _optimization_limited(s, f, t, v, shape: Trend, eta: dict, evidence) -> HeldOutVerdict:
    first = shape.first
    per_step = shape.slope / (float(max(s[-1], 1)) * np.log(10))
    falls = _relative_fall(f, first)
    train = "the training loss falls with it" if falls > TRAIN_FLAT else "the training loss is flat"
    clause, usable = _eta_words(eta)
    evidence.update(
        validation_slope_per_step=per_step,
        eta_rates=eta["rates"],
        eta_interval=eta["eta"],
        training_floor=eta.get("floor"),
        training_floor_known=eta.get("known"),
        training_goal=eta.get("goal"),
    )
    best = int(np.argmin(v))
    again = ""
    if v[-1] > v[best] * (1 + RISE):
        again = f" (falling again: the best so far is {v[best]:.5g} at step {int(s[best])})"
    headline = (
        f"optimization-limited: the validation RMSE still falls ({v[first]:.4g} → {v[-1]:.4g} "
        f"over steps {int(s[first])}–{int(s[-1])}, {shape.slope:+.2g} per ×10 steps, "
        f"{per_step:+.2g} per step now){again} and {train} ({f[first]:.4g} → {f[-1]:.4g}): "
        f"run longer or use a faster method; {clause}"
    )
    return _verdict(
        "optimization-limited", headline, int(s[best]), float(v[best]), evidence, usable
    )


def _rose(s, f, t, v, best: int, evidence) -> HeldOutVerdict:
    step, low, end = int(s[best]), float(v[best]), float(np.median(v[-3:]))
    up = f"rose from its best {low:.5g} at step {step} to {end:.4g} at step {int(s[-1])} " + (
        f"(+{100 * (end / low - 1):.2g} %, beyond max({100 * RISE:.2g} %, {NOISE_RISE:.0f}σ))"
    )
    if f[-1] < f[best]:
        headline = (
            f"overfitting: the validation RMSE {up} while the training RMSE fell "
            f"({t[best]:.4g} → {t[-1]:.4g}): stop at step {step} or regularize more"
        )
        return _verdict("overfitting", headline, step, low, evidence)
    headline = (
        f"unstable: the validation RMSE {up} while the training loss did not fall "
        f"({f[best]:.4g} → {f[-1]:.4g}): the optimizer, not the fit, moved it; lower the step size"
    )
    return _verdict("unstable", headline, step, low, evidence)


def _level(level: float, spread: float) -> str:
    """``0.913 ± 0.001``: as many decimals as the spread shows (1 to 5)."""
    shown = float(f"{max(spread, 1e-300):.1g}")
    decimals = int(np.clip(-np.floor(np.log10(shown)), 1, 5))
    return f"{level:.{decimals}f} ± {spread:.1g}"


def _floor(s, f, t, v, shape: Trend, best: int, evidence) -> HeldOutVerdict:
    since, level, spread = flat_since(v, shape.noise, shape.first)
    falls = _relative_fall(f, shape.first)
    evidence.update(flat_since_step=int(s[since]), level=level, spread=spread)
    if falls > TRAIN_FLAT:
        train = (
            f"while the training RMSE still falls ({t[since]:.4g} → {t[-1]:.4g}): "
            "more steps fit the training data only"
        )
    elif falls < -TRAIN_FLAT:
        train = f"while the training loss rises ({f[since]:.4g} → {f[-1]:.4g})"
    else:
        train = (
            f"and the training loss is flat too (training RMSE {t[-1]:.4g}): both have "
            "flattened, more steps change nothing"
        )
    headline = (
        f"statistical floor: the validation RMSE has been {_level(level, spread)} since step "
        f"{int(s[since])} {train}; the best validation RMSE is {v[best]:.5g} at step {int(s[best])}"
    )
    return _verdict("statistical floor", headline, int(s[best]), float(v[best]), evidence)

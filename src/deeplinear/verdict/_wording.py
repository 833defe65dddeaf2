"""A verdict's sentences: the headline and the evidence, from a ``Finding`` and its ``Setting``.

Evidence lines come in three groups: the rule's own lines first, then the two every verdict but
``start`` shares (the target is unreachable; the exact theory's prediction), then what the rule
adds after them (a measured plateau's escape from the record).
"""

from __future__ import annotations

import numpy as np

from deeplinear.verdict._classification import Finding, Setting
from deeplinear.verdict._eta import SPAN, fmt_range, fmt_steps, reaches, reliable


def words(found: Finding, setting: Setting) -> tuple[str, list[str]]:
    """(headline, evidence lines) for a finding."""
    if found.basis == "start":
        return _start(found, setting), []
    headline, first, last = _RULES[found.basis](found, setting)
    if not setting.floor.known and "unknown" not in headline and found.basis != "diverged":
        headline += " — floor unknown: the excess is measured against 0"
    return headline, [*first, *_shared(found, setting), *last]


def _shared(found: Finding, setting: Setting) -> list[str]:
    floor, goal = setting.floor, setting.goal
    lines = []
    if not floor.known:
        lines.append(
            f"the reachable minimum is {floor.why()}: the excess is measured against 0, so the "
            "loss may stop above the target without any fault of the method"
        )
    if not setting.reachable:
        lines.append(
            f"the target {goal:.3g} is unreachable: the best possible loss is {floor.value:.4g} "
            f"({floor.why()}), within the loop's round-off {floor.resolution:.1e}"
            if goal > floor.value
            else f"the target {goal:.3g} is unreachable: the best possible loss is "
            f"{floor.value:.4g} ({floor.why()})"
        )
    if found.theory_step is not None:
        more = f" ({found.theory_steps:.0f} more)" if found.theory_steps else ""
        lines.append(
            f"theory: the exact decoupled GD recursion first reaches {goal:.3g} at step "
            f"{found.theory_step:.0f}{more}"
        )
    return lines


def _start(found: Finding, setting: Setting) -> str:
    floor, initial = setting.floor, found.initial_loss
    return (
        f"starts at the reachable minimum {floor.value:.3g} (initial loss {initial:.3g}, "
        f"within the loop's round-off {floor.resolution:.1e}): nothing to learn"
    )


def _diverged(found: Finding, setting: Setting):
    return f"diverged at step {found.shape['step']} (non-finite loss)", [], []


def _too_short(found: Finding, setting: Setting):
    return f"too few records ({found.shape['rows']}) to judge: record more often", [], []


def _unstable(found: Finding, setting: Setting):
    crossing = found.crossing
    highest, above = crossing["highest_over_target"], crossing["fraction_above_after"]
    rise = "to a non-finite loss" if not np.isfinite(highest) else f"to {highest:.2g}× the target"
    spread = ""
    if "spread" in crossing:
        lo, hi = crossing["spread"]
        spread = (
            f"; from the initial weights perturbed at 1e-12 it first crosses at {lo:.0f}–{hi:.0f}"
        )
    elif "perturbed_first_steps" in crossing:
        hits = np.asarray(crossing["perturbed_first_steps"], dtype=np.float64)
        spread = (
            f"; {int(np.sum(~np.isfinite(hits)))} of {hits.size} runs from the initial weights "
            "perturbed at 1e-12 never cross it"
        )
    headline = (
        f"unstable: touches {_target_words(setting)} at step {crossing['first_step']} but does "
        f"not stay — it rises {rise} on {above:.0%} of the later records{spread}"
    )
    return headline, [], []


def _converged(found: Finding, setting: Setting):
    floor = setting.floor
    where = f"by step {found.shape['step']}"
    excess = f"excess {found.excess_loss:.1e} (the loop's float64 value)"
    if found.accurate is not None:
        value, bound = found.accurate
        excess = f"loss {value:.3g} in double-double (±{bound:.0e}), excess {found.excess_loss:.1e}"
    minimum = f"the reachable minimum {floor.value:.3g} ({', '.join(floor.kinds)})"
    if not floor.known:
        minimum = "0, the lower bound of the unknown reachable minimum (so the minimum itself)"
    headline = (
        f"converged to {minimum} {where}; "
        f"{excess}: within the loop's round-off {floor.resolution:.1e}"
    )
    first = []
    if found.eta_method == "measured":
        first.append(
            f"reached {_target_words(setting)} ({setting.goal:.3g}) at step {found.crossed_at}"
        )
    return headline, first, []


def _measured(found: Finding, setting: Setting):
    kind, at = found.kind, found.crossed_at
    last = []
    if found.record_escape is not None:
        predicted, where = found.record_escape
        record = "never" if not np.isfinite(predicted) else f"in {_fmt_steps(predicted)} steps"
        last.append(
            f"plateau: the record's own rates would reach the target {record}; instead the "
            f"excess halves by step {where} and the run accelerates"
        )
    if found.eta_steps == (0.0, 0.0):  # crossed within the record
        headline = (
            f"reached {setting.target:.0e} of the initial"
            f"{' excess' * (setting.relative_to == 'excess')} loss at step {at} and stayed below "
            f"it for the {found.stayed} steps after ({kind})"
        )
        return headline, [], last
    words = f"{kind} — slow, not stuck" if kind in ("converging linearly", "sublinear") else kind
    if kind == "plateau":
        words = "plateau — slow, not stuck: the run escapes it"
    headline = (
        f"{words}; reaches {_target_words(setting)} in {_fmt_range(*found.eta_steps)} more steps"
        f"{_seconds_text(found.eta_seconds)} (measured)"
    )
    first = [
        f"measured: continuing the run, the loss reached {setting.goal:.3g} between steps "
        f"{found.above_until} and {at}, and stayed below it for the {found.stayed} steps after"
    ]
    return headline, first, last


def _spent(found: Finding) -> str:
    if found.continued_to is None:
        return "in the record"
    return f"after continuing to step {found.continued_to}"


def _no_progress(found: Finding, setting: Setting):
    excess = found.excess_loss
    if found.kind == "oscillating":
        headline = (
            f"oscillating {_spent(found)}: no net progress at this step size (a floor of the "
            f"method, not of the problem: excess {excess:.2g} above the reachable minimum)"
        )
        shape = found.shape
        first = [
            f"over the last half of the evidence the loss rose in {shape['rises']:.0%} of the "
            f"records; net log-decrease {shape['drop']:.2g} ≤ its rises {shape['fluctuation']:.2g}"
        ]
        return headline, first, []
    headline = (
        f"{found.kind} {_spent(found)}: {_excess_words(excess, setting.floor)}, "
        f"gradient {found.grad_norm:.2g}"
        + (
            f"; the Hessian has a negative eigenvalue {found.hessian_min:.3g}: near a saddle, "
            "more steps (or a perturbation) should escape"
            if found.kind == "plateau"
            else "; not near a critical point of the loss (a gradient step of 1/λ_max would "
            "gain a large part of the excess): a floor of the method"
        )
    )
    return headline, [], []


def _excess_words(excess: float, floor) -> str:
    if floor.known:
        return f"excess {excess:.2g} above the reachable minimum"
    return f"loss {excess + floor.value:.3g} (the reachable minimum is unknown; 0 bounds it below)"


def _minimum(found: Finding, setting: Setting):
    """Stopped at a critical point whose Hessian has no negative eigenvalue beyond round-off."""
    floor, excess = setting.floor, found.excess_loss
    curvature = (
        f"gradient {found.grad_norm:.1e} (zero to round-off), Hessian ≥ 0 to round-off "
        f"(λ_min = {found.hessian_min:.2g}, λ_max = {found.hessian_max:.3g})"
    )
    if floor.known:
        headline = (
            f"stalled {_spent(found)} at a critical point without negative curvature: excess "
            f"{excess:.3g} above the reachable minimum {floor.value:.3g}; {curvature}: a "
            "spurious local minimum or a non-strict saddle, not slow convergence"
        )
        return headline, [], []
    bound = "" if floor.upper is None else f"; the truth attains {floor.upper:.3g}"
    noise = "" if floor.estimate is None else f"; the noise leaves ≈{floor.estimate:.3g} (m·σ²)"
    headline = (
        f"stalled {_spent(found)} at a local minimum, loss {excess + floor.value:.4g}; "
        f"{curvature}: the reachable minimum is unknown, so this is it or a spurious local "
        f"minimum{bound}{noise} — not slow convergence"
    )
    return headline, [], []


def _saddle(found: Finding, setting: Setting):
    point, escape = found.point, found.escape
    measured, predicted = escape["measured_steps"], escape["predicted_steps"]
    measured_text = (
        f"escapes (loses 10 % of the excess) in {measured} steps"
        if measured is not None
        else f"does not escape within {found.escape_horizon} steps"
    )
    predicted_text = (
        f"; predicted log(x/δ)/log(1 + η|λ_min|) ≈ {predicted:.0f}" if predicted else ""
    )
    headline = (
        f"saddle: the gradient is zero ({point.grad_norm:.1e}) with excess {found.excess_loss:.3g} "
        f"above the reachable minimum; the Hessian's smallest eigenvalue is "
        f"{point.hessian_min:.4g} (a strict saddle: GD started exactly here never leaves)"
    )
    negatives = getattr(point, "negative_directions", None)
    first = [
        (f"{negatives} negative Hessian eigenvalues; " if negatives else "")
        + f"perturbed by δ = {escape['perturbation']:.1e} along its eigenvector, the run "
        + measured_text
        + predicted_text
    ]
    return headline, first, []


def _from_theory(found: Finding, setting: Setting):
    headline = (
        f"{found.kind}; reaches {_target_words(setting)} in {_fmt_range(*found.eta_steps)} more "
        f"steps{_seconds_text(found.eta_seconds)} (theory: the exact decoupled GD recursion)"
    )
    return headline, [], []


def _extrapolated(found: Finding, setting: Setting):
    floor, rate = setting.floor, found.rates[0]
    if found.eta_steps is None:  # the target is unreachable
        if not floor.known:
            return f"{found.kind} at {1 - rate:.2g} per step (loss {found.excess_loss:.2g})", [], []
        headline = (
            f"{found.kind} towards the reachable minimum {floor.value:.4g} "
            f"({', '.join(floor.kinds)}) at {1 - rate:.2g} per step (excess "
            f"{found.excess_loss:.2g}); the target is unreachable"
        )
        return headline, [], []
    sources = [f"rate {1 - r:.2e}/step on steps {a}–{b}" for r, a, b in found.fits]
    if found.gn_rate is not None:
        sources.append(f"Gauss-Newton prediction {1 - found.gn_rate:.2e}/step")
    if found.kind == "sublinear":
        sources.append(f"power law excess ∝ t^-{found.shape['exponent']:.2f}")
    how = (
        "the record"
        if found.continued_to is None
        else f"a continuation to step {found.continued_to}"
    )
    low, high = found.eta_steps
    first = [f"extrapolated from {how}: " + "; ".join(sources)]
    if high > 4 * max(low, 1):
        first.append(
            f"range wider than ×{4 if reliable(low, high) else SPAN:.0f}: the fitted rates "
            "disagree — the rate is still changing as modes are learned, so a single line does "
            "not predict well"
        )
    eta = reaches(_target_words(setting), low, high, _seconds_text(found.eta_seconds))
    headline = f"{found.kind} at {1 - rate:.2g} per step; {eta} (extrapolated)"
    return headline, first, []


_RULES = {
    "diverged": _diverged,
    "unstable": _unstable,
    "converged": _converged,
    "measured": _measured,
    "no progress": _no_progress,
    "saddle": _saddle,
    "minimum": _minimum,
    "too short": _too_short,
    "theory": _from_theory,
    "extrapolated": _extrapolated,
}


def _target_words(setting: Setting) -> str:
    of = "initial excess" if setting.relative_to == "excess" else "initial loss"
    return f"{setting.target:.0e} of the {of}"


_fmt_steps, _fmt_range = fmt_steps, fmt_range


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
    unmeasured = np.flatnonzero(~np.isfinite(missing))
    late = np.flatnonzero(missing > 1e-2)
    if not late.size and not unmeasured.size:
        return [f"all {missing.size} target modes are ≥ 99 % learned"]
    if late.size <= MODES_LISTED and not unmeasured.size:
        parts = ", ".join(f"{i + 1}: {missing[i]:.3g}" for i in late)
        line = f"modes still missing (1 − fraction learned, as in modes.png): {parts}"
    else:
        line = _modes_summary(missing, late, unmeasured)
    if width is not None and width < missing.size:
        line += f"; modes {width + 1}–{missing.size} cannot all be learned at width {width}"
    return [line]


MODES_LISTED = 6  # more missing modes than this are summarised, not listed


def _modes_summary(missing: np.ndarray, late: np.ndarray, unmeasured: np.ndarray) -> str:
    """``38 of 50 target modes still missing (…): modes 13–50, 0.021 (mode 13) to 1.3 (mode
    50); 31 of them ≥ 0.9``: how many, which, the range of what is missing, how many barely
    learned, in one phrase."""
    parts = []
    if late.size:
        values = missing[late]
        low, high = late[np.argmin(values)], late[np.argmax(values)]
        barely = int(np.sum(values >= 0.9))
        parts.append(
            f"{late.size} of {missing.size} target modes still missing (1 − fraction learned "
            f"> 0.01, as in modes.png): modes {_spans(late + 1)}, {missing[low]:.2g} (mode "
            f"{low + 1}) to {missing[high]:.2g} (mode {high + 1})"
            + (f"; {barely} of them ≥ 0.9 (barely learned)" if barely else "")
        )
    if unmeasured.size:
        parts.append(f"modes {_spans(unmeasured + 1)} not measured (non-finite)")
    return "; ".join(parts)


def _spans(numbers: np.ndarray) -> str:
    """``3, 5, 13–50``: sorted integers as runs."""
    runs, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            runs.append(f"{start}" if start == n else f"{start}–{n}")
            start = None
    return ", ".join(runs)

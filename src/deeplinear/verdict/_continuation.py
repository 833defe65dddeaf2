"""Continuing a run until its verdict cannot change; asking its handle what the record cannot.

The evidence grows in segments (the first ``segment`` steps, then doubling up to 64×) within a
step budget, until more steps would change nothing: the run converged, diverged, crossed the
target and rose back (unstable), crossed it and stayed below as long again (measured), or stopped
at a zero gradient. Then the classification's questions — the crossings of runs from perturbed
initial weights, the critical point at the end, the escape of a perturbed copy, the loss in
double-double, the exact theory's prediction — are answered one by one (``settle``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from deeplinear.diagnostics.floors import Floor
from deeplinear.errors import UsageError
from deeplinear.verdict._classification import Question
from deeplinear.verdict._evidence import Evidence, classify


class Handle(Protocol):
    """What ``judge`` may ask of a run beyond its record (``explain.Continuation`` is one);
    every question but the continuation itself is optional."""

    seconds_per_step: float | None  # measured while continuing

    def __call__(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Continue by ``n`` steps; return the new (steps, loss, grad_norm) records."""

    def critical_point(self):
        """``curvature.CriticalPoint`` at the current end of the run."""

    def escape(self, point, delta: float, steps: int, drop: float) -> int | None:
        """Steps for a copy perturbed by ``delta`` along ``point.direction`` to lose ``drop``."""

    def crossings(self, goal: float, steps: int, count: int) -> np.ndarray:
        """First steps ≤ ``goal`` of ``count`` runs from perturbed initial weights (inf: none)."""

    def accurate_loss(self) -> tuple[float, float] | None:
        """The current loss in double-double and its error bound (None where unaffordable)."""


def _remaining(evidence: Evidence, floor: Floor, goal: float) -> int | None:
    """Steps still needed before more would change nothing the verdict says (None: unknown)."""
    if not np.isfinite(evidence.loss[-1]):
        return 0
    kind, _ = classify(evidence.steps, evidence.loss, floor)
    if kind == "converged":
        return 0
    first, highest = evidence.crossing(goal)
    if first is not None:
        if highest > 1:
            return 0  # crossed and rose again: unstable, whatever comes next
        return max(0, 2 * int(evidence.steps[first]) - evidence.last)  # stay below as long again
    return 0 if kind == "stalled" and evidence.zero_gradient() else None


def extend(
    evidence: Evidence, handle, floor: Floor, goal: float, budget: int, segment: int,
    remaining: Callable | None = None,
):  # fmt: skip
    """Extend the evidence in segments (doubling, up to 64× the first) until nothing more is
    needed (``remaining(evidence, floor, goal)``, default ``_remaining``: the fit's rule) or the
    budget is spent."""
    remaining = remaining or _remaining
    size = segment
    while evidence.spent < budget:
        needed = remaining(evidence, floor, goal)
        if needed == 0:
            return
        n = min(size if needed is None else needed, budget - evidence.spent)
        evidence.add(*handle(n))
        evidence.spent += n
        size = min(2 * size, 64 * segment)


def answer(question: Question, handle, theory: Callable | None):
    """The answer to one question, or None where neither the handle nor a theory can give it."""
    ask = theory if question.name == "theory" else getattr(handle, question.name, None)
    if ask is None:
        return None
    try:
        return ask(*question.args)
    except UsageError:  # a measurement it could not make (ARPACK did not converge): unknown
        return None


def settle(classify_with: Callable[[dict], object], handle, theory: Callable | None):
    """``classify_with(facts)`` until it stops asking: each ``Question`` it returns is answered
    and added to ``facts``; its first answer that is not a question is returned."""
    facts: dict[str, object] = {}
    while isinstance(found := classify_with(facts), Question):
        facts[found.name] = answer(found, handle, theory)
    return found


def seconds_per_step(given: float | None, handle) -> float | None:
    """Seconds per step: as given, else as the handle measured while continuing."""
    return given if given is not None else getattr(handle, "seconds_per_step", None)

"""Analytic floating-point operation counts per step, so tables can put FLOPs on the x-axis.

A model, not a measurement: one multiply-add is 2 FLOPs, dense factorizations use the textbook
leading terms (QR of m × n: 2mn²; SVD: 4mn² + 8n³ for m ≥ n; symmetric eigendecomposition: 9n³;
solve with an n × n matrix and r right-hand sides: ⅔n³ + 2n²r). Recording (the loss and gradient
norm written to the table) is not counted; the gradient the runner computes each step is.

Each method declares its model in its class (``AbstractMethod.flops``), from the blocks here.

Notation: widths d_out = h_0, …, h_L = d_in, p parameters, k rows of the reduced residual
(k = d_in for samples, none for the population loss), F the cost of one loss evaluation
(the chain product left to right, then W Lᵀ − T and the square), and a value-and-gradient costs
3F (reverse mode: two products per forward product).

For a measured objective (``measurement.Completion``/``Sensing``) ``k`` is a ``Measurements``:
m measurements, read from a dense operator (sensing) or gathered (completion). Its F is the
chain product left = W1 ⋯ W_{L−1} (n1 × d), then the gather Σ_a left[i_k, a] W_L[a, j_k], 2md
(completion), or the product W = left · W_L and the operator product 𝒜(W), 2m n1 n2 (sensing),
and the square. ``rows_of(objective)`` gives the ``k`` of any objective.
"""

from __future__ import annotations

import dataclasses

from deeplinear.objectives.measurement import Sensing, is_measured

QR = lambda m, n: 2 * m * n * min(m, n)
SVD = lambda m, n: 4 * max(m, n) * min(m, n) ** 2 + 8 * min(m, n) ** 3
EIGH = lambda n: 9 * n**3
SOLVE = lambda n, r: 2 * n**3 / 3 + 2 * n * n * r


@dataclasses.dataclass(frozen=True)
class Measurements:
    """``k`` for a measured objective: ``count`` measurements (the arrays' length, padding
    included: the loop computes them all), ``dense`` for a dense sensing operator. Not a tuple:
    arithmetic on it by a model written for an int ``k`` fails instead of repeating it."""

    count: int
    dense: bool = False


def rows_of(objective) -> int | Measurements | None:
    """``k`` of ``objective``: None (population loss), the reduced residual's rows (samples) or
    ``Measurements`` (completion, sensing); a leading batch axis is ignored."""

    if is_measured(objective):
        count = int(objective.values.shape[-1])
        return Measurements(count, isinstance(objective, Sensing))
    factor = getattr(objective, "factor", None)
    return None if factor is None else int(factor.shape[-2])


def shapes_of(weights) -> list[tuple[int, int]]:
    return [tuple(w.shape[-2:]) for w in weights]


def loss_flops(shapes, k: int | Measurements | None) -> float:
    """F: the chain product W1 ⋯ WL left to right, the factor Lᵀ and the squared residual
    (measured: the chain to W_{L−1}, then the gather or the dense operator; module doc)."""
    d_out, d_in = shapes[0][0], shapes[-1][1]
    if isinstance(k, Measurements):  # W1 ⋯ W_{L−1}, then one product per measurement
        left = sum(2 * d_out * a * b for a, b in shapes[1:-1])
        hidden = shapes[-1][0]
        if k.dense:
            return left + 2 * d_out * hidden * d_in + 2 * k.count * d_out * d_in + 3 * k.count
        return left + 2 * k.count * hidden + 3 * k.count
    chain = sum(2 * d_out * a * b for a, b in shapes[1:])
    factor = 0 if k is None else 2 * d_out * d_in * k
    return chain + factor + 3 * d_out * (d_in if k is None else k)


def parameters(shapes) -> int:
    """p: the number of weights."""
    return sum(a * b for a, b in shapes)


def residual_rows(shapes, k: int | Measurements | None) -> int:
    """Entries of the reduced residual W Lᵀ − T: d_out · k (d_out · d_in for the population);
    m for a measured objective."""
    if isinstance(k, Measurements):
        return k.count
    return shapes[0][0] * (shapes[-1][1] if k is None else k)


def step_flops(method, shapes, k: int | Measurements | None) -> tuple[float, float]:
    """(FLOPs per step, FLOPs per conjugate-gradient iteration) of ``method``: its own model."""
    return method.flops(shapes, k)

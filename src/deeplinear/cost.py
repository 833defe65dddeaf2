"""Analytic floating-point operation counts per step, so tables can put FLOPs on the x-axis.

A model, not a measurement: one multiply-add is 2 FLOPs, dense factorizations use the textbook
leading terms (QR of m × n: 2mn²; SVD: 4mn² + 8n³ for m ≥ n; symmetric eigendecomposition: 9n³;
solve with an n × n matrix and r right-hand sides: ⅔n³ + 2n²r). Recording (the loss and gradient
norm written to the table) is not counted; the gradient the runner computes each step is.

Notation: widths d_out = h_0, …, h_L = d_in, p parameters, k rows of the reduced residual
(k = d_in for samples, none for the population loss), F the cost of one loss evaluation
(the chain product left to right, then W Lᵀ − T and the square), and a value-and-gradient costs
3F (reverse mode: two products per forward product).
"""

from __future__ import annotations

QR = lambda m, n: 2 * m * n * min(m, n)
SVD = lambda m, n: 4 * max(m, n) * min(m, n) ** 2 + 8 * min(m, n) ** 3
EIGH = lambda n: 9 * n**3
SOLVE = lambda n, r: 2 * n**3 / 3 + 2 * n * n * r

ELEMENTWISE = {  # optimizer arithmetic per parameter, beyond the gradient
    "gd": 2,
    "tf1-gd": 2,
    "momentum": 4,
    "nesterov": 5,
    "adam": 12,
    "tf1-adam": 12,
    "adamw": 14,
    "rmsprop": 6,
    "adagrad": 5,
}


def shapes_of(weights) -> list[tuple[int, int]]:
    return [tuple(w.shape[-2:]) for w in weights]


def loss_flops(shapes, k: int | None) -> float:
    """F: the chain product W1 ⋯ WL left to right, the factor Lᵀ and the squared residual."""
    d_out, d_in = shapes[0][0], shapes[-1][1]
    chain = sum(2 * d_out * a * b for a, b in shapes[1:])
    factor = 0 if k is None else 2 * d_out * d_in * k
    return chain + factor + 3 * d_out * (d_in if k is None else k)


def step_flops(method, shapes, k: int | None) -> tuple[float, float]:
    """(FLOPs per step, FLOPs per conjugate-gradient iteration) of ``method``."""
    F = loss_flops(shapes, k)
    gradient = 3 * F
    p = sum(a * b for a, b in shapes)
    name = method.name
    widths = [shapes[0][0], *(b for _, b in shapes)]
    hidden = widths[1:-1]
    if name in ELEMENTWISE:
        return gradient + ELEMENTWISE[name] * p, 0.0
    if name == "muon":
        ns = sum(4 * min(a, b) ** 2 * max(a, b) + 2 * min(a, b) ** 3 for a, b in shapes)
        return gradient + method.ns_steps * ns + 12 * p, 0.0
    if name == "lbfgs":  # assumes one line-search evaluation per step
        return 2 * gradient + 4 * method.memory_size * p + 10 * p, 0.0
    if name in ("scaled-gd", "precgd", "natural-gradient"):
        grams = sum(2 * a * b * min(a, b) for a, b in shapes) * 2
        solves = sum(SOLVE(b, a) for a, b in shapes) + sum(SOLVE(a, b) for a, b in shapes)
        return gradient + F + grams + solves, 0.0
    if name == "als":
        per_layer = sum(SVD(max(a, b), min(a, b)) + 2 * F for a, b in shapes)
        return gradient + per_layer, 0.0
    rows = shapes[0][0] * (widths[-1] if k is None else k)
    if name == "seed-lm":  # a dense Jacobian (p JVPs) and a QR of the stacked system
        gauge = sum(h * h for h in hidden)
        return gradient + 2 * p * F + QR(p, rows + gauge) + 2 * p * (rows + gauge), 0.0
    if name.startswith(("optimistix", "scipy")):  # a dense Jacobian and its factorization
        return gradient + 2 * p * F + SVD(rows, p), 0.0
    if name in ("lm", "gn-cg"):
        trial = 3 * F  # the trial loss and J δ
        gauge = sum(
            EIGH(h) * 2 + 4 * h * h * (a + b)
            for h, (a, _), (_, b) in zip(hidden, shapes, shapes[1:])
        )
        balance = (
            sum(QR(a, b) for a, b in (shapes[0], shapes[-1][::-1]))
            + SVD(hidden[0], hidden[-1])
            + 2 * p * max(hidden)
        )
        if name == "lm" and len(shapes) == 2:
            h, kk = hidden[0], widths[-1] if k is None else k
            schur = SVD(kk, h) + 4 * h * kk * kk + EIGH(h) + 8 * shapes[0][0] * h * kk
            if k is not None:
                schur += SVD(kk, widths[-1]) + 4 * widths[-1] ** 2 * h
            return gradient + trial + schur + gauge + balance, 0.0
        setup = SVD(shapes[0][0], hidden[-1]) + SVD(hidden[0], widths[-1] if k is None else k)
        per_cg = 4 * F + 8 * rows * max(hidden)
        return gradient + trial + setup + gauge + balance, per_cg
    raise ValueError(f"no FLOP model for method {name!r}")

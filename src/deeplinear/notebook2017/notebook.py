"""The 2017 notebook's algorithms, literally, in plain NumPy.

Used three ways: as the independent reference that ``reproduce --check`` compares against, as the
baseline the speed benchmark beats, and as the only faithful way to run the 2017 ``lstsq`` setting
(``rcond=-1``), whose curve is driven by round-off in the Jacobian's 36-dimensional null space and
so cannot be reproduced by any other algorithm.

Conventions follow the notebook: sample loss ``Σ (W1 W2 X − Y)²``; GD and Adam record the loss
and gradient magnitude before each update; hyperparameters are float32 constants as in TF1. LM
records are returned with the initial loss prepended (row 0), so every curve starts at step 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RCOND = {"modern": None, "2017": -1}  # numpy.linalg.lstsq's rcond in each setting


@dataclass(frozen=True)
class NotebookCurve:
    """Losses (and gradient magnitudes for GD/Adam) at steps 0, 1, …; LM also ``loss_notebook``."""

    loss: np.ndarray
    grad_norm: np.ndarray
    loss_notebook: np.ndarray | None = None


def _fl32(x: float) -> float:
    return float(np.float32(x))


def _loss_and_grads(X, Y, W1, W2):
    hidden = W2 @ X
    error = W1 @ hidden - Y
    loss = np.sum(error**2)
    g = 2 * error
    g1, g2 = g @ hidden.T, W1.T @ g @ X.T
    return loss, (g1, g2), np.sqrt(np.sum(g1**2) + np.sum(g2**2))


def _first_order(X, Y, W1, W2, steps: int, update) -> NotebookCurve:
    losses, norms = [], []
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps + 1):
            loss, grads, norm = _loss_and_grads(X, Y, W1, W2)
            losses.append(loss)
            norms.append(norm)
            if not np.isfinite(loss) or t == steps:
                break
            W1, W2 = update(t, (W1, W2), grads)
    return NotebookCurve(np.array(losses), np.array(norms))


def gradient_descent(X, Y, W1, W2, learning_rate: float, steps: int) -> NotebookCurve:
    """TF1 ``GradientDescentOptimizer``: W ← W − fl32(η) ∇."""
    lr = _fl32(learning_rate)
    return _first_order(X, Y, W1, W2, steps, lambda t, ws, gs: [w - lr * g for w, g in zip(ws, gs)])


def adam(X, Y, W1, W2, learning_rate: float, steps: int) -> NotebookCurve:
    """TF1 ``AdamOptimizer`` with its defaults (β1 0.9, β2 0.999, ε 1e-8), as TF1 computes it."""
    lr, b1, b2, eps = (_fl32(v) for v in (learning_rate, 0.9, 0.999, 1e-8))
    m = [np.zeros_like(W1), np.zeros_like(W2)]
    v = [np.zeros_like(W1), np.zeros_like(W2)]
    powers = [np.float32(0.9), np.float32(0.999)]

    def update(t, ws, gs):
        alpha = lr * np.sqrt(1 - float(powers[1])) / (1 - float(powers[0]))
        new = []
        for i, (w, g) in enumerate(zip(ws, gs)):
            m[i] = m[i] + (g - m[i]) * (1 - b1)
            v[i] = v[i] + (g * g - v[i]) * (1 - b2)
            new.append(w - (m[i] * alpha) / (np.sqrt(v[i]) + eps))
        powers[0] = np.float32(powers[0] * np.float32(0.9))
        powers[1] = np.float32(powers[1] * np.float32(0.999))
        return new

    return _first_order(X, Y, W1, W2, steps, update)


def kronecker_gauss_newton_step(X, Y, W1, W2, rcond=None):
    """The notebook's ``take_step`` direction: ``lstsq`` on the full Kronecker Jacobian."""
    Yhat = W1.dot(W2.dot(X))
    rhs = -(Yhat - Y).T.flatten()
    lhs = np.hstack((np.kron(W2.dot(X).T, np.eye(W1.shape[0])), np.kron(X.T, W1)))
    solution = np.linalg.lstsq(lhs, rhs, rcond=rcond)[0]
    dW1 = solution[: W1.size].reshape(W1.T.shape).T
    dW2 = solution[W1.size :].reshape(W2.T.shape).T
    return dW1, dW2


def levenberg_marquardt(
    X, Y, W1, W2, learning_rate: float, steps: int, rcond: str = "modern"
) -> NotebookCurve:
    """The notebook's ``LevenbergMarquardt`` (undamped minimum-norm Gauss-Newton, fixed step).

    ``loss`` is the true sum of squares; ``loss_notebook`` what the notebook printed,
    ``np.sum(Yhat - Y)**2``. ``grad_norm`` is the gradient magnitude the notebook never computed.
    """
    losses, sums, norms = [], [], []
    for t in range(steps + 1):
        loss, _, norm = _loss_and_grads(X, Y, W1, W2)
        losses.append(loss)
        norms.append(norm)
        sums.append(np.sum(W1.dot(W2.dot(X)) - Y) ** 2)
        if t == steps:
            break
        dW1, dW2 = kronecker_gauss_newton_step(X, Y, W1, W2, RCOND[rcond])
        W1, W2 = W1 + learning_rate * dW1, W2 + learning_rate * dW2
    return NotebookCurve(np.array(losses), np.array(norms), np.array(sums))

"""What theory predicts, where it applies.

**Decoupled dynamics** (Saxe, McClelland & Ganguli 2014). If the loss is ``c‖W − A‖²_F + r0``
(population loss: c = 1; exactly whitened samples, X Xᵀ = n I: c = n) and every layer starts
diagonal in A's singular bases (``init.kind = "spectral"``), the layers stay so, and each mode
evolves alone. With b_l the mode's entry in layer l and a = Π_l b_l, GD is exactly

    b_l ← b_l − 2 c η (a − s) Π_{k≠l} b_k,

and, from a balanced start (all b_l equal), gradient flow in time t = η·steps is

    da/dt = −2 c L (a − s) a^{2 − 2/L},

solved in closed form for L = 2 (a logistic: a(t) = s / (1 + (s/a₀ − 1) e^{−4 c s t})) and by a
tight ODE solve for L > 2.

**Local rates.** Near a minimum the Hessian is the Gauss-Newton matrix 2JᵀJ. GD with step η is
stable for η < 2/λ_max, and the loss contracts per step by about (1 − η λ_min⁺)² in the slowest
non-gauge direction.
"""

from __future__ import annotations

import numpy as np

from deeplinear.core.backend import jax, jnp
from deeplinear.objectives.measurement import is_measured


def whitening_constant(objective, rtol: float = 1e-12) -> float | None:
    """c if Lᵀ L = c I for the factor L (the decoupled theory is then exact), else None (and
    None for a completion or sensing objective: it has no factor, the sampling couples modes)."""

    if is_measured(objective):
        return None
    if objective.factor is None:
        return 1.0
    L = np.asarray(objective.factor)
    gram = L.T @ L
    c = float(np.trace(gram) / gram.shape[0])
    if np.max(np.abs(gram - c * np.eye(gram.shape[0]))) <= rtol * c:
        return c
    return None


def decoupled_gd(layers: np.ndarray, s: np.ndarray, lr: float, steps: int, c: float) -> np.ndarray:
    """The exact GD recursion per mode: ``layers`` (L × m) → end-to-end strengths (steps+1 × m)."""
    b = np.array(layers, dtype=np.float64)
    out = np.empty((steps + 1, b.shape[1]))
    out[0] = np.prod(b, axis=0)
    for t in range(steps):
        a = np.prod(b, axis=0)
        others = np.stack([np.prod(np.delete(b, i, axis=0), axis=0) for i in range(b.shape[0])])
        b = b - 2 * c * lr * (a - s) * others
        out[t + 1] = np.prod(b, axis=0)
    return out


def decoupled_flow(a0: np.ndarray, s: np.ndarray, depth: int, times: np.ndarray, c: float):
    """End-to-end mode strengths a(t) under gradient flow from a balanced start (time = η·steps)."""
    a0, s, times = (np.asarray(x, dtype=np.float64) for x in (a0, s, times))
    if depth == 2:
        growth = np.exp(-4 * c * np.outer(times, s))
        with np.errstate(divide="ignore"):  # a mode that starts at 0 stays there (a saddle)
            return np.where(a0 == 0, 0.0, s / (1 + (s / a0 - 1) * growth))
    out = np.empty((times.size, a0.size))
    from scipy.integrate import solve_ivp  # 0.5 s to import: only where a flow is integrated

    for i, (start, target) in enumerate(zip(a0, s)):

        def rhs(_t, a, target=target):
            return -2 * c * depth * (a - target) * np.abs(a) ** (2 - 2 / depth)

        sol = solve_ivp(
            rhs, (0, times[-1]), [start], t_eval=times, rtol=1e-12, atol=1e-15, method="DOP853"
        )
        out[:, i] = sol.y[0]
    return out


def decoupled_loss(strengths: np.ndarray, s: np.ndarray, c: float, rest: float) -> np.ndarray:
    """The loss c Σ (a_i − s_i)² + rest, per row of ``strengths``."""
    return c * np.sum((strengths - s) ** 2, axis=-1) + rest


def gn_predicted_rate(lambda_min: float, lr: float) -> float:
    """Per-step loss factor (1 − η λ_min⁺)² predicted by the Gauss-Newton spectrum."""
    return float((1.0 - np.float64(lr) * np.float64(lambda_min)) ** 2)


def decoupled_gd_first_below(
    layers: np.ndarray, s: np.ndarray, lr: float, c: float, rest: float, goal: float, max_steps: int
) -> int | None:
    """The first step at which the exact decoupled GD recursion's loss is ≤ ``goal`` (or None).

    The same recursion as :func:`decoupled_gd`, in a compiled ``while_loop`` so that the steps a
    plateau takes (10⁵–10⁶) cost milliseconds.
    """

    b0 = jnp.asarray(np.asarray(layers, dtype=np.float64))
    target = jnp.asarray(np.asarray(s, dtype=np.float64))
    others_mask = 1.0 - jnp.eye(b0.shape[0])[:, :, None]  # (l, k, 1): 0 where k = l

    def loss(b):
        return c * jnp.sum((jnp.prod(b, axis=0) - target) ** 2) + rest

    def body(carry):
        t, b = carry
        a = jnp.prod(b, axis=0)
        others = jnp.prod(jnp.where(others_mask > 0, b[None], 1.0), axis=1)
        return t + 1, b - 2 * c * lr * (a - target) * others

    def cond(carry):
        t, b = carry
        return (t < max_steps) & (loss(b) > goal) & jnp.isfinite(loss(b))

    t, b = jax.jit(lambda b: jax.lax.while_loop(cond, body, (0, b)))(b0)
    return int(t) if float(loss(b)) <= goal else None

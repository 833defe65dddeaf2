"""Initial weights (W1, …, WL) for widths d_out = h_0, h_1, …, h_L = d_in.

- ``gaussian``: i.i.d. N(0, scale²) entries (the notebook's, with scale 1);
- ``scaled_gaussian``: N(0, scale²/fan_in), fan_in = columns of each layer;
- ``orthogonal``: scale × a Haar-random matrix with orthonormal rows or columns;
- ``balanced``: W_iᵀ W_i = W_{i+1} W_{i+1}ᵀ exactly (Arora, Cohen & Hazan 2018), end-to-end map a
  random rank-min(h) matrix whose singular values are ``scale``;
- ``end_to_end`` (with ``gaussian``): all layers rescaled by one factor so ‖W1 ⋯ WL‖_F is it;
- ``spectral_estimate`` (completion, sensing): ``spectral`` with the top singular triplets of
  the measurements' back-projection (P_Ω(M)/p) as modes and strengths, the spectral
  initialization of Tong, Ma & Chi (2021), balanced over the layers;
- ``spectral`` (decoupled): aligned with A's singular vectors, W1 = U D_1 Eᵀ, W_i = E D_i Eᵀ,
  W_L = E D_L Vᵀ with every D_i = diag(strengths)^{1/L}, so mode i of the end-to-end map starts at
  ``strengths[i]`` and every layer carries the same share (Saxe, McClelland & Ganguli 2014).
"""

from __future__ import annotations

import numpy as np

from deeplinear.errors import UsageError
from deeplinear.problems.dense import random_orthonormal

KINDS = ("gaussian", "scaled_gaussian", "orthogonal", "balanced", "spectral")


def layer_shapes(widths: list[int]) -> list[tuple[int, int]]:
    return [(widths[i], widths[i + 1]) for i in range(len(widths) - 1)]


def initial_weights(
    kind: str,
    widths: list[int],
    rng: np.random.Generator,
    *,
    scale: float = 1.0,
    modes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    strengths=None,
) -> tuple[np.ndarray, ...]:
    """Weights for ``widths = [d_out, h_1, …, h_{L-1}, d_in]`` (see the module docstring)."""
    shapes = layer_shapes(widths)
    if kind == "gaussian":
        return tuple(scale * rng.standard_normal(s) for s in shapes)
    if kind == "scaled_gaussian":
        return tuple(scale / np.sqrt(s[1]) * rng.standard_normal(s) for s in shapes)
    if kind == "orthogonal":
        return tuple(scale * _semi_orthogonal(rng, *s) for s in shapes)
    if kind == "balanced":
        return _balanced(widths, rng, scale)
    if kind == "spectral":
        if modes is None:
            raise UsageError("init.kind = 'spectral' needs the target's singular vectors")
        return _spectral(widths, modes, strengths)
    raise UsageError(f"init.kind must be one of {', '.join(KINDS)}, 'npz'; got {kind!r}")


def _semi_orthogonal(rng, rows: int, cols: int) -> np.ndarray:
    if rows >= cols:
        return random_orthonormal(rng, rows, cols)
    return random_orthonormal(rng, cols, rows).T


def _balanced(widths, rng, scale) -> tuple[np.ndarray, ...]:
    depth, k = len(widths) - 1, min(widths)
    U = random_orthonormal(rng, widths[0], k)
    V = random_orthonormal(rng, widths[-1], k)
    root = np.full(k, scale ** (1.0 / depth))
    inner = [random_orthonormal(rng, h, k) for h in widths[1:-1]]  # R_i, h_i × k
    left = [U, *inner]
    right = [*inner, V]
    return tuple((a * root) @ b.T for a, b in zip(left, right))


def _spectral(widths, modes, strengths) -> tuple[np.ndarray, ...]:
    U, s, V = modes
    depth = len(widths) - 1
    m = min(min(widths), len(s))
    if strengths is None:
        strengths = np.full(m, 1e-3)
    strengths = np.asarray(strengths, dtype=np.float64).reshape(-1)
    if strengths.size == 1:
        strengths = np.full(m, strengths[0])
    if strengths.size != m:
        raise UsageError(f"init.strengths must have 1 or {m} values (one per mode)")
    if np.any(strengths < 0) or not np.all(np.isfinite(strengths)):
        raise UsageError(
            "init.strengths must be finite and ≥ 0 (0 leaves a mode out: a strict saddle)"
        )
    d = strengths ** (1.0 / depth)
    left = [U[:, :m], *(_leading(h, m) for h in widths[1:-1])]
    right = [*(_leading(h, m) for h in widths[1:-1]), V[:, :m]]
    return tuple((a * d) @ b.T for a, b in zip(left, right))


def _leading(h: int, m: int) -> np.ndarray:
    """The first m columns of the h × h identity, without forming it."""
    out = np.zeros((h, m))
    out[np.arange(m), np.arange(m)] = 1.0
    return out


def rescale_end_to_end(weights, norm: float) -> tuple[np.ndarray, ...]:
    """Every layer multiplied by the same c, so that ‖W1 ⋯ WL‖_F = ``norm`` (c^L ‖W‖_F = norm):
    an initialization scale stated end to end, as Arora, Cohen, Hu & Luo (2019) state theirs."""
    product = weights[0]
    for w in weights[1:]:
        product = product @ w
    current = np.linalg.norm(product)
    if not np.isfinite(current) or current == 0:
        raise UsageError("init.end_to_end: the drawn product W1⋯WL is zero: raise init.scale")
    c = (norm / current) ** (1.0 / len(weights))
    return tuple(c * w for w in weights)


def check_weights(weights, widths: list[int], source: str) -> tuple[np.ndarray, ...]:
    """Weights from a file, checked against the configured widths."""
    shapes = layer_shapes(widths)
    if len(weights) != len(shapes):
        raise UsageError(f"{source} has {len(weights)} layers, the config needs {len(shapes)}")
    out = []
    for i, (w, shape) in enumerate(zip(weights, shapes), start=1):
        w = np.asarray(w)
        if w.dtype.kind not in "fiu" or w.dtype.names is not None:
            raise UsageError(
                f"{source}: W{i} has dtype {w.dtype}: give real numbers (floating or integers)"
            )
        w = w.astype(np.float64)
        if w.shape != shape:
            raise UsageError(f"{source}: W{i} has shape {w.shape}, expected {shape}")
        if not np.all(np.isfinite(w)):
            raise UsageError(f"{source}: W{i} has non-finite values")
        out.append(w)
    return tuple(out)

"""Many small runs at once: gradient descent on seed-size problems, laid out for throughput.

``jax.vmap`` of one run's update turns every tiny product (10 × 6 by 6 × 6) into a batched
matrix product and streams the whole batch through memory at every step. Here the batch is the
*last* axis (runs are contiguous, so each product is a few fused multiply-adds vectorised across
runs), and the batch is cut into tiles that each run all their steps while they sit in cache.
The update is the same as ``gd`` on the reduced objective ``f(W) = ‖W1 W2 Lᵀ − T‖² + r0``:
W1 ← W1 − η G W2ᵀ, W2 ← W2 − η W1ᵀ G with G = 2 (W Lᵀ − T) L.
"""

from __future__ import annotations

from ._backend import jax, jnp


def _product(A, B):
    """(m × n × b) · (n × p × b) → (m × p × b): the contraction unrolled into fused FMAs."""
    out = A[:, 0:1, :] * B[0:1, :, :]
    for j in range(1, A.shape[1]):
        out = out + A[:, j : j + 1, :] * B[j : j + 1, :, :]
    return out


def _t(A):
    return jnp.transpose(A, (1, 0, 2))


def gd_step(W1, W2, L, T, lr):
    """One GD step for every run; all arrays batch-last, ``lr`` of shape (1, 1, b)."""
    R = _product(_product(W1, W2), _t(L)) - T
    G = 2 * _product(R, L)
    return W1 - lr * _product(G, _t(W2)), W2 - lr * _product(_t(W1), G)


def loss(W1, W2, L, T, floor):
    """Each run's loss (batch-last inputs, ``floor`` of shape (b,))."""
    R = _product(_product(W1, W2), _t(L)) - T
    return jnp.sum(R * R, axis=(0, 1)) + floor


def gd(W1, W2, L, T, lr, steps: int, tile: int = 1000):
    """``steps`` GD steps for every run, tile by tile; inputs batch-first, as ``vmap`` takes them.

    W1: (b, d_out, h), W2: (b, h, d_in), L: (b, k, d_in), T: (b, d_out, k), lr: (b,).
    """
    b = W1.shape[0]
    tile = min(tile, b)
    if b % tile:
        raise ValueError(f"the batch ({b}) must be a multiple of the tile ({tile})")

    def tiles(x):  # (b, ...) → (b/tile, ..., tile)
        return jnp.moveaxis(x.reshape(b // tile, tile, *x.shape[1:]), 1, -1)

    def run_tile(args):
        w1, w2, factor, target, rate = args
        rate = rate.reshape(1, 1, -1)

        def body(carry, _):
            return gd_step(*carry, factor, target, rate), None

        return jax.lax.scan(body, (w1, w2), None, steps)[0]

    out = jax.lax.map(run_tile, tuple(tiles(x) for x in (W1, W2, L, T, lr)))
    return tuple(jnp.moveaxis(o, -1, 1).reshape(b, *o.shape[1:-1]) for o in out)

"""Many small runs at once: gradient descent on seed-size problems, laid out for throughput.

``jax.vmap`` of one run's update turns every tiny product (10 × 6 by 6 × 6) into a batched
matrix product and streams the whole batch through memory at every step. Here the batch is the
*last* axis (runs are contiguous, so each product is a few fused multiply-adds vectorised across
runs), the runs are split across the devices (on a CPU, one per core), and each device's share
is cut into tiles that each run all their steps while they sit in cache (``gd``, the CPU
kernel). ``gd_pallas`` runs every step in one Pallas kernel (the GPU kernel).
The update is the same as ``gd`` on the reduced objective ``f(W) = ‖W1 W2 Lᵀ − T‖² + r0``,
written with its sufficient statistics M = LᵀL and C = T L:
W1 ← W1 − η G W2ᵀ, W2 ← W2 − η W1ᵀ G with G = 2 (W Lᵀ − T) L = 2 (W M − C).
"""

from __future__ import annotations

import functools

import numpy as np

from ._backend import jax, jnp


def _product(A, B):
    """(m × n × b) · (n × p × b) → (m × p × b): the contraction unrolled into fused FMAs."""
    out = A[:, 0:1, :] * B[0:1, :, :]
    for j in range(1, A.shape[1]):
        out = out + A[:, j : j + 1, :] * B[j : j + 1, :, :]
    return out


def _t(A):
    return jnp.transpose(A, (1, 0, 2))


def gd_step(W1, W2, M, C, lr):
    """One GD step for every run; all arrays batch-last, ``lr`` of shape (1, 1, b).

    K = W2 M and G = 2 (W1 K − C) are materialised before the update: fused into their
    consumers, every element recomputes its row of them.
    """
    K = jax.lax.optimization_barrier(_product(W2, M))
    G = jax.lax.optimization_barrier(2 * (_product(W1, K) - C))
    return W1 - lr * _product(G, _t(W2)), W2 - lr * _product(_t(W1), G)


def _statistics(L, T):
    """The sufficient statistics M = LᵀL and C = T L of each run (batch-first)."""
    return jnp.einsum("bka,bkc->bac", L, L), jnp.einsum("bok,bki->boi", T, L)


def loss(W1, W2, L, T, floor):
    """Each run's loss (batch-last inputs, ``floor`` of shape (b,))."""
    R = _product(_product(W1, W2), _t(L)) - T
    return jnp.sum(R * R, axis=(0, 1)) + floor


def _pad(x, size):
    """Zero runs appended up to ``size`` (their results are discarded)."""
    return jnp.pad(x, [(0, size - x.shape[0])] + [(0, 0)] * (x.ndim - 1))


def _run_tiles(W1, W2, M, C, lr, *, steps, tile):
    """All steps for one device's runs (batch-first), ``tile`` runs at a time."""
    b = W1.shape[0]

    def tiles(x):  # (b, ...) → (b/tile, ..., tile)
        return jnp.moveaxis(x.reshape(b // tile, tile, *x.shape[1:]), 1, -1)

    def run_tile(args):
        w1, w2, gram, cross, rate = args
        rate = rate.reshape(1, 1, -1)

        def body(carry, _):
            return gd_step(*carry, gram, cross, rate), None

        return jax.lax.scan(body, (w1, w2), None, steps)[0]

    out = jax.lax.map(run_tile, tuple(tiles(x) for x in (W1, W2, M, C, lr)))
    return tuple(jnp.moveaxis(o, -1, 1).reshape(b, *o.shape[1:-1]) for o in out)


def split_runs(fn, devices):
    """``fn`` of batch-first arrays, run with the runs split evenly across ``devices``
    (the batch must be a multiple of their number)."""
    split = jax.sharding.PartitionSpec("runs")
    mesh = jax.sharding.Mesh(np.array(devices), ("runs",))
    return jax.shard_map(fn, mesh=mesh, in_specs=split, out_specs=split)


def gd(W1, W2, L, T, lr, steps: int, tile: int | None = None, devices=None):
    """``steps`` GD steps for every run; inputs batch-first, as ``vmap`` takes them.

    W1: (b, d_out, h), W2: (b, h, d_in), L: (b, k, d_in), T: (b, d_out, k), lr: (b,).
    The runs are split across ``devices`` (default: every local device; on a CPU, one per core,
    see ``_backend``), and each device takes ``tile`` runs through all their steps at a time:
    by default 16 on a CPU (each step's arrays fit in L1 and no operation is big enough for XLA
    to split it across threads) and all of its runs on an accelerator. The batch is padded to
    whole tiles; the padding runs are dropped.
    """
    devices = jax.local_devices() if devices is None else list(devices)
    runs = W1.shape[0]
    share = -(-runs // len(devices))
    if tile is None:
        tile = 16 if devices[0].platform == "cpu" else share
    tile = max(1, min(tile, share))
    share = -(-share // tile) * tile
    run = split_runs(functools.partial(_run_tiles, steps=steps, tile=tile), devices)
    padded = (_pad(x, share * len(devices)) for x in (W1, W2, *_statistics(L, T), lr))
    return tuple(w[:runs] for w in run(*padded))


def _dot(xs, ys):
    out = xs[0] * ys[0]
    for x, y in zip(xs[1:], ys[1:]):
        out = out + x * y
    return out


def _pallas_kernel(w1, w2, m, c, lr, o1, o2, k, *, shape, steps, block):
    """One block of runs (the last axis) through all steps. The weights live in the output refs
    (cache-resident); per step K = W2 M goes to the scratch ref ``k``, then each row of W1 is
    updated in turn (g = 2 (w1 K − c)) while ΔW2 = W1ᵀ G accumulates in registers."""
    from jax.experimental import pallas as pl

    d_out, h, d_in = shape
    cols = pl.ds(pl.program_id(0) * block, block)
    rate = lr[0, cols]
    for i in range(d_out * h):
        o1[i, cols] = w1[i, cols]
    for i in range(h * d_in):
        o2[i, cols] = w2[i, cols]

    def body(_, carry):
        W2 = [[o2[j * d_in + b, cols] for b in range(d_in)] for j in range(h)]
        M = [[m[a * d_in + b, cols] for a in range(d_in)] for b in range(d_in)]  # columns
        for j in range(h):
            for b in range(d_in):
                k[j * d_in + b, cols] = _dot(W2[j], M[b])
        delta = [[None] * d_in for _ in range(h)]
        for i in range(d_out):
            row = [o1[i * h + j, cols] for j in range(h)]
            g = [
                2 * (_dot(row, [k[j * d_in + b, cols] for j in range(h)]) - c[i * d_in + b, cols])
                for b in range(d_in)
            ]
            for j in range(h):
                o1[i * h + j, cols] = row[j] - rate * _dot(g, W2[j])
                for b in range(d_in):
                    term = row[j] * g[b]
                    delta[j][b] = term if i == 0 else delta[j][b] + term
        for j in range(h):
            for b in range(d_in):
                o2[j * d_in + b, cols] = W2[j][b] - rate * delta[j][b]
        return carry

    jax.lax.fori_loop(0, steps, body, 0)


@functools.partial(jax.jit, static_argnames=("steps", "block", "num_warps"))
def gd_pallas(W1, W2, L, T, lr, steps: int, block: int = 128, num_warps: int = 4):
    """``gd`` as one Pallas (Triton) kernel for GPUs: every step in one launch, ``block`` runs per
    program. Same contract and result as ``gd``; on a CPU it runs in Pallas's interpreter (slow:
    for tests). Building it for a GPU takes about a minute per batch shape (BENCHMARKS.md).
    """
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plt

    runs, d_out, h = W1.shape
    d_in = W2.shape[2]
    padded = -(-runs // block) * block  # whole blocks; the padding runs are discarded

    def lanes(x):  # (runs, ...) → (size, padded)
        return _pad(x, padded).reshape(padded, -1).T

    interpret = jax.default_backend() == "cpu"
    flat = jax.ShapeDtypeStruct
    o1, o2, _ = pl.pallas_call(
        functools.partial(_pallas_kernel, shape=(d_out, h, d_in), steps=steps, block=block),
        out_shape=(
            flat((d_out * h, padded), W1.dtype),
            flat((h * d_in, padded), W2.dtype),
            flat((h * d_in, padded), W2.dtype),  # scratch: K = W2 M
        ),
        grid=(padded // block,),
        interpret=interpret,
        compiler_params=None if interpret else plt.CompilerParams(num_warps=num_warps),
    )(lanes(W1), lanes(W2), *map(lanes, _statistics(L, T)), lanes(lr))
    return o1[:, :runs].T.reshape(runs, d_out, h), o2[:, :runs].T.reshape(runs, h, d_in)

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
import time

import numpy as np

from deeplinear.core.backend import jax, jnp
from deeplinear.loop.programs import (
    BatchResult,
    Checkpoints,
    compiled,
    curves_of,
    drive,
    record,
    start_state,
)
from deeplinear.methods import AbstractGD


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


#: ``gd_pallas``'s parameters when none are given: ``block`` runs per program, ``num_warps``,
#: ``hoist_m`` (M = LᵀL loaded once into registers instead of every step), ``k_registers``
#: (K = W2 M kept in registers instead of a scratch ref), ``registers`` (the weights in the step
#: loop's carry instead of the output refs: no store is read back inside the loop). Measured at
#: 1e5 runs × 500 steps on an H100 (BENCHMARKS.md, two machines): block 256, 8 warps, K and the
#: weights in registers 1.71e9 run-steps/s, ×13.8–13.9 over ``vmap``; the old default (256, 8,
#: none of the three) ×4.7; weights alone ×6.7–6.9; 4 warps or blocks of 512 with both ×0.8.
PALLAS_DEFAULTS = {
    "block": 256,
    "num_warps": 8,
    "hoist_m": False,
    "k_registers": True,
    "registers": True,
}


def _store(ref, values, cols) -> None:
    """``ref[i, cols] = values[i]`` for each entry, in order."""
    for i, value in enumerate(values):
        ref[i, cols] = value


def _columns_of_m(m, cols, d_in: int):
    """The columns of M = LᵀL, each a list of ``d_in`` entries (loaded from the ref ``m``)."""
    return [[m[a * d_in + b, cols] for a in range(d_in)] for b in range(d_in)]


def _pallas_row(i, row, K, W2, delta, refs, cols, rate, shape, k_registers, registers):
    """Row ``i`` of W1 updated (g = 2 (w1 K − c)) while ΔW2 = W1ᵀ G accumulates in ``delta``: the
    row's new entries with ``registers``, else stored in the output ref (and none returned)."""
    c, k, o1 = refs
    _, h, d_in = shape
    g = []
    for b in range(d_in):
        column = [K[j][b] if k_registers else k[j * d_in + b, cols] for j in range(h)]
        g.append(2 * (_dot(row, column) - c[i * d_in + b, cols]))
    new_row = []
    for j in range(h):
        updated = row[j] - rate * _dot(g, W2[j])
        if registers:
            new_row.append(updated)
        else:
            o1[i * h + j, cols] = updated
        for b in range(d_in):
            term = row[j] * g[b]
            delta[j][b] = term if i == 0 else delta[j][b] + term
    return new_row


def _pallas_step(carry, refs, cols, rate, hoisted, shape, k_registers, registers):
    """One GD step of ``_pallas_kernel``'s block: the new carry (the weights with ``registers``,
    else the weights are updated in the output refs and ``carry`` is returned)."""
    m, c, o1, o2, k = refs
    d_out, h, d_in = shape
    if registers:
        W2 = [list(carry[d_out * h + j * d_in : d_out * h + (j + 1) * d_in]) for j in range(h)]
    else:
        W2 = [[o2[j * d_in + b, cols] for b in range(d_in)] for j in range(h)]
    M = _columns_of_m(m, cols, d_in) if hoisted is None else hoisted
    K = [[_dot(W2[j], M[b]) for b in range(d_in)] for j in range(h)]
    if not k_registers:  # through the scratch ref, reloaded where used
        _store(k, [K[j][b] for j in range(h) for b in range(d_in)], cols)
    delta = [[None] * d_in for _ in range(h)]
    new_w1 = []
    for i in range(d_out):
        if registers:
            row = list(carry[i * h : (i + 1) * h])
        else:
            row = [o1[i * h + j, cols] for j in range(h)]
        new_w1 += _pallas_row(
            i, row, K, W2, delta, (c, k, o1), cols, rate, shape, k_registers, registers
        )
    new_w2 = [W2[j][b] - rate * delta[j][b] for j in range(h) for b in range(d_in)]
    if registers:
        return tuple(new_w1 + new_w2)
    _store(o2, new_w2, cols)
    return carry


def _pallas_kernel(
    w1, w2, m, c, lr, o1, o2, k, *, shape, steps, block, hoist_m, k_registers, registers
):
    """One block of runs (the last axis) through all steps. The weights live in the output refs
    (cache-resident), or with ``registers`` in the loop's carry (registers, spilled where they
    run out); per step K = W2 M goes to the scratch ref ``k`` (or stays in registers), then each
    row of W1 is updated in turn (g = 2 (w1 K − c)) while ΔW2 = W1ᵀ G accumulates in registers.
    Every variant does the same operations in the same order: the same result to the bit."""
    from jax.experimental import pallas as pl

    d_out, h, d_in = shape
    cols = pl.ds(pl.program_id(0) * block, block)
    rate = lr[0, cols]
    start = [w1[i, cols] for i in range(d_out * h)] + [w2[i, cols] for i in range(h * d_in)]
    if not registers:
        _store(o1, start[: d_out * h], cols)
        _store(o2, start[d_out * h :], cols)
    hoisted = _columns_of_m(m, cols, d_in) if hoist_m else None
    refs = (m, c, o1, o2, k)

    def body(_, carry):
        return _pallas_step(carry, refs, cols, rate, hoisted, shape, k_registers, registers)

    end = jax.lax.fori_loop(0, steps, body, tuple(start) if registers else 0)
    if registers:
        _store(o1, end[: d_out * h], cols)
        _store(o2, end[d_out * h :], cols)


def _pallas_lanes(
    w1, w2, m, c, lr, shape, steps, *, block, num_warps, hoist_m, k_registers, registers
):
    """``steps`` GD steps on lanes-layout arrays (entries × runs, runs a multiple of ``block``)."""
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plt

    d_out, h, d_in = shape
    padded = w1.shape[1]
    interpret = jax.default_backend() == "cpu"
    flat = jax.ShapeDtypeStruct
    kernel = functools.partial(
        _pallas_kernel,
        shape=shape,
        steps=steps,
        block=block,
        hoist_m=hoist_m,
        k_registers=k_registers,
        registers=registers,
    )
    o1, o2, _ = pl.pallas_call(
        kernel,
        out_shape=(
            flat((d_out * h, padded), w1.dtype),
            flat((h * d_in, padded), w2.dtype),
            flat((h * d_in, padded), w2.dtype),  # scratch: K = W2 M
        ),
        grid=(padded // block,),
        interpret=interpret,
        compiler_params=None if interpret else plt.CompilerParams(num_warps=num_warps),
    )(w1, w2, m, c, lr)
    return o1, o2


@functools.partial(
    jax.jit,
    static_argnames=("steps", "block", "num_warps", "hoist_m", "k_registers", "registers"),
)
def gd_pallas(
    W1,
    W2,
    L,
    T,
    lr,
    steps: int,
    block=None,
    num_warps=None,
    hoist_m=None,
    k_registers=None,
    registers=None,
):
    """``gd`` as one Pallas (Triton) kernel for GPUs: every step in one launch, ``block`` runs per
    program; parameters left None take ``PALLAS_DEFAULTS``. Same contract and result as ``gd``;
    on a CPU it runs in Pallas's interpreter (slow: for tests). Building it for a GPU takes about
    a minute per batch shape (BENCHMARKS.md).
    """
    given = dict(
        block=block,
        num_warps=num_warps,
        hoist_m=hoist_m,
        k_registers=k_registers,
        registers=registers,
    )
    params = {
        name: PALLAS_DEFAULTS[name] if value is None else value for name, value in given.items()
    }
    runs, d_out, h = W1.shape
    d_in = W2.shape[2]
    padded = -(-runs // params["block"]) * params["block"]  # the padding runs are discarded

    def lanes(x):  # (runs, ...) → (size, padded)
        return _pad(x, padded).reshape(padded, -1).T

    args = (lanes(W1), lanes(W2), *map(lanes, _statistics(L, T)), lanes(lr))
    o1, o2 = _pallas_lanes(*args, (d_out, h, d_in), steps, **params)
    return o1[:, :runs].T.reshape(runs, d_out, h), o2[:, :runs].T.reshape(runs, h, d_in)


# The recorded fast path of ``runner.run``: constant-step GD at depth 2, through these kernels.

#: Where the fast path wins, measured on the 2-core CPU (``benchmarks/bench_fast_path.py``,
#: BENCHMARKS.md): its program takes 2-3 s longer to build than the plain loop's (the unrolled
#: batch-last products, the tiles), and saves ~0.8 µs per run-step once built (×2.05 at 1e4 runs
#: × 3000 steps, 47.4 → 23.1 s). So it needs ``MIN_RUN_STEPS`` run-steps (runs × steps) to
#: gain end to end; the seed_fair GD group (120 × 3000 = 3.6e5) is below: ×1.3-1.4 on the run
#: alone, ×0.4-0.6 with the build. Below ``MIN_RUNS`` the tiles are mostly padding; with a
#: record every step or few, or a probe (its SVDs, one matrix at a time), the records (the same
#: work in both paths) dominate: 6.4 s plain, 6.6 s fast at 3000 runs × 1000 steps with a probe.
MIN_RUN_STEPS = {"cpu": 1e7, "gpu": 1e7}
MIN_RUNS = {"cpu": 64, "gpu": 64}
MIN_RECORD_EVERY = 10
#: From this many runs a GPU batch uses ``gd_pallas`` (its Triton build takes about a minute per
#: shape, so below this the XLA kernel, built in a second, wins end to end).
PALLAS_MIN_RUNS = 20_000


def _constant_step_gd(method) -> bool:
    """W ← W − η ∇f(W) with a constant η: the update these kernels compute."""

    return isinstance(method, AbstractGD) and method.schedule == "constant"


def _platform() -> str:
    return "cpu" if jax.default_backend() == "cpu" else "gpu"


def applies(method, objective, weights, *, keep_weights=False, shared=True) -> bool:
    """Whether ``recorded_gd`` can run this batch: constant-step GD, depth 2, sample or population
    loss, ``keep_weights`` off."""
    depth_two = len(weights) == 2 and all(w.ndim == (2 if shared else 3) for w in weights)
    return _constant_step_gd(method) and depth_two and not keep_weights


def wins(batch: int, steps: int, record_every: int, probe=None) -> bool:
    """Whether the fast path was measured faster end to end (build included) than the plain loop
    for such a batch on this platform."""
    platform = _platform()
    return (
        probe is None
        and record_every >= MIN_RECORD_EVERY
        and batch >= MIN_RUNS[platform]
        and batch * steps >= MIN_RUN_STEPS[platform]
    )


def _edge_pad(tree, size):
    """Every leaf (batch-first) padded to ``size`` runs by repeating the last run."""

    def pad(x):
        return jnp.pad(x, [(0, size - x.shape[0])] + [(0, 0)] * (x.ndim - 1), mode="edge")

    return jax.tree_util.tree_map(pad, tree)


def _factor(objective, d_in):
    """L of every member (the identity for the population loss), batch-first."""
    if objective.factor is not None:
        return objective.factor
    b = objective.target.shape[0]
    return jnp.broadcast_to(jnp.eye(d_in, dtype=objective.target.dtype), (b, d_in, d_in))


def _measure(method):
    """runner's own record of one run (batch-first pytrees), vmapped over a batch."""

    def measure(weights, objective, probe, state):
        return record(objective, probe, weights, False, method, state)[2]

    return jax.vmap(measure)


def _xla_chunk(method, record_every: int, records: int, tile: int, devices: tuple):
    """``records`` blocks of ``record_every`` GD steps for a batch (a whole number of tiles on
    every device), each recorded before it by runner's ``_record``, and the state after the last
    recorded too. The runs are split across ``devices``, and each tile of ``tile`` runs goes
    through all its blocks at once: the steps batch-last (``gd_step``), the records batch-first."""
    measure = _measure(method)

    def run_tile(args):
        weights, objective, probe, state, rate = args
        factor = _factor(objective, weights[1].shape[-1])
        M, C = (jnp.moveaxis(x, 0, -1) for x in _statistics(factor, objective.target))
        rate = rate.reshape(1, 1, -1)

        def record(w):
            return measure(tuple(jnp.moveaxis(x, -1, 0) for x in w), objective, probe, state)

        def steps(carry, _):
            return gd_step(*carry, M, C, rate), None

        def block(carry, _):
            return jax.lax.scan(steps, carry, None, record_every)[0], record(carry)

        start = tuple(jnp.moveaxis(w, 0, -1) for w in weights)
        end, rows = jax.lax.scan(block, start, None, records)
        return tuple(jnp.moveaxis(x, -1, 0) for x in end), rows, record(end)

    def share(weights, objective, probe, state, rate):
        b = rate.shape[0]

        def tiles(x):  # (b, ...) → (b/tile, tile, ...)
            return x.reshape(b // tile, tile, *x.shape[1:])

        end, rows, last = jax.lax.map(
            run_tile, jax.tree_util.tree_map(tiles, (weights, objective, probe, state, rate))
        )
        flat = lambda x: x.reshape(b, *x.shape[2:])
        rows = jax.tree_util.tree_map(lambda x: flat(jnp.moveaxis(x, 2, 1)), rows)
        return jax.tree_util.tree_map(flat, end), rows, jax.tree_util.tree_map(flat, last)

    sharded = split_runs(share, devices)
    return lambda weights, objective, probe, state, rate, runs: sharded(
        weights, objective, probe, state, rate
    )


def _pallas_chunk(method, record_every: int, records: int, params: dict):
    """The same as ``_xla_chunk`` with ``gd_pallas``'s kernel for the steps between records."""
    measure = _measure(method)

    def chunk(weights, objective, probe, state, rate, runs):
        b = rate.shape[0]
        shape = (weights[0].shape[1], weights[0].shape[2], weights[1].shape[2])
        block = params["block"]
        padded = -(-b // block) * block
        lanes = lambda x: _pad(x, padded).reshape(padded, -1).T
        unlanes = lambda x, s: x[:, :b].T.reshape(b, *s)
        factor = _factor(objective, shape[2])
        M, C, r = (lanes(x) for x in (*_statistics(factor, objective.target), rate))

        def record(w1, w2):
            weights = (unlanes(w1, shape[:2]), unlanes(w2, shape[1:]))
            return measure(weights, objective, probe, state)

        def block_(carry, _):
            row = record(*carry)
            return _pallas_lanes(*carry, M, C, r, shape, record_every, **params), row

        start = (lanes(weights[0]), lanes(weights[1]))
        (w1, w2), rows = jax.lax.scan(block_, start, None, records)
        rows = jax.tree_util.tree_map(lambda x: jnp.moveaxis(x, 0, 1), rows)
        return (unlanes(w1, shape[:2]), unlanes(w2, shape[1:])), rows, record(w1, w2)

    return chunk


def _make_chunk(method, record_every, records, shared, kernel, tile, devices, params):
    """The program of one chunk: members' objectives and probes broadcast where shared."""
    if kernel == "pallas":
        inner = _pallas_chunk(method, record_every, records, dict(params))
    else:
        inner = _xla_chunk(method, record_every, records, tile, devices)
    multiple = 1 if kernel == "pallas" else tile * len(devices)

    def chunk(weights, state, objective, probe, rate):
        b = rate.shape[0]
        if shared:
            bcast = lambda x: jnp.broadcast_to(x, (b, *x.shape))
            objective, probe = jax.tree_util.tree_map(bcast, (objective, probe))
        padded = -(-b // multiple) * multiple
        args = _edge_pad((weights, objective, probe, state, rate), padded)
        out = inner(*args, b)
        return jax.tree_util.tree_map(lambda x: x[:b], out)

    return chunk


def _advanced(state, steps: int):
    """``state`` after ``steps`` GD updates: an optax state with hyperparameters injected counts
    its updates (``count``); nothing else in a GD state changes."""
    if hasattr(state, "count"):
        return state._replace(count=state.count + jnp.asarray(steps, state.count.dtype))
    return state


def recorded_gd(
    method,
    objective,
    weights,
    learning_rates,
    steps: int,
    *,
    record_every: int = 1,
    chunk_steps: int = 1000,
    probe=None,
    keep_weights: bool = False,
    shared: bool = True,
    progress=None,
    kernel: str | None = None,
    checkpoints: Checkpoints | None = None,
):
    """``runner.run`` for constant-step GD at depth 2 through the throughput kernels: the same
    rows (to rounding), timings, FLOPs, probe extras and batched final weights and states; None
    where the fast path does not apply (``applies``), so the caller runs the plain loop.

    ``kernel``: ``"xla"`` (``gd``'s batch-last tiles) or ``"pallas"`` (``gd_pallas``), run whenever
    the fast path applies (tests, benchmarks); None: the measured choice (``wins``; the XLA kernel
    on a CPU, on a GPU Pallas from ``PALLAS_MIN_RUNS`` runs), None returned where it loses.
    """

    rates = np.asarray(learning_rates, dtype=np.float64).reshape(-1)
    batch = rates.shape[0]
    weights = tuple(jnp.asarray(w, dtype=jnp.float64) for w in weights)
    if not applies(method, objective, weights, keep_weights=keep_weights, shared=shared):
        return None
    if kernel is None and not wins(batch, steps, record_every, probe):
        return None
    if kernel is None:
        pallas = _platform() == "gpu" and batch >= PALLAS_MIN_RUNS
        kernel = "pallas" if pallas else "xla"
    start = time.perf_counter()
    current, state = start_state(method, objective, weights, rates, shared)
    if jax.tree_util.tree_leaves(jax.eval_shape(jax.vmap(method.record), state)):
        return None  # a GD that records its own columns: the plain loop records them
    rate = jnp.asarray(method.learning_rate_used(jnp.asarray(rates)), dtype=jnp.float64)
    compile_seconds = time.perf_counter() - start

    devices = tuple(jax.local_devices())
    share = -(-batch // len(devices))
    tile = max(1, min(16 if devices[0].platform == "cpu" else share, share))
    params = tuple(sorted(PALLAS_DEFAULTS.items()))

    def make(current, size):
        args = (current, state, objective, probe, rate)
        options = (record_every, size, shared, kernel, tile, devices, params)
        program = compiled(_make_chunk, method, args, *options)
        return lambda: program(*args)

    resume = checkpoints.resume("fast", current) if checkpoints else None
    on_chunk = checkpoints.saver("fast") if checkpoints else None
    driven = drive(make, current, steps, record_every, chunk_steps, progress,
                   resume=resume, on_chunk=on_chunk)  # fmt: skip
    curves = curves_of(driven, 0, record_every, method, weights, objective)
    final_state = _advanced(state, driven.records_done * record_every)
    seconds = compile_seconds + driven.compile_seconds
    return BatchResult(curves, driven.carry, final_state, seconds, driven.times[-1])

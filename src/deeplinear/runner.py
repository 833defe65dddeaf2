"""The compiled training loop: a batch of runs that share shapes, one program for all of them.

``run`` starts every member of the batch from the same weights, with one learning rate each
(``vmap``), and advances them with ``lax.scan`` in chunks of steps. Per recorded step it keeps the
loss (measured *before* the update of that step, so row ``step = s`` holds the loss after ``s``
updates), the gradient norm and the notebook's LM loss. Wall time is measured per chunk, after
compilation, which is timed apart. A run that produces a non-finite loss has diverged: its rows
end at that step, as the notebook stopped there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from . import batched
from ._backend import jax, jnp, one_blas_thread
from .cost import rows_of, shapes_of, step_flops
from .errors import UsageError
from .measurement import is_measured
from .model import gradient_norm
from .results import Curve

__all__ = ["LOOP_COLUMNS", "BatchResult", "Curve", "flops_column", "run", "start_state"]

# the columns the loop adds to every run beside the method's own and the probe's
LOOP_COLUMNS = {"flops": pa.float64()}


@dataclass(frozen=True)
class BatchResult:
    """The curves of a batch, its final weights and states (batched), and timings in seconds."""

    curves: list[Curve]
    final_weights: tuple
    final_state: object
    compile_seconds: float
    run_seconds: float


def _record(objective, probe, weights, keep_weights: bool, method, state):
    loss, grads = jax.value_and_grad(objective.loss)(weights)
    metrics = jnp.stack([loss, gradient_norm(grads), objective.notebook_loss(weights)])
    extras = {} if probe is None else dict(probe.measure(weights))
    extras.update(method.record(state))
    if keep_weights:
        extras["weights"] = weights
    return loss, grads, (metrics, extras)


def _make_chunk(method, record_every: int, records: int, keep_weights: bool, shared: bool):
    """A function advancing one run by ``records · record_every`` steps, recording each block."""

    def chunk(weights, state, objective, probe):
        def plain_step(carry, _):
            w, s = carry
            value, g = jax.value_and_grad(objective.loss)(w)
            return method.step(w, s, objective, value, g), None

        def block(carry, _):
            weights, state = carry
            loss, grads, record = _record(objective, probe, weights, keep_weights, method, state)
            carry = method.step(weights, state, objective, loss, grads)
            carry, _ = jax.lax.scan(plain_step, carry, None, record_every - 1)
            return carry, record

        (weights, state), records_ = jax.lax.scan(block, (weights, state), None, records)
        end = _record(objective, probe, weights, keep_weights, method, state)[2]
        return weights, state, records_, end

    problem_axis = None if shared else 0  # one objective for the batch, or one per member
    return jax.vmap(chunk, in_axes=(0, 0, problem_axis, problem_axis))


_PROGRAMS: dict = {}  # compiled programs, by function, method, options and argument shapes


def _compiled(make, method, args, *options) -> Callable:
    """``jit(make(method, *options))`` compiled for ``args``' shapes, once per process."""
    leaves, tree = jax.tree_util.tree_flatten(args)
    key = (make, method, options, tree, tuple((x.shape, x.dtype) for x in leaves))
    if key not in _PROGRAMS:
        _PROGRAMS[key] = jax.jit(make(method, *options)).lower(*args).compile()
    return _PROGRAMS[key]


def _start(method, shared: bool = True):
    """Initial batched weights and method states, one per learning rate: ``method.init``,
    then ``method.start`` (the weights the first step starts from).

    ``shared``: every member starts from the same weights on the same objective; otherwise
    weights and objective already carry one leading entry per member.
    """

    def start(weights, objective, rates):
        if not shared:
            state = jax.vmap(method.init)(weights, objective, rates)
            return jax.vmap(method.start)(weights, state, objective), state
        state = jax.vmap(lambda lr: method.init(weights, objective, lr))(rates)
        return jax.vmap(lambda s: method.start(weights, s, objective))(state), state

    return start


def start_state(method, objective, weights, learning_rates, shared=True) -> tuple[tuple, object]:
    """Batched initial weights and method states, one per learning rate."""
    rates = np.asarray(learning_rates, dtype=np.float64).reshape(-1)
    weights = tuple(jnp.asarray(w, dtype=jnp.float64) for w in weights)
    args = (weights, objective, rates)
    program = _compiled(_start, method, args, shared)
    with one_blas_thread():
        return jax.block_until_ready(program(*args))


def run(
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
    state=None,
    first_step: int = 0,
    shared: bool = True,
    progress: Callable[[int, int], None] | None = None,
    fast: bool = True,
) -> BatchResult:
    """Run ``method`` from ``weights`` once per learning rate for ``steps`` updates.

    ``probe`` (a pytree with ``measure(weights) -> dict``) adds measurements to every record;
    ``keep_weights`` records the weights too. To continue a batch, pass its batched
    ``final_weights`` as ``weights`` with its ``final_state`` as ``state`` and the steps done as
    ``first_step``. With ``shared=False`` every member has its own problem: ``weights``,
    ``objective`` and ``probe`` then carry a leading batch axis, one entry per learning rate
    (e.g. several seeds × a grid), all in one compiled program. Constant-step GD at depth 2
    goes through ``batched.recorded_gd`` (the same rows) where that is measured faster;
    ``fast=False`` forces this loop.
    """
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise UsageError(f"steps must be a positive integer, got {steps!r}")
    if record_every < 1 or steps % record_every:
        raise UsageError(f"record_every must divide steps ({steps}), got {record_every!r}")
    rates = np.asarray(learning_rates, dtype=np.float64).reshape(-1)
    batch = rates.shape[0]
    if batch == 0 or not np.all(np.isfinite(rates)) or np.any(rates <= 0):
        raise UsageError(f"learning rates must be finite and > 0, got {rates.tolist()}")
    reason = method.supports(objective, shapes_of(weights))
    if reason is not None:  # before anything compiles, in one line
        raise UsageError(f"{method.name} cannot run on this problem: {reason}")
    if not method.in_loop:
        if not shared:
            raise UsageError(f"{method.name} runs outside the compiled loop: one problem at a time")
        args = (batch, steps, record_every, probe, keep_weights)
        return _out_of_loop(method, objective, weights, *args)
    measured = is_measured(objective)  # completion, sensing: no throughput kernel
    if fast and not measured and state is None and first_step == 0:  # constant-step GD
        fast = batched.recorded_gd(
            method, objective, weights, rates, steps, record_every=record_every,
            chunk_steps=chunk_steps, probe=probe, keep_weights=keep_weights, shared=shared,
            progress=progress,
        )  # fmt: skip
        if fast is not None:
            return fast
    weights = tuple(jnp.asarray(w, dtype=jnp.float64) for w in weights)
    compile_seconds = 0.0
    if state is None:
        start = time.perf_counter()
        current, state = start_state(method, objective, weights, rates, shared)
        compile_seconds += time.perf_counter() - start
    else:
        current = weights

    total_records = steps // record_every
    per_chunk = max(1, min(total_records, chunk_steps // record_every))
    sizes = [per_chunk] * (total_records // per_chunk)
    if total_records % per_chunk:
        sizes.append(total_records % per_chunk)

    pieces, times = [], [0.0]
    end = None
    done = 0
    for size in sizes:
        start = time.perf_counter()
        args = (current, state, objective, probe)
        program = _compiled(_make_chunk, method, args, record_every, size, keep_weights, shared)
        compile_seconds += time.perf_counter() - start
        start = time.perf_counter()
        with one_blas_thread():
            current, state, records, end = program(*args)
            records = jax.tree_util.tree_map(np.asarray, records)  # waits for the chunk
        times.append(times[-1] + time.perf_counter() - start)
        pieces.append(records)
        done += size
        if progress:
            progress(done * record_every, steps)
        if np.all(np.any(~np.isfinite(records[0][:, :, 0]), axis=1)) or done == total_records:
            break

    end = jax.tree_util.tree_map(lambda x: np.asarray(x)[:, None], end)
    if done == total_records:
        pieces.append(end)  # the record after the last update
    metrics, extras = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=1), *pieces)
    seconds = np.concatenate(
        [np.linspace(t0, t1, size, endpoint=False) for t0, t1, size in zip(times, times[1:], sizes)]
        + [[times[-1]]]
    )[: metrics.shape[1]]
    recorded_steps = first_step + np.arange(metrics.shape[1]) * record_every
    curves = [_curve(recorded_steps, metrics, seconds, extras, b) for b in range(batch)]
    for curve in curves:
        curve.extras["flops"] = flops_column(method, weights, objective, curve)
    return BatchResult(curves, current, state, compile_seconds, times[-1])


def flops_column(method, weights, objective, curve) -> np.ndarray:
    """Cumulative analytic FLOPs at each row (``cost.step_flops``; CG iterations as recorded)."""
    per_step, per_cg = step_flops(method, shapes_of(weights), rows_of(objective))
    cg = curve.extras.get("cg_steps")
    total = curve.steps.astype(np.float64) * per_step
    return total if cg is None else total + np.asarray(cg, dtype=np.float64) * per_cg


def _curve(steps, metrics, seconds, extras, member: int) -> Curve:
    """Batch member ``member``'s rows, ending at its first non-finite loss."""
    metrics = metrics[member]
    bad = np.flatnonzero(~np.isfinite(metrics[:, 0]))
    stop = bad[0] + 1 if bad.size else len(steps)
    kept = jax.tree_util.tree_map(lambda x: x[member, :stop], extras)
    return Curve(steps[:stop], *(metrics[:stop, i] for i in range(3)), seconds[:stop], kept)


def _out_of_loop(method, objective, weights, batch, steps, record_every, probe, keep_weights):
    """Methods that run outside the compiled loop (SciPy): one run, repeated per batch member."""
    start = time.perf_counter()
    args = (steps, record_every, probe, keep_weights)
    runs = [method.run_one(objective, weights, *args) for _ in range(batch)]
    total = time.perf_counter() - start
    curves = [curve for curve, _, _ in runs]
    for curve in curves:
        curve.extras["flops"] = flops_column(method, weights, objective, curve)
    final = tuple(jnp.stack(layers) for layers in zip(*(w for _, w, _ in runs)))
    run_seconds = max(seconds for _, _, seconds in runs)
    return BatchResult(curves, final, None, max(0.0, total - sum(s for *_, s in runs)), run_seconds)

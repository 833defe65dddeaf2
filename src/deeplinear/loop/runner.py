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

import numpy as np

from deeplinear.core.backend import jax, jnp
from deeplinear.errors import UsageError
from deeplinear.loop import fast_gd
from deeplinear.loop.programs import (
    LOOP_COLUMNS,
    BatchResult,
    Checkpoints,
    compiled,
    curves_of,
    drive,
    flops_column,
    record,
    start_state,
)
from deeplinear.methods import blamed, check_method, refusal
from deeplinear.methods.cost import rows_of, shapes_of
from deeplinear.objectives.measurement import is_measured
from deeplinear.store.results import Curve

__all__ = ["LOOP_COLUMNS", "BatchResult", "Curve", "flops_column", "run", "start_state"]


def _make_chunk(method, record_every: int, records: int, keep_weights: bool, shared: bool):
    """A function advancing one run by ``records · record_every`` steps, recording each block."""

    def chunk(weights, state, objective, probe):
        def plain_step(carry, _):
            w, s = carry
            value, g = jax.value_and_grad(objective.loss)(w)
            return method.step(w, s, objective, value, g), None

        def block(carry, _):
            weights, state = carry
            loss, grads, row = record(objective, probe, weights, keep_weights, method, state)
            carry = method.step(weights, state, objective, loss, grads)
            carry, _ = jax.lax.scan(plain_step, carry, None, record_every - 1)
            return carry, row

        (weights, state), records_ = jax.lax.scan(block, (weights, state), None, records)
        end = record(objective, probe, weights, keep_weights, method, state)[2]
        return weights, state, records_, end

    problem_axis = None if shared else 0  # one objective for the batch, or one per member
    return jax.vmap(chunk, in_axes=(0, 0, problem_axis, problem_axis))


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
    checkpoints: Checkpoints | None = None,
) -> BatchResult:
    """Run ``method`` from ``weights`` once per learning rate for ``steps`` updates.

    ``probe`` (a pytree with ``measure(weights) -> dict``) adds measurements to every record;
    ``keep_weights`` records the weights too. To continue a batch, pass its batched
    ``final_weights`` as ``weights`` with its ``final_state`` as ``state`` and the steps done as
    ``first_step``. With ``shared=False`` every member has its own problem: ``weights``,
    ``objective`` and ``probe`` then carry a leading batch axis, one entry per learning rate
    (e.g. several seeds × a grid), all in one compiled program. Constant-step GD at depth 2
    goes through ``fast_gd.recorded_gd`` (the same rows) where that is measured faster;
    ``fast=False`` forces this loop. ``checkpoints`` (``programs.Checkpoints``) sees the batch
    after every chunk and resumes one an interrupted process left.
    """
    rates = _checked(method, objective, weights, learning_rates, steps, record_every)
    with blamed(method):  # a method from outside the lab: an error of its own in one line
        if not method.in_loop:
            if not shared:
                raise UsageError(
                    f"{method.name} runs outside the compiled loop: one problem at a time"
                )
            args = (rates.shape[0], steps, record_every, probe, keep_weights)
            return _out_of_loop(method, objective, weights, *args)
        measured = is_measured(objective)  # completion, sensing: no throughput kernel
        if fast and not measured and state is None and first_step == 0:  # constant-step GD
            fast = fast_gd.recorded_gd(
                method, objective, weights, rates, steps, record_every=record_every,
                chunk_steps=chunk_steps, probe=probe, keep_weights=keep_weights, shared=shared,
                progress=progress, checkpoints=checkpoints,
            )  # fmt: skip
            if fast is not None:
                return fast
        looped = (record_every, chunk_steps, probe, keep_weights, shared, progress, checkpoints)
        return _in_loop(method, objective, weights, rates, steps, state, first_step, *looped)


def _in_loop(
    method, objective, weights, rates, steps, state, first_step,
    record_every, chunk_steps, probe, keep_weights, shared, progress, checkpoints,
) -> BatchResult:  # fmt: skip
    """The batch through the compiled chunks of ``lax.scan``, resumed where a checkpoint was."""
    weights = tuple(jnp.asarray(w, dtype=jnp.float64) for w in weights)
    compile_seconds = 0.0
    if state is None:
        start = time.perf_counter()
        current, state = start_state(method, objective, weights, rates, shared)
        compile_seconds += time.perf_counter() - start
    else:
        current = weights

    def make(carry, size):
        args = (*carry, objective, probe)
        program = compiled(_make_chunk, method, args, record_every, size, keep_weights, shared)

        def go():
            current, state, records, end = program(*args)
            return (current, state), records, end

        return go

    resume = checkpoints.resume("loop", (current, state)) if checkpoints else None
    on_chunk = checkpoints.saver("loop") if checkpoints else None
    driven = drive(make, (current, state), steps, record_every, chunk_steps, progress,
                   resume=resume, on_chunk=on_chunk)  # fmt: skip
    curves = curves_of(driven, first_step, record_every, method, weights, objective)
    current, state = driven.carry
    return BatchResult(
        curves, current, state, compile_seconds + driven.compile_seconds, driven.times[-1]
    )


def _checked(method, objective, weights, learning_rates, steps, record_every) -> np.ndarray:
    """The learning rates, once the arguments and the method's contract are checked."""
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise UsageError(f"steps must be a positive integer, got {steps!r}")
    if record_every < 1 or steps % record_every:
        raise UsageError(f"record_every must divide steps ({steps}), got {record_every!r}")
    rates = np.asarray(learning_rates, dtype=np.float64).reshape(-1)
    if rates.shape[0] == 0 or not np.all(np.isfinite(rates)) or np.any(rates <= 0):
        raise UsageError(f"learning rates must be finite and > 0, got {rates.tolist()}")
    reason = refusal(method, objective, shapes_of(weights))
    if reason is not None:  # before anything compiles, in one line
        raise UsageError(f"{method.name} cannot run on this problem: {reason}")
    check_method(method, shapes_of(weights), rows_of(objective))  # traced once, nothing run
    return rates


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

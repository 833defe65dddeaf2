"""What the compiled loop and its fast path share: the record of a step, compiled programs
cached per shape, the batch's start, and the chunked drive (``lax.scan`` chunks timed one by one,
stopped once every member has diverged) with the curves built from its records.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from deeplinear.core.backend import jax, jnp, one_blas_thread
from deeplinear.core.model import gradient_norm
from deeplinear.methods.cost import rows_of, shapes_of, step_flops
from deeplinear.store.results import Curve

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


def record(objective, probe, weights, keep_weights: bool, method, state):
    loss, grads = jax.value_and_grad(objective.loss)(weights)
    metrics = jnp.stack([loss, gradient_norm(grads), objective.notebook_loss(weights)])
    extras = {} if probe is None else dict(probe.measure(weights))
    extras.update(method.record(state))
    if keep_weights:
        extras["weights"] = weights
    return loss, grads, (metrics, extras)


_PROGRAMS: dict = {}  # compiled programs, by function, method, options and argument shapes


def compiled(make, method, args, *options) -> Callable:
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
    program = compiled(_start, method, args, shared)
    with one_blas_thread():
        return jax.block_until_ready(program(*args))


def chunk_sizes(steps: int, record_every: int, chunk_steps: int) -> list[int]:
    """Records per chunk: ``chunk_steps // record_every`` each, the remainder last."""
    total = steps // record_every
    per_chunk = max(1, min(total, chunk_steps // record_every))
    sizes = [per_chunk] * (total // per_chunk)
    if total % per_chunk:
        sizes.append(total % per_chunk)
    return sizes


CHUNK_SECONDS = 2.0  # a chunk that took over twice this is followed by shorter ones (progress)


def shortened(rest: list[int], size: int, seconds: float) -> list[int]:
    """The chunks after one of ``size`` records that took ``seconds``: ``rest`` as it was, or,
    where that chunk took more than twice ``CHUNK_SECONDS``, the same records in chunks of
    ``size / 2^k`` (each about ``CHUNK_SECONDS`` long; halvings keep the compiled lengths few),
    so a slow batch still reports its steps every few seconds. The steps are the same steps:
    chunks only decide where the loop stops to time and report."""
    if not rest or seconds <= 2 * CHUNK_SECONDS or size <= 1:
        return rest
    halvings = int(np.ceil(np.log2(seconds / CHUNK_SECONDS)))
    per_chunk = max(1, size >> halvings)
    if per_chunk >= max(rest):
        return rest
    total = sum(rest)
    return [per_chunk] * (total // per_chunk) + ([total % per_chunk] if total % per_chunk else [])


@dataclass
class Drive:
    """What ``drive`` leaves: the carry after the last chunk, each chunk's records (the record
    after the last update appended once every chunk ran), cumulative run seconds per chunk."""

    carry: object
    pieces: list
    times: list
    sizes: list
    compile_seconds: float
    records_done: int


def drive(
    make,
    carry,
    steps: int,
    record_every: int,
    chunk_steps: int,
    progress=None,
    *,
    resume: Drive | None = None,
    on_chunk: Callable[[Drive], None] | None = None,
) -> Drive:
    """Advance ``carry`` chunk by chunk. ``make(carry, records)`` returns the chunk's program as
    a thunk (its compile timed apart); the thunk returns ``(carry, records, end)``. Stops after
    the chunk in which every member's loss became non-finite. ``progress(steps_done, steps)``
    after every chunk; a chunk slower than ``2 · CHUNK_SECONDS`` is followed by shorter ones
    (``shortened``), so the counts arrive every few seconds.

    ``on_chunk(drive)`` sees the drive after every chunk (a checkpoint: ``resumed`` continues
    it); ``resume``, such a drive, continues with the chunks not yet done — the same chunks,
    the same compiled programs, so the same rows as a drive never interrupted."""
    sizes = chunk_sizes(steps, record_every, chunk_steps)
    pieces, times, done, end, compile_seconds = [], [0.0], 0, None, 0.0
    if resume is not None:
        carry, pieces, times = resume.carry, list(resume.pieces), list(resume.times)
        done, compile_seconds = resume.records_done, resume.compile_seconds
        if sum(resume.sizes) == sum(sizes):
            sizes = list(resume.sizes)  # the chunks it drove, shortened ones included
    index = 0
    while index < len(sizes):
        size = sizes[index]
        index += 1
        if sum(sizes[: index - 1]) < done:
            continue  # done before the interruption
        start = time.perf_counter()
        go = make(carry, size)
        compile_seconds += time.perf_counter() - start
        start = time.perf_counter()
        with one_blas_thread():
            carry, records, end = go()
            records = jax.tree_util.tree_map(np.asarray, records)  # waits for the chunk
        times.append(times[-1] + time.perf_counter() - start)
        pieces.append(records)
        done += size
        sizes = sizes[:index] + shortened(sizes[index:], size, times[-1] - times[-2])
        if progress:
            progress(done * record_every, steps)
        if np.all(np.any(~np.isfinite(records[0][:, :, 0]), axis=1)) or done == sum(sizes):
            break
        if on_chunk is not None:
            on_chunk(Drive(carry, pieces, times, sizes, compile_seconds, done))
    if done == sum(sizes) and end is not None:  # the record after the last update
        pieces.append(jax.tree_util.tree_map(lambda x: np.asarray(x)[:, None], end))
    return Drive(carry, pieces, times, sizes, compile_seconds, done)


@dataclass
class Checkpoints:
    """A batch's checkpoints: ``saved``, the drive an interrupted process left (its carry as a
    list of arrays) with the path that drove it (``"loop"``, ``"fast"``), and ``save(path,
    drive)``, called after every chunk (it decides how often to write)."""

    saved: tuple[str, Drive] | None
    save: Callable[[str, Drive], None]

    def resume(self, path: str, carry) -> Drive | None:
        """The saved drive, if ``path`` left it and it fits ``carry``; else None (start over)."""
        if self.saved is None or self.saved[0] != path:
            return None
        return resumed(self.saved[1], carry)

    def saver(self, path: str) -> Callable[[Drive], None]:
        return lambda driven: self.save(path, driven)


def resumed(saved: Drive, carry) -> Drive | None:
    """``saved`` (a checkpoint whose carry is a list of arrays) with its carry in the structure
    of ``carry``, the drive's start; None where the shapes or dtypes differ (another problem)."""
    leaves, tree = jax.tree_util.tree_flatten(carry)
    if len(leaves) != len(saved.carry) or any(
        np.shape(a) != np.shape(b) or np.asarray(a).dtype != np.asarray(b).dtype
        for a, b in zip(saved.carry, leaves)
    ):
        return None
    carry = jax.tree_util.tree_unflatten(tree, [jnp.asarray(x) for x in saved.carry])
    return Drive(carry, saved.pieces, saved.times, saved.sizes, saved.compile_seconds,
                 saved.records_done)  # fmt: skip


def curves_of(
    driven: Drive, first_step: int, record_every: int, method, weights, objective
) -> list[Curve]:
    """The batch's curves from a ``drive``: rows, per-row seconds and the FLOPs column."""
    metrics, extras = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=1), *driven.pieces)
    times, sizes = driven.times, driven.sizes
    seconds = np.concatenate(
        [np.linspace(t0, t1, size, endpoint=False) for t0, t1, size in zip(times, times[1:], sizes)]
        + [[times[-1]]]
    )[: metrics.shape[1]]
    recorded_steps = first_step + np.arange(metrics.shape[1]) * record_every
    curves = [curve_of(recorded_steps, metrics, seconds, extras, b) for b in range(len(metrics))]
    for curve in curves:
        curve.extras["flops"] = flops_column(method, weights, objective, curve)
    return curves


def flops_column(method, weights, objective, curve) -> np.ndarray:
    """Cumulative analytic FLOPs at each row (``cost.step_flops``; CG iterations as recorded)."""
    per_step, per_cg = step_flops(method, shapes_of(weights), rows_of(objective))
    cg = curve.extras.get("cg_steps")
    total = curve.steps.astype(np.float64) * per_step
    return total if cg is None else total + np.asarray(cg, dtype=np.float64) * per_cg


def curve_of(steps, metrics, seconds, extras, member: int) -> Curve:
    """Batch member ``member``'s rows, ending at its first non-finite loss."""
    metrics = metrics[member]
    bad = np.flatnonzero(~np.isfinite(metrics[:, 0]))
    stop = bad[0] + 1 if bad.size else len(steps)
    kept = jax.tree_util.tree_map(lambda x: x[member, :stop], extras)
    return Curve(steps[:stop], *(metrics[:stop, i] for i in range(3)), seconds[:stop], kept)

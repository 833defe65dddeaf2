"""JAX, configured once for the whole package: float64 everywhere, one CPU device per core.

Every module that computes with JAX imports it from here, so x64 is on before the first array
is made. One CPU device per core lets ``batched.gd`` give each core its own share of the runs
(XLA otherwise splits each small operation across threads, which costs more than it gains);
computations that name no device still run on the first one, so nothing else changes. A device
count already chosen (``jax_num_cpu_devices``, ``--xla_force_host_platform_device_count``, or
JAX started before this import) is kept. An optional persistent compilation cache is enabled
from ``DEEPLINEAR_JAX_CACHE``.

Linear algebra inside compiled loops goes through ``one_matrix_at_a_time``: jaxlib's CPU LAPACK
kernels (0.10) split a *batch* of matrices into chunks on XLA's intra-op thread pool and block
their thread until the chunks are done, while XLA runs a program's independent operations on that
same pool. When every pool thread is inside such a kernel, the chunks wait for a thread that never
comes: the process hangs at 0 % CPU (a 2-core machine has a pool of two). Given one matrix, a
kernel runs inline and never waits, so batches are looped over one matrix at a time.
"""

import contextlib
import os

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)


def _one_cpu_device_per_core() -> None:
    chosen = jax.config.jax_num_cpu_devices != -1
    if chosen or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with contextlib.suppress(RuntimeError):  # JAX already started: its devices stay
        jax.config.update("jax_num_cpu_devices", max(1, cores or 1))


_one_cpu_device_per_core()


def enable_compilation_cache(directory: str | None = None) -> str | None:
    """Turn on XLA's persistent compilation cache in ``directory`` (default: env var).

    Returns the directory used, or None when no cache was asked for.
    """
    directory = directory or os.environ.get("DEEPLINEAR_JAX_CACHE")
    if not directory:
        return None
    os.makedirs(directory, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory


def one_matrix_at_a_time(fn):
    """``fn`` (a LAPACK-backed call on single matrices) that, under ``vmap``, loops over the batch.

    ``vmap`` would hand LAPACK the whole batch in one call, which jaxlib parallelizes on XLA's
    intra-op pool with a blocking wait that can deadlock (module docstring); ``lax.map`` gives it
    one matrix per call, run inline. Nested ``vmap``s nest the loops. Not differentiable (the
    callers only measure or solve, they are not differentiated through).
    """

    @jax.custom_batching.custom_vmap
    def single(*args):
        return fn(*args)

    @single.def_vmap
    def _loop(axis_size, in_batched, *args):
        args = tuple(
            x if batched else jnp.broadcast_to(x, (axis_size, *jnp.shape(x)))
            for x, batched in zip(args, in_batched)
        )
        out = jax.lax.map(lambda xs: single(*xs), args)
        return out, jax.tree_util.tree_map(lambda _: True, out)

    return single


__all__ = ["enable_compilation_cache", "jax", "jnp", "one_matrix_at_a_time"]

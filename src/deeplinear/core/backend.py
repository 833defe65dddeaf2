"""JAX, configured once for the whole package: float64 everywhere, one CPU device per core.

Every module that computes with JAX imports it from here, so x64 is on before the first array
is made. One CPU device per core lets ``batched.gd`` give each core its own share of the runs
(XLA otherwise splits each small operation across threads, which costs more than it gains);
computations that name no device still run on the first one, so nothing else changes. A device
count already chosen (``jax_num_cpu_devices``, ``--xla_force_host_platform_device_count``, or
JAX started before this import) is kept. XLA's persistent compilation cache is on by default in
the user's cache folder (``cache_directory``): a second run of the same program loads it instead
of compiling it.

Linear algebra inside compiled loops goes through ``one_matrix_at_a_time``: jaxlib's CPU LAPACK
kernels (0.10) split a *batch* of matrices into chunks on XLA's intra-op thread pool and block
their thread until the chunks are done, while XLA runs a program's independent operations on that
same pool. When every pool thread is inside such a kernel, the chunks wait for a thread that never
comes: the process hangs at 0 % CPU (a 2-core machine has a pool of two). Given one matrix, a
kernel runs inline and never waits, so batches are looped over one matrix at a time.

Those kernels run on SciPy's OpenBLAS, whose own threads spin against XLA's on a small CPU: the
compiled loops run under ``one_blas_thread`` (the recovery probe's two QRs and three small SVDs
a step cost 3 ms inside ScaledGD's loop with two OpenBLAS threads, 0.5 ms with one).
"""

import contextlib
import os
import sys
from pathlib import Path

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


CACHE_ENV = "DEEPLINEAR_JAX_CACHE"  # a folder, or "off" for no cache
CACHE_OFF = ("off", "0", "no", "false", "none")


def default_cache_directory() -> Path:
    """``$XDG_CACHE_HOME/deeplinear/jax``, else ``~/.cache/deeplinear/jax``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "deeplinear" / "jax"


def cache_directory() -> Path | None:
    """The compilation cache's folder: ``DEEPLINEAR_JAX_CACHE`` if set (None for ``off``), else
    ``default_cache_directory()``."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is None or not chosen.strip():
        return default_cache_directory()
    if chosen.strip().lower() in CACHE_OFF:
        return None
    return Path(chosen).expanduser()


def enable_compilation_cache(directory: str | os.PathLike | None = None, warn=None) -> str | None:
    """Turn on XLA's persistent compilation cache in ``directory`` (default ``cache_directory()``).

    Returns the folder used, or None when the cache is off or its folder cannot be created or
    written: then ``warn`` (default: a line on stderr) gets one line and everything compiles as
    without a cache.
    """
    folder = Path(directory) if directory is not None else cache_directory()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable")
    except OSError as error:
        say = warn or (lambda line: print(line, file=sys.stderr, flush=True))
        say(
            f"deeplinear: warning: compilation cache {folder} is not usable "
            f"({error.strerror or error}): compiling without it (set {CACHE_ENV} to a writable "
            f"folder, or {CACHE_ENV}=off)"
        )
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return str(folder)


def one_blas_thread():
    """A context in which NumPy's and SciPy's OpenBLAS (and so jaxlib's LAPACK kernels) use one
    thread: XLA parallelizes the compiled programs itself, and BLAS threads beside its pool
    spin against it (module docstring). Enter it around a program's execution, not around
    NumPy work that should keep its threads."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


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


__all__ = [
    "CACHE_ENV",
    "cache_directory",
    "default_cache_directory",
    "enable_compilation_cache",
    "jax",
    "jnp",
    "one_matrix_at_a_time",
]

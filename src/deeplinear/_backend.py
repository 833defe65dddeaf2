"""JAX, configured once for the whole package: float64 everywhere, one CPU device per core.

Every module that computes with JAX imports it from here, so x64 is on before the first array
is made. One CPU device per core lets ``batched.gd`` give each core its own share of the runs
(XLA otherwise splits each small operation across threads, which costs more than it gains);
computations that name no device still run on the first one, so nothing else changes. A device
count already chosen (``jax_num_cpu_devices``, ``--xla_force_host_platform_device_count``, or
JAX started before this import) is kept. An optional persistent compilation cache is enabled
from ``DEEPLINEAR_JAX_CACHE``.
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


__all__ = ["enable_compilation_cache", "jax", "jnp"]

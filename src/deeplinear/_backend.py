"""JAX, configured once for the whole package: float64 everywhere.

Every module that computes with JAX imports it from here, so x64 is on before the first array
is made. An optional persistent compilation cache is enabled from ``DEEPLINEAR_JAX_CACHE``.
"""

import os

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)


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

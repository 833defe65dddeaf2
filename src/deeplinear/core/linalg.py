"""LAPACK-backed linear algebra that cannot deadlock under ``vmap``.

jaxlib's CPU LAPACK kernels split a batch of matrices onto XLA's intra-op thread pool and block
until it is done; two such kernels side by side on that pool deadlock (``_backend``). Inside the
compiled loops every call goes through these wrappers, which give LAPACK one matrix per call
(``_backend.one_matrix_at_a_time``). Same signatures as ``jnp.linalg`` for what the methods use.
"""

from __future__ import annotations

from functools import partial

from deeplinear.core.backend import jax, jnp, one_matrix_at_a_time


def eigh(a):
    return one_matrix_at_a_time(jnp.linalg.eigh)(a)


def svd(a, full_matrices: bool = True, compute_uv: bool = True):
    return one_matrix_at_a_time(
        partial(jnp.linalg.svd, full_matrices=full_matrices, compute_uv=compute_uv)
    )(a)


def solve(a, b):
    return one_matrix_at_a_time(jnp.linalg.solve)(a, b)


def qr(a):
    return one_matrix_at_a_time(jnp.linalg.qr)(a)


def lstsq(a, b, rcond=None):
    return one_matrix_at_a_time(partial(jnp.linalg.lstsq, rcond=rcond))(a, b)


def solve_triangular(a, b, lower: bool = False):
    return one_matrix_at_a_time(partial(jax.scipy.linalg.solve_triangular, lower=lower))(a, b)

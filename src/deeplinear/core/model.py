"""The deep linear network: weights (W1, …, WL), W1 on the output side, Ŷ = W1 W2 ⋯ WL X."""

from __future__ import annotations

from functools import reduce

from deeplinear.core.backend import jax, jnp


def end_to_end(weights) -> jax.Array:
    """The product W1 W2 ⋯ WL (output × input)."""
    return reduce(jnp.matmul, weights)


def gradient_norm(grads) -> jax.Array:
    """sqrt of the sum of squared gradient entries over all layers (the notebook's magnitude)."""
    return jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree_util.tree_leaves(grads)))


def partial_products(weights) -> tuple[list, list]:
    """``lefts[i] = W1 ⋯ W_{i-1}`` and ``rights[i] = W_{i+1} ⋯ W_L`` (None for an empty product).

    The gradient of f(W1 ⋯ WL) with respect to W_i is ``leftsᵢᵀ ∇_W f rightsᵢᵀ``.
    """
    depth = len(weights)
    lefts: list = [None] * depth
    rights: list = [None] * depth
    for i in range(1, depth):
        lefts[i] = weights[0] if i == 1 else lefts[i - 1] @ weights[i - 1]
    for i in range(depth - 2, -1, -1):
        rights[i] = weights[-1] if i == depth - 2 else weights[i + 1] @ rights[i + 1]
    return lefts, rights


def tree_add(a, b, scale=1.0):
    return jax.tree_util.tree_map(lambda x, y: x + scale * y, a, b)

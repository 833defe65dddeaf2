"""The gauge of a deep linear net: W_j G, G⁻¹ W_{j+1} leave the product unchanged, so a
Gauss-Newton step is made minimum-norm by removing its component along the gauge directions
T(G) (δW_j = W_j G_j, δW_{j+1} = −G_j W_{j+1} at each junction j)."""

from __future__ import annotations

from deeplinear.core import linalg
from deeplinear.core.backend import jax, jnp
from deeplinear.core.model import tree_add
from deeplinear.methods.cost import EIGH


def _gauge_map(weights, G):
    """The gauge direction T(G): δW_j += W_j G_j, δW_{j+1} −= G_j W_{j+1} at each junction j."""
    delta = [jnp.zeros_like(w) for w in weights]
    for j, g in enumerate(G):
        delta[j] = delta[j] + weights[j] @ g
        delta[j + 1] = delta[j + 1] - g @ weights[j + 1]
    return tuple(delta)


def _gauge_adjoint(weights, delta):
    """Tᵀ δ: W_jᵀ δ_j − δ_{j+1} W_{j+1}ᵀ at each junction."""
    return tuple(
        weights[j].T @ delta[j] - delta[j + 1] @ weights[j + 1].T for j in range(len(weights) - 1)
    )


def remove_gauge(weights, delta):
    """δ minus its orthogonal projection on the gauge directions {T(G)}.

    Solves TᵀT G = Tᵀδ: for depth 2 the Sylvester equation W1ᵀW1 G + G W2W2ᵀ = Tᵀδ in the
    eigenbases of the two Grams; deeper, by CG (lineax) on the block-tridiagonal TᵀT.
    """
    import lineax as lx  # imported when used: it costs a fifth of a second at start-up

    rhs = _gauge_adjoint(weights, delta)
    if len(weights) == 2:
        W1, W2 = weights
        a, P = linalg.eigh(W1.T @ W1)
        b, Q = linalg.eigh(W2 @ W2.T)
        G = (P @ ((P.T @ rhs[0] @ Q) / (a[:, None] + b[None, :])) @ Q.T,)
    else:
        structure = jax.eval_shape(lambda: rhs)
        normal = lx.FunctionLinearOperator(
            lambda g: _gauge_adjoint(weights, _gauge_map(weights, g)),
            structure,
            lx.positive_semidefinite_tag,
        )
        G = lx.linear_solve(
            normal, rhs, lx.CG(rtol=1e-12, atol=0.0, max_steps=200), throw=False
        ).value
    return tree_add(delta, _gauge_map(weights, G), -1.0)


def gauge_flops(shapes) -> float:
    """Removing the gauge component: two eigendecompositions and products per junction."""
    hidden = [b for _, b in shapes[:-1]]
    return sum(
        EIGH(h) * 2 + 4 * h * h * (a + b) for h, (a, _), (_, b) in zip(hidden, shapes, shapes[1:])
    )

"""What a run's iterates look like, beyond the loss.

Along a run (``Probe``, measured inside the compiled loop at every record): how much of each
singular mode of the target the end-to-end map has learned, ``u_iᵀ W v_i / s_i`` (1 = learned),
the extreme singular values of each layer, and the layer imbalance ``‖W_iᵀW_i − W_{i+1}W_{i+1}ᵀ‖_F``
(conserved by gradient flow). At checkpoints (``gauss_newton_spectrum``, on the host): the
spectrum of the Gauss-Newton matrix ``2 JᵀJ`` of the reduced residual — its rank, the nullity the
gauge explains, its smallest non-zero and largest eigenvalues, hence the local condition number
and the largest stable GD step ``2/λ_max``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import NamedTuple

import numpy as np
import pyarrow as pa
from jax.flatten_util import ravel_pytree

from ._backend import jax, jnp, one_matrix_at_a_time
from .model import end_to_end

_singular_values = one_matrix_at_a_time(lambda w: jnp.linalg.svd(w, compute_uv=False))


def _layer_singular_values(w):
    """σ(w), largest first, without a batched LAPACK call (``one_matrix_at_a_time``); NaN for a
    layer with non-finite entries (a diverged run), which LAPACK is never given."""
    finite = jnp.all(jnp.isfinite(w))
    return jnp.where(finite, _singular_values(jnp.where(finite, w, 0.0)), jnp.nan)


class Probe(NamedTuple):
    """The target's singular modes, A = U diag(s) Vᵀ; measures an iterate (a pytree argument)."""

    U: jax.Array
    s: jax.Array
    V: jax.Array

    # what ``measure`` adds to each record: one value per layer, layer pair or mode (read-only:
    # a NamedTuple takes no ClassVar)
    columns = MappingProxyType(
        {
            name: pa.list_(pa.float64())
            for name in ("imbalance", "layer_sigma_max", "layer_sigma_min", "mode_learned")
        }
    )

    @classmethod
    def for_problem(cls, problem) -> Probe:
        U, s, V = problem.modes()
        return cls(jnp.asarray(U), jnp.asarray(s), jnp.asarray(V))

    def measure(self, weights) -> dict:
        W = end_to_end(weights)
        learned = jnp.einsum("ir,ij,jr->r", self.U, W, self.V) / self.s
        sigmas = [_layer_singular_values(w) for w in weights]
        imbalance = [jnp.linalg.norm(a.T @ a - b @ b.T) for a, b in zip(weights[:-1], weights[1:])]
        return {
            "mode_learned": learned,
            "layer_sigma_min": jnp.stack([x[-1] for x in sigmas]),
            "layer_sigma_max": jnp.stack([x[0] for x in sigmas]),
            "imbalance": jnp.stack(imbalance),
        }


@dataclass(frozen=True)
class GNSpectrum:
    """The Gauss-Newton matrix ``2 JᵀJ`` at one iterate."""

    step: int
    parameters: int
    rank: int
    gauge_dimension: int  # Σ h_i², the nullity the gauge symmetry explains
    lambda_min: float  # smallest non-zero eigenvalue
    lambda_max: float
    eigenvalues: np.ndarray  # non-zero eigenvalues, largest first

    @property
    def nullity(self) -> int:
        return self.parameters - self.rank

    @property
    def condition_number(self) -> float:
        return self.lambda_max / self.lambda_min

    @property
    def max_stable_learning_rate(self) -> float:
        """GD on f is locally stable for η < 2/λ_max (the Hessian is ``2JᵀJ`` at zero residual)."""
        return 2.0 / self.lambda_max if self.lambda_max > 0 else np.inf

    def row(self) -> dict:
        out = asdict(self)
        out["eigenvalues"] = self.eigenvalues.tolist()
        out |= {
            "nullity": self.nullity,
            "condition_number": self.condition_number,
            "max_stable_learning_rate": self.max_stable_learning_rate,
        }
        return out


def gauss_newton_spectrum(weights, objective, step: int = 0) -> GNSpectrum:
    """The spectrum of ``2 JᵀJ`` for the reduced residual at ``weights`` (dense; small p)."""
    weights = tuple(jnp.asarray(w) for w in weights)
    flat, unravel = ravel_pytree(weights)
    J = np.asarray(jax.jacfwd(lambda v: objective.residual(unravel(v)).ravel())(flat))
    sv = np.linalg.svd(J, compute_uv=False)
    rank = int(np.sum(sv > max(J.shape) * np.finfo(np.float64).eps * sv[0])) if sv[0] > 0 else 0
    eig = 2.0 * sv[:rank] ** 2
    gauge = sum(w.shape[1] ** 2 for w in weights[:-1])
    if rank == 0:  # J = 0 (e.g. every layer zero): no non-zero eigenvalue, no stable-step bound
        return GNSpectrum(int(step), flat.size, 0, gauge, np.nan, 0.0, eig)
    return GNSpectrum(int(step), flat.size, rank, gauge, float(eig[-1]), float(eig[0]), eig)

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
from functools import reduce
from types import MappingProxyType
from typing import NamedTuple

import numpy as np
import pyarrow as pa
from jax.flatten_util import ravel_pytree

from deeplinear.core import linalg
from deeplinear.core.backend import jax, jnp, one_matrix_at_a_time
from deeplinear.core.model import end_to_end

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
        return {"mode_learned": learned, **_layer_columns(weights)}


def _r_factor(A):
    """R of the thin QR of A (what ‖A Bᵀ‖ and σ(A Bᵀ) depend on), without a batched LAPACK
    call; zero for non-finite input (a diverged run), which LAPACK is never given."""
    finite = jnp.all(jnp.isfinite(A))
    return jnp.where(finite, linalg.qr(jnp.where(finite, A, 0.0))[1], jnp.nan)


def effective_rank(sigma) -> jax.Array:
    """exp(H(σ/Σσ)), the entropy of the normalised singular values (Roy & Vetterli 2007), as
    Arora, Cohen, Hu & Luo (2019) plot it: 1 for rank one, r for r equal values."""
    p = sigma / jnp.sum(sigma)
    return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)))


def _layer_columns(weights) -> dict:
    sigmas = [_layer_singular_values(w) for w in weights]
    imbalance = [jnp.linalg.norm(a.T @ a - b @ b.T) for a, b in zip(weights[:-1], weights[1:])]
    return {
        "layer_sigma_min": jnp.stack([x[-1] for x in sigmas]),
        "layer_sigma_max": jnp.stack([x[0] for x in sigmas]),
        "imbalance": jnp.stack(imbalance),
    }


class RecoveryProbe(NamedTuple):
    """For a problem seen through measurements (``measured_problem``), with its truth
    M = U diag(s) Vᵀ: how far the end-to-end map W = left · W_L (left = W1 ⋯ W_{L−1}) is from M,
    never forming W (n1 × n2 may be 10⁸ entries).

    ``recovery_error`` = ‖W − M‖_F / ‖M‖_F = ‖R_a R_bᵀ‖_F / ‖s‖ with R_a, R_b the QR factors of
    [left, −U diag(s)] and [W_Lᵀ, V] (accurate to a few units of round-off relative to ‖M‖: no
    cancellation as in ‖W‖² − 2⟨W, M⟩ + ‖M‖²); ``singular_values`` of W (the leading
    ``len(s_shown)``, from the small product of the factors' R's); their ``effective_rank``;
    ``mode_learned`` u_iᵀ W v_i / s_i; the layers' extreme singular values and imbalance.
    """

    U: jax.Array
    s: jax.Array
    V: jax.Array
    shown: jax.Array  # zeros of the length of the singular values recorded (static by shape)

    columns = MappingProxyType(
        {
            "recovery_error": pa.float64(),
            "effective_rank": pa.float64(),
            "singular_values": pa.list_(pa.float64()),
            **{
                name: pa.list_(pa.float64())
                for name in ("imbalance", "layer_sigma_max", "layer_sigma_min", "mode_learned")
            },
        }
    )

    @classmethod
    def for_problem(cls, problem, widths) -> RecoveryProbe:
        """The probe of a ``MeasuredProblem`` with its truth, for a network of ``widths``."""
        U, s, V = problem.modes()
        shown = min(min(widths), max(2 * len(s), 10))
        return cls(jnp.asarray(U), jnp.asarray(s), jnp.asarray(V), jnp.zeros(shown))

    def measure(self, weights) -> dict:
        left = reduce(jnp.matmul, weights[:-1])
        right = weights[-1]
        a = _r_factor(jnp.concatenate([left, -self.U * self.s], axis=1))
        b = _r_factor(jnp.concatenate([right.T, self.V], axis=1))
        error = jnp.linalg.norm(a @ b.T) / jnp.linalg.norm(self.s)
        # the leading d columns of the R of [left, ·] are the R of left (and of rightᵀ): σ(W)
        # from those, without two more QRs
        d = left.shape[1]
        r_left, r_right = a[: min(left.shape[0], d), :d], b[: min(right.shape[1], d), :d]
        sigma = _core_singular_values(r_left, r_right)
        # u_iᵀ left · right v_i through the small products (never the n1 × n2 W)
        learned = jnp.einsum("rd,dr->r", self.U.T @ left, right @ self.V) / self.s
        if len(weights) == 2:  # the layers are left and right: their R's hold σ and the Grams
            layers = _two_layer_columns(r_left, r_right)
        else:
            layers = _layer_columns(weights)
        return {
            "recovery_error": error,
            "effective_rank": effective_rank(sigma),
            "singular_values": _first(sigma, self.shown.shape[0]),
            "mode_learned": learned,
            **layers,
        }


def _two_layer_columns(r_left, r_right) -> dict:
    """``_layer_columns`` of (W1, W2) from the R factors of W1 and W2ᵀ: σ(W1) = σ(R1),
    σ(W2) = σ(R2), W1ᵀW1 − W2W2ᵀ = R1ᵀR1 − R2ᵀR2 (d × d: no SVD of an n × d layer)."""
    sigmas = [_layer_singular_values(r) for r in (r_left, r_right)]
    return {
        "layer_sigma_min": jnp.stack([x[-1] for x in sigmas]),
        "layer_sigma_max": jnp.stack([x[0] for x in sigmas]),
        "imbalance": jnp.linalg.norm(r_left.T @ r_left - r_right.T @ r_right)[None],
    }


def product_singular_values(left, right):
    """σ(left · right), largest first, from the R factors of two thin QRs: never the n1 × n2
    product (NaN for non-finite input)."""
    return _core_singular_values(_r_factor(left), _r_factor(right.T))


def _core_singular_values(r_left, r_right):
    """σ(left · right), largest first, from the R factors of left and rightᵀ: σ(R_left R_rightᵀ)
    (small: d × d)."""
    core = r_left @ r_right.T
    finite = jnp.all(jnp.isfinite(core))
    return jnp.where(finite, _singular_values(jnp.where(finite, core, 0.0)), jnp.nan)


def _first(sigma, count: int):
    """The leading ``count`` values, NaN-padded if there are fewer."""
    if sigma.shape[0] >= count:
        return sigma[:count]
    return jnp.concatenate([sigma, jnp.full(count - sigma.shape[0], jnp.nan)])


class Probes(NamedTuple):
    """Several probes measured together (their columns must not clash)."""

    members: tuple

    @property
    def columns(self):
        out = {}
        for probe in self.members:
            out.update(probe.columns)
        return MappingProxyType(out)

    def measure(self, weights) -> dict:
        out = {}
        for probe in self.members:
            out.update(probe.measure(weights))
        return out


def combine(*probes):
    """One probe measuring every given probe (None entries dropped; None if none is left)."""
    kept = tuple(p for p in probes if p is not None)
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else Probes(kept)


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


MAX_SPECTRUM_PARAMETERS = 3000  # p: dense Gauss-Newton spectra of larger models are skipped
# r p² for a residual of r entries: the dense J's SVD costs ≈ 4 r p² (and its Jacobian r p);
# 10¹⁰ is ≈ 0.4 s on 2 cores (a 20 000 × 2 500 J took 5 s, and its jacfwd 4 s more, per checkpoint)
MAX_SPECTRUM_WORK = 1e10


def spectrum_fits(parameters: int, residuals: int) -> bool:
    """Whether ``gauss_newton_spectrum`` is computed for p = ``parameters`` and a residual of
    ``residuals`` entries (m for a measured objective): p ≤ 3000 and r p² ≤ 10¹⁰."""
    return parameters <= MAX_SPECTRUM_PARAMETERS and residuals * parameters**2 <= MAX_SPECTRUM_WORK


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

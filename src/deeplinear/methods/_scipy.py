"""SciPy's ``least_squares`` as an out-of-loop reference with the same result columns.

``scipy-lm`` is MINPACK's Levenberg-Marquardt, ``scipy-trf`` the trust-region reflective method;
both get the exact Jacobian of the reduced residual from JAX (``jacfwd``, compiled once).
MINPACK refuses fewer residuals than parameters, which the reduced residual has (60 < 96 at the
notebook's size): the residual is padded with zero rows, which changes neither the problem nor
the minimizer. Rows are recorded at every residual evaluation, so ``step`` counts evaluations.
There is no learning rate (the one given is ignored). Compare end-to-end maps, not factors: the
factors are only defined up to the gauge.
"""

from __future__ import annotations

import abc
import dataclasses
import time

import numpy as np
from jax.flatten_util import ravel_pytree

from deeplinear.core.backend import jax, jnp
from deeplinear.core.model import gradient_norm
from deeplinear.errors import UsageError
from deeplinear.methods._base import AbstractMethod
from deeplinear.methods.cost import SVD, loss_flops, parameters, residual_rows
from deeplinear.store.results import Curve


@dataclasses.dataclass(frozen=True)
class AbstractScipyMethod(AbstractMethod):
    """Runs outside the compiled loop: ``runner.run`` calls ``run_one`` instead of ``step``."""

    in_loop = False

    @property
    @abc.abstractmethod
    def scipy_method(self) -> str:
        """``least_squares(method=…)`` (a class attribute of each final method)."""

    def init(self, weights, objective, learning_rate):
        raise UsageError(f"{self.name} runs outside the compiled loop: use runner.run")

    def step(self, weights, state, objective, loss, grads):
        raise UsageError(f"{self.name} runs outside the compiled loop: use runner.run")

    def memory_values(self, shapes, k):
        # the dense Jacobian (MINPACK pads it to at least p rows) and its factorization
        p = sum(a * b for a, b in shapes)
        rows = residual_rows(shapes, k)
        rows = max(rows, p) if self.scipy_method == "lm" else rows
        return 4 * rows * p + min(rows, p) ** 2 + 12 * p

    def flops(self, shapes, k):
        # per evaluation: the gradient, a dense Jacobian (p JVPs) and its factorization
        F, p = loss_flops(shapes, k), parameters(shapes)
        return 3 * F + 2 * p * F + SVD(residual_rows(shapes, k), p), 0.0

    def passes(self, depth):
        return 25.0  # each evaluation a call from Python into compiled code

    def run_one(self, objective, weights, steps, record_every=1, probe=None, keep_weights=False):
        """One run: (curve, final weights, seconds), a row every ``record_every`` evaluations.

        ``probe`` and ``keep_weights`` add the same extras as the compiled loop records.
        """
        from scipy.optimize import least_squares

        weights = tuple(jnp.asarray(w, dtype=jnp.float64) for w in weights)
        flat, unravel = ravel_pytree(weights)
        rows = jax.eval_shape(objective.residual, weights).size
        pad = max(0, flat.size - rows) if self.scipy_method == "lm" else 0

        def residual(v):
            r = objective.residual(unravel(v)).ravel()
            return jnp.concatenate([r, jnp.zeros(pad)]) if pad else r

        fun = jax.jit(residual)
        jac = jax.jit(jax.jacfwd(residual))
        value_grad = jax.jit(jax.value_and_grad(lambda v: objective.loss(unravel(v))))
        notebook = jax.jit(lambda v: objective.notebook_loss(unravel(v)))
        fun(flat).block_until_ready(), jac(flat).block_until_ready()  # compile outside timing
        value_grad(flat)
        records, start = [], time.perf_counter()

        def tracked(v):
            out = np.asarray(fun(v))
            records.append((np.array(v), time.perf_counter() - start))
            return out

        def evaluate(v):
            loss, grad = value_grad(v)
            return float(loss), float(gradient_norm(unravel(grad))), float(notebook(v))

        records.append((np.asarray(flat), 0.0))
        try:
            result = least_squares(
                tracked,
                np.asarray(flat),
                jac=lambda v: np.asarray(jac(v)),
                method=self.scipy_method,
                max_nfev=steps,
                xtol=1e-15,
                ftol=1e-15,
                gtol=1e-15,
            )
            final = result.x
        except ValueError as error:  # e.g. MINPACK's size checks
            raise UsageError(f"{self.name}: scipy refused the problem ({error})") from None
        kept = records[:: max(1, record_every)]
        metrics = np.array([evaluate(v) for v, _ in kept])
        extras = {}
        if probe is not None or keep_weights:
            layers = [unravel(jnp.asarray(v)) for v, _ in kept]
            if probe is not None:
                measured = [probe.measure(w) for w in layers]
                extras = {k: np.stack([np.asarray(m[k]) for m in measured]) for k in measured[0]}
            if keep_weights:
                extras["weights"] = tuple(np.stack(ws) for ws in zip(*layers))
        steps_kept = np.arange(len(records))[:: max(1, record_every)]
        seconds = np.array([t for _, t in kept])
        curve = Curve(steps_kept, metrics[:, 0], metrics[:, 1], metrics[:, 2], seconds, extras)
        return curve, unravel(jnp.asarray(final)), records[-1][1]


@dataclasses.dataclass(frozen=True)
class ScipyLM(AbstractScipyMethod):
    name = "scipy-lm"
    penalized = False  # a residual model or closed form: no ratings penalty
    label = "scipy-LM"
    description = "scipy.optimize.least_squares(method='lm'), MINPACK, out of loop (lr ignored)"
    reference = "Moré 1978 (MINPACK); scipy.optimize.least_squares"
    scipy_method = "lm"


@dataclasses.dataclass(frozen=True)
class ScipyTRF(AbstractScipyMethod):
    name = "scipy-trf"
    penalized = False  # a residual model or closed form: no ratings penalty
    label = "scipy-TRF"
    description = "scipy.optimize.least_squares(method='trf'), out of loop (lr ignored)"
    reference = "Branch, Coleman & Li 1999; scipy.optimize.least_squares"
    scipy_method = "trf"

"""Peers as methods: optimistix's least-squares solvers inside our compiled loop.

Each step is one ``step`` of the optimistix solver on the reduced residual ``W Lᵀ − T``
(``fn(weights, objective)``). Its state carries a closure-converted Jacobian operator, which is
not an array; the loop carries only the state's arrays and the static rest is rebuilt, identical,
from ``init`` inside each step (XLA removes the unused work). The solver's ``result`` code is
recorded as ``optimistix_result``: its position in ``RESULT_NAMES``, optimistix's own order
(0 = successful, 1 = max_steps_reached, …; −1 for a code this list does not name). These
solvers have no learning rate: the one given is ignored (use 1).

``optimistix-gn`` and ``optimistix-dogleg`` default to ``lineax.SVD()``: the Jacobian is rank
deficient by the gauge, and a solver that assumes full rank may fail on it.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar

import pyarrow as pa

from deeplinear.core.backend import jax, jnp
from deeplinear.methods._base import AbstractMethod, choice
from deeplinear.methods.cost import SVD, loss_flops, parameters, residual_rows

LINEAR_SOLVERS = ("svd", "qr", "auto")
# the members of ``optimistix.RESULTS`` in its order: the recorded code is the position here
RESULT_NAMES = (
    "successful",
    "max_steps_reached",
    "singular",
    "breakdown",
    "stagnation",
    "conlim",
    "nonfinite_input",
    "nonlinear_max_steps_reached",
    "nonlinear_divergence",
    "nonfinite",
)


def result_code(result) -> jax.Array:
    """The position of ``result`` (an ``optimistix.RESULTS`` member) in ``RESULT_NAMES``, as a
    float64 (−1 if none), compared through optimistix's public members only."""
    import optimistix as optx

    code = jnp.asarray(-1.0)
    for index, name in enumerate(RESULT_NAMES):
        if hasattr(optx.RESULTS, name):
            code = jnp.where(result == getattr(optx.RESULTS, name), float(index), code)
    return code


def linear_solver(name: str):
    """The lineax solver called ``name`` (imported on use: optimistix is slow to import)."""
    import lineax as lx

    return {"svd": lx.SVD, "qr": lx.QR}.get(name, lambda: lx.AutoLinearSolver(well_posed=None))()


def _residual(weights, objective):
    return objective.residual(weights), None


@dataclasses.dataclass(frozen=True)
class AbstractOptimistixMethod(AbstractMethod):
    """One step of the optimistix least-squares solver ``solver_name`` per step."""

    linear_solver: str = choice("svd", *LINEAR_SOLVERS)

    @property
    @abc.abstractmethod
    def solver_name(self) -> str:
        """The optimistix solver class (a class attribute of each final method)."""

    columns: ClassVar[dict[str, pa.DataType]] = {"optimistix_result": pa.float64()}

    def flops(self, shapes, k):
        # the gradient, a dense Jacobian (p JVPs) and its factorization
        F, p = loss_flops(shapes, k), parameters(shapes)
        return 3 * F + 2 * p * F + SVD(residual_rows(shapes, k), p), 0.0

    def memory_values(self, shapes, k):
        # the dense Jacobian of the reduced residual (in the state) and its factorization
        p = sum(a * b for a, b in shapes)
        rows = residual_rows(shapes, k)
        return 5 * rows * p + min(rows, p) ** 2 + 12 * p

    def passes(self, depth):
        return 4.0

    def solver(self):
        import optimistix as optx

        solver = getattr(optx, self.solver_name)
        return solver(rtol=0.0, atol=0.0, linear_solver=linear_solver(self.linear_solver))

    def _full_state(self, weights, objective):
        structure = jax.eval_shape(lambda: objective.residual(weights))
        return self.solver().init(_residual, weights, objective, {}, structure, None, frozenset())

    def init(self, weights, objective, learning_rate):
        import equinox as eqx

        return eqx.partition(self._full_state(weights, objective), eqx.is_array)[0]

    def step(self, weights, state, objective, loss, grads):
        import equinox as eqx

        static = eqx.partition(self._full_state(weights, objective), eqx.is_array)[1]
        full = eqx.combine(state, static)
        weights, full, _ = self.solver().step(_residual, weights, objective, {}, full, frozenset())
        return weights, eqx.partition(full, eqx.is_array)[0]

    def record(self, state) -> dict:
        return {"optimistix_result": result_code(state.result)}


@dataclasses.dataclass(frozen=True)
class OptimistixLM(AbstractOptimistixMethod):
    linear_solver: str = choice("qr", *LINEAR_SOLVERS)

    name = "optimistix-lm"
    penalized = False  # a residual model or closed form: no ratings penalty
    label = "optx-LM"
    description = "optimistix.LevenbergMarquardt, one solver step per step (lr ignored)"
    reference = "optimistix (Rader, Lyons & Kidger 2024)"

    solver_name = "LevenbergMarquardt"


@dataclasses.dataclass(frozen=True)
class OptimistixGN(AbstractOptimistixMethod):
    name = "optimistix-gn"
    penalized = False  # a residual model or closed form: no ratings penalty
    label = "optx-GN"
    description = "optimistix.GaussNewton with lineax.SVD() (lr ignored)"
    reference = "optimistix (Rader, Lyons & Kidger 2024)"

    solver_name = "GaussNewton"


@dataclasses.dataclass(frozen=True)
class OptimistixDogleg(AbstractOptimistixMethod):
    name = "optimistix-dogleg"
    penalized = False  # a residual model or closed form: no ratings penalty
    label = "optx-Dogleg"
    description = "optimistix.Dogleg trust region with lineax.SVD() (lr ignored)"
    reference = "optimistix (Rader, Lyons & Kidger 2024); Nocedal & Wright 2006, §4.1"

    solver_name = "Dogleg"

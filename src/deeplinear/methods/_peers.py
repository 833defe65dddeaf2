"""Peers as methods: optimistix's least-squares solvers inside our compiled loop.

Each step is one ``step`` of the optimistix solver on the reduced residual ``W Lᵀ − T``
(``fn(weights, objective)``). Its state carries a closure-converted Jacobian operator, which is
not an array; the loop carries only the state's arrays and the static rest is rebuilt, identical,
from ``init`` inside each step (XLA removes the unused work). The solver's ``result`` code is
recorded as ``optimistix_result`` (0 = successful). These solvers have no learning rate: the one
given is ignored (use 1).

``optimistix-gn`` and ``optimistix-dogleg`` default to ``lineax.SVD()``: the Jacobian is rank
deficient by the gauge, and a solver that assumes full rank may fail on it.
"""

from __future__ import annotations

import dataclasses

from .._backend import jax, jnp
from ._base import AbstractMethod, choice

LINEAR_SOLVERS = ("svd", "qr", "auto")


def linear_solver(name: str):
    """The lineax solver called ``name`` (imported on use: optimistix is slow to import)."""
    import lineax as lx

    return {"svd": lx.SVD, "qr": lx.QR}.get(name, lambda: lx.AutoLinearSolver(well_posed=None))()


def _residual(weights, objective):
    return objective.residual(weights), None


@dataclasses.dataclass(frozen=True)
class AbstractOptimistixMethod(AbstractMethod):
    linear_solver: str = choice("svd", *LINEAR_SOLVERS)

    solver_name = ""  # the optimistix class

    def memory_values(self, shapes, k):
        # the dense Jacobian of the reduced residual (in the state) and its factorization
        p = sum(a * b for a, b in shapes)
        rows = shapes[0][0] * (shapes[-1][1] if k is None else k)
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
        return {"optimistix_result": jnp.asarray(state.result._value, dtype=jnp.float64)}


@dataclasses.dataclass(frozen=True)
class OptimistixLM(AbstractOptimistixMethod):
    linear_solver: str = choice("qr", *LINEAR_SOLVERS)

    name = "optimistix-lm"
    label = "optx-LM"
    description = "optimistix.LevenbergMarquardt, one solver step per step (lr ignored)"
    reference = "optimistix (Rader, Lyons & Kidger 2024)"

    solver_name = "LevenbergMarquardt"


@dataclasses.dataclass(frozen=True)
class OptimistixGN(AbstractOptimistixMethod):
    name = "optimistix-gn"
    label = "optx-GN"
    description = "optimistix.GaussNewton with lineax.SVD() (lr ignored)"
    reference = "optimistix (Rader, Lyons & Kidger 2024)"

    solver_name = "GaussNewton"


@dataclasses.dataclass(frozen=True)
class OptimistixDogleg(AbstractOptimistixMethod):
    name = "optimistix-dogleg"
    label = "optx-Dogleg"
    description = "optimistix.Dogleg trust region with lineax.SVD() (lr ignored)"
    reference = "optimistix (Rader, Lyons & Kidger 2024); Nocedal & Wright 2006, §4.1"

    solver_name = "Dogleg"

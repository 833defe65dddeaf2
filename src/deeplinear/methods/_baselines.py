"""Convex and spectral baselines for completion and sensing, run outside the compiled loop.

``nuclear-norm`` (Candès & Recht 2009; Arora, Cohen, Hu & Luo 2019 solve it with cvxpy):

    penalty λ = 0:  min ‖W‖_*  subject to  ⟨A_k, W⟩ = y_k  (k = 1..m, noise-free data)
    penalty λ > 0:  min ½ Σ_k w_k (⟨A_k, W⟩ − y_k)² + λ ‖W‖_*       (label noise)

posed in cvxpy (which solves the semidefinite form min ½(tr P + tr Q), [[P, W], [Wᵀ, Q]] ⪰ 0) with
SCS (eps_abs = eps_rel = ``tolerance``) or Clarabel (tol_gap_abs = tol_gap_rel = tol_feas =
``tolerance``). One step is the whole solve: row 0 holds the initial weights, row 1 the solution.

``soft-impute`` (Mazumder, Hastie & Tibshirani 2010), completion only:

    Z ← S_λ(P_Ω(M) + P_Ω⊥(Z)),   S_λ(X) = U (Σ − λ)₊ Vᵀ for X = U Σ Vᵀ,

with X = P_Ω(M − Z) + Z applied as sparse + low rank (a dense X only for small matrices), its
top k + 1 singular triplets from ARPACK on that operator, the rank capped at the narrowest width
k, and λ on a geometric path from λ_max = σ₁(P_Ω(M)) (where Z = 0 is the fixed point) down to
``shrinkage``·λ_max, each λ warm-started from the last and iterated until
‖Z⁺ − Z‖_F ≤ ``tolerance``·‖Z⁺‖_F. One step is one iteration; it starts from the initial weights'
end-to-end map.

The weights handed back (and recorded) are the solution W = U diag(s) Vᵀ written in the network's
shapes as balanced factors, as init's 'balanced': W1 = U D E₁ᵀ, W_i = E_{i−1} D E_iᵀ,
W_L = E_{L−1} D Vᵀ with D = diag(s)^{1/L} and E_i the leading r coordinates of hidden width h_i
(zero where the width exceeds the rank r). A solution of rank above the narrowest width k keeps its
top k triplets; ``truncated_sigma`` records the largest one dropped, relative to σ₁. The loss and
gradient norm of each row are the objective's at these weights. The learning rate is ignored.
"""

from __future__ import annotations

import dataclasses
import time
from typing import ClassVar

import numpy as np
import pyarrow as pa

from deeplinear.core.backend import jax, jnp, one_blas_thread
from deeplinear.core.model import gradient_norm
from deeplinear.errors import UsageError
from deeplinear.methods._base import AbstractMethod, choice, integer, number
from deeplinear.methods.cost import EIGH, SVD, Measurements, loss_flops
from deeplinear.objectives.measurement import Completion, Sensing, is_measured
from deeplinear.store.results import Curve

# cvxpy's statuses as the ``solver_status`` column records them (NaN on row 0)
SOLVER_STATUS = {
    "optimal": 0,
    "optimal_inaccurate": 1,
    "user_limit": 2,  # the iteration limit
    "infeasible": 3,
    "infeasible_inaccurate": 4,
    "unbounded": 5,
    "unbounded_inaccurate": 6,
    "solver_error": 7,
}
MAX_SENSING_ENTRIES = 20_000_000  # m · n1 · n2 of a sensing operator cvxpy is asked to hold
DENSE_ENTRIES = 250_000  # soft-impute forms X densely (LAPACK SVD) up to this many entries
SCS_ITERATIONS = 500  # the FLOP model's SCS iterations per solve (150–425 measured at 1e-9)
CLARABEL_ITERATIONS = 30  # … and Clarabel's interior-point iterations


@dataclasses.dataclass(frozen=True)
class AbstractBaseline(AbstractMethod):
    """A method on measured problems that runs from Python: ``runner.run`` calls ``run_one``."""

    in_loop = False

    def init(self, weights, objective, learning_rate):
        raise UsageError(f"{self.name} runs outside the compiled loop: use runner.run")

    def step(self, weights, state, objective, loss, grads):
        raise UsageError(f"{self.name} runs outside the compiled loop: use runner.run")

    def passes(self, depth):
        return 25.0  # calls from Python into compiled code per recorded row


@dataclasses.dataclass(frozen=True)
class NuclearNorm(AbstractBaseline):
    name = "nuclear-norm"
    penalized = False  # a residual model or closed form: no ratings penalty
    label = "nuclear norm"
    description = (
        "min ‖W‖_* subject to the measurements (penalty λ > 0: ½‖𝒜(W) − y‖² + λ‖W‖_*), "
        "cvxpy with SCS or Clarabel; one step = the solve, out of loop (lr ignored)"
    )
    reference = "Candès & Recht 2009; Arora, Cohen, Hu & Luo 2019 (cvxpy, SCS)"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "solver_status": pa.float64(),
        "solver_iterations": pa.float64(),
        "solve_seconds": pa.float64(),
        "solution_rank": pa.float64(),
        "truncated_sigma": pa.float64(),
    }

    penalty: float = number(0.0, 0.0)
    solver: str = choice("SCS", "SCS", "CLARABEL")
    tolerance: float = number(1e-9, 0.0, 1e-2, low_open=True)
    max_iterations: int = integer(100_000, 1, 10**8)
    rank_tolerance: float = number(1e-6, 0.0, 1.0, low_open=True)

    def supports(self, objective, shapes=None):

        if not is_measured(objective):
            return "it needs a completion or sensing problem (problem.kind)"
        if isinstance(objective, Sensing):
            entries = int(np.prod(objective.operators.shape))
            if entries > MAX_SENSING_ENTRIES:
                return (
                    f"the sensing operator has {entries:.3g} entries, more than cvxpy is asked "
                    f"to hold ({MAX_SENSING_ENTRIES:.0e}): lower problem.measurements or the size"
                )
        return None

    def updates(self, steps):
        return 1  # one solve, whatever the steps

    def memory_values(self, shapes, k):
        n1, n2 = shapes[0][0], shapes[-1][1]
        m = k.count if isinstance(k, Measurements) else n1 * n2
        cone = (n1 + n2) * (n1 + n2 + 1) // 2  # the semidefinite block, vectorized
        operator = 3 * m * n1 * n2 if isinstance(k, Measurements) and k.dense else 20 * m
        solver = cone**2 if self.solver == "CLARABEL" else 10 * (n1 + n2) ** 2
        return 10 * cone + operator + solver + 3 * n1 * n2

    def flops(self, shapes, k):
        # the solve: SCS projects onto the PSD cone (an eigendecomposition of order n1 + n2)
        # per iteration; Clarabel factorizes a KKT system with the dense cone block
        n1, n2 = shapes[0][0], shapes[-1][1]
        m = k.count if isinstance(k, Measurements) else n1 * n2
        apply = 4 * m * (n1 * n2 if isinstance(k, Measurements) and k.dense else 1)
        if self.solver == "CLARABEL":
            cone = (n1 + n2) * (n1 + n2 + 1) // 2
            solve = CLARABEL_ITERATIONS * (cone**3 / 3 + apply)
        else:
            solve = SCS_ITERATIONS * (EIGH(n1 + n2) + apply)
        return solve + SVD(n1, n2) + 3 * loss_flops(shapes, k), 0.0

    def run_one(self, objective, weights, steps, record_every=1, probe=None, keep_weights=False):
        """(curve, final weights, seconds): row 0 the initial weights, row 1 the solution."""
        with one_blas_thread():  # a 100² SVD: 4.6 ms; 0.7 s on two beside JAX
            return self._solve(objective, weights, probe, keep_weights)

    def _solve(self, objective, weights, probe, keep_weights):
        try:
            import cvxpy as cp
        except ImportError:  # pragma: no cover - a dependency
            raise UsageError("nuclear-norm needs cvxpy: pip install cvxpy") from None
        reason = self.supports(objective)
        if reason is not None:
            raise UsageError(f"{self.name} cannot run on this problem: {reason}")
        widths = _widths(weights)
        n1, n2 = widths[0], widths[-1]
        rows = _Rows(objective, probe, keep_weights, self.columns)
        rows.add(0, weights, 0.0)

        start = time.perf_counter()
        X = cp.Variable((n1, n2))
        fitted, values, w = _affine(objective, X, cp)
        if self.penalty == 0:
            problem = cp.Problem(cp.Minimize(cp.normNuc(X)), [fitted == values])
        else:
            misfit = cp.sum_squares(cp.multiply(np.sqrt(w), fitted - values))
            problem = cp.Problem(cp.Minimize(0.5 * misfit + self.penalty * cp.normNuc(X)))
        if self.solver == "SCS":
            options = dict(eps_abs=self.tolerance, eps_rel=self.tolerance)
            options["max_iters"] = self.max_iterations
        else:
            options = dict(tol_gap_abs=self.tolerance, tol_gap_rel=self.tolerance)
            options |= dict(tol_feas=self.tolerance, max_iter=self.max_iterations)
        try:
            problem.solve(solver=self.solver, **options)
            status = problem.status
        except cp.SolverError:
            status = "solver_error"
        seconds = time.perf_counter() - start
        stats = problem.solver_stats if status != "solver_error" else None
        record = {
            "solver_status": float(SOLVER_STATUS.get(status, SOLVER_STATUS["solver_error"])),
            "solver_iterations": _number(getattr(stats, "num_iters", None)),
            "solve_seconds": _number(getattr(stats, "solve_time", None)),
        }
        if X.value is None:  # no solution: the row's loss is NaN (the runner's "diverged")
            nan = jax.tree_util.tree_map(lambda a: np.full(np.shape(a), np.nan), weights)
            rows.add(1, nan, seconds, **record, solution_rank=np.nan, truncated_sigma=np.nan)
            return rows.curve(), tuple(jnp.asarray(a) for a in weights), seconds
        U, s, Vt = np.linalg.svd(np.asarray(X.value, dtype=np.float64), full_matrices=False)
        k = min(widths)
        rank = int(np.sum(s > self.rank_tolerance * s[0])) if s[0] > 0 else 0
        dropped = s[k] / s[0] if k < s.size and s[0] > 0 else 0.0
        final = balanced_factors(U[:, :k], s[:k], Vt[:k].T, widths)
        rows.add(1, final, seconds, **record, solution_rank=rank, truncated_sigma=dropped)
        return rows.curve(), tuple(jnp.asarray(a) for a in final), seconds


@dataclasses.dataclass(frozen=True)
class SoftImpute(AbstractBaseline):
    name = "soft-impute"
    penalized = False  # a residual model or closed form: no ratings penalty
    label = "soft-impute"
    description = (
        "Z ← S_λ(P_Ω(M) + P_Ω⊥(Z)) on a geometric λ path to shrinkage·σ₁(P_Ω(M)), "
        "sparse + low-rank SVD, rank ≤ narrowest width; out of loop (lr ignored)"
    )
    reference = "Mazumder, Hastie & Tibshirani 2010"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "shrinkage": pa.float64(),
        "solution_rank": pa.float64(),
        "relative_change": pa.float64(),
        "truncated_sigma": pa.float64(),
    }

    shrinkage: float = number(1e-4, 0.0, 1.0, low_open=True)
    path: int = integer(10, 1, 1000)
    tolerance: float = number(1e-10, 0.0, 1.0, low_open=True)

    def supports(self, objective, shapes=None):

        if not isinstance(objective, Completion):
            return "soft-impute needs a completion problem (problem.kind = 'completion')"
        return None

    def memory_values(self, shapes, k):
        n1, n2 = shapes[0][0], shapes[-1][1]
        r = min(min(a, b) for a, b in shapes) + 1
        m = k.count if isinstance(k, Measurements) else n1 * n2
        dense = 3 * n1 * n2 if n1 * n2 <= DENSE_ENTRIES else 0
        return 8 * m + 8 * (n1 + n2) * r + dense

    def flops(self, shapes, k):
        # one iteration: the sparse residual, then the top r singular triplets of
        # sparse + low rank by Lanczos (≈ 2(2r + 10) products with X and Xᵀ), or a dense SVD
        n1, n2 = shapes[0][0], shapes[-1][1]
        r = min(min(a, b) for a, b in shapes) + 1
        m = k.count if isinstance(k, Measurements) else n1 * n2
        if n1 * n2 <= DENSE_ENTRIES or r >= min(n1, n2) // 2:
            svd = SVD(n1, n2) + 2 * n1 * n2 * r
        else:
            svd = 2 * (2 * r + 10) * (2 * m + 4 * (n1 + n2) * r) + 4 * (n1 + n2) * r * r
        return 2 * m * r + svd + 8 * (n1 + n2) * r * r, 0.0

    def run_one(self, objective, weights, steps, record_every=1, probe=None, keep_weights=False):
        """(curve, final weights, seconds): a row every ``record_every`` iterations and the last."""
        with one_blas_thread():
            return self._iterate(objective, weights, steps, record_every, probe, keep_weights)

    def _iterate(self, objective, weights, steps, record_every, probe, keep_weights):
        reason = self.supports(objective)
        if reason is not None:
            raise UsageError(f"{self.name} cannot run on this problem: {reason}")
        from scipy import sparse

        widths = _widths(weights)
        n1, n2, k = widths[0], widths[-1], min(widths)
        keep = np.asarray(objective.weights) > 0
        rows_, cols_ = np.asarray(objective.rows)[keep], np.asarray(objective.cols)[keep]
        values = np.asarray(objective.values, dtype=np.float64)[keep]
        pattern = sparse.csr_matrix((np.arange(1, rows_.size + 1), (rows_, cols_)), (n1, n2))
        if pattern.nnz != rows_.size:
            raise UsageError(
                f"{self.name}: the observations name an entry twice: give each (row, col) once"
            )
        order = pattern.data - 1  # the observations in the sparse matrix's order

        def observed(entries):
            S = pattern.copy().astype(np.float64)
            S.data = entries[order]
            return S

        record = _Rows(objective, probe, keep_weights, self.columns)
        record.add(0, weights, 0.0)
        elapsed, start = 0.0, time.perf_counter()
        U, d, V = _end_to_end_svd(weights, k)
        top = _top_triplets(observed(values), None, 1)[1]
        lam_max = float(top[0]) if top.size else 0.0
        path = lam_max * np.geomspace(1.0, self.shrinkage, self.path + 1)[1:]
        level, step, last = 0, 0, None
        while step < steps:
            lam = path[level]
            entries = values - np.einsum("kr,r,kr->k", U[rows_], d, V[cols_])
            Ux, sx, Vx = _top_triplets(observed(entries), (U, d, V), k + 1)
            shrunk = sx[:k] - lam
            kept = shrunk > 0
            U1, d1, V1 = Ux[:, :k][:, kept], shrunk[kept], Vx[:, :k][:, kept]
            size = np.linalg.norm(d1)
            change = _distance(U1 * d1, V1, U * d, V)
            change = change / size if size > 0 else (0.0 if change == 0 else np.inf)
            dropped = max(sx[k] - lam, 0.0) / sx[0] if sx.size > k and sx[0] > 0 else 0.0
            U, d, V = U1, d1, V1
            step += 1
            elapsed += time.perf_counter() - start
            done = change <= self.tolerance and level == path.size - 1
            if step % record_every == 0 or done or step == steps:
                final = balanced_factors(U, d, V, widths)
                record.add(
                    step, final, elapsed, shrinkage=lam, solution_rank=d.size,
                    relative_change=change, truncated_sigma=dropped,
                )  # fmt: skip
                last = final
            start = time.perf_counter()
            if done:
                break
            if change <= self.tolerance:
                level += 1
        final = last if last is not None else weights
        return record.curve(), tuple(jnp.asarray(a) for a in final), elapsed


def balanced_factors(U, s, V, widths) -> tuple[np.ndarray, ...]:
    """Factors (W1, …, WL) of U diag(s) Vᵀ for ``widths``, every layer carrying diag(s)^{1/L}
    (the module docstring; needs len(s) ≤ min(widths))."""
    depth, r = len(widths) - 1, s.size
    d = np.asarray(s, dtype=np.float64) ** (1.0 / depth)
    ends = [U, *(np.eye(h, r) for h in widths[1:-1]), V]
    return tuple((a * d) @ b.T for a, b in zip(ends[:-1], ends[1:]))


def _widths(weights) -> list[int]:
    return [int(weights[0].shape[0]), *(int(w.shape[1]) for w in weights)]


def _number(value) -> float:
    return np.nan if value is None else float(value)


def _affine(objective, X, cp):
    """(𝒜(X) as a cvxpy expression, y, w) over the real measurements (padding dropped)."""

    keep = np.asarray(objective.weights) > 0
    values = np.asarray(objective.values, dtype=np.float64)[keep]
    w = np.asarray(objective.weights, dtype=np.float64)[keep]
    if isinstance(objective, Completion):
        rows, cols = np.asarray(objective.rows)[keep], np.asarray(objective.cols)[keep]
        return X[rows, cols], values, w
    operators = np.asarray(objective.operators, dtype=np.float64)[keep]
    return operators @ cp.vec(X, order="C"), values, w


def _end_to_end_svd(weights, k: int):
    """(U, s, V) of W1 ⋯ WL from the QR factors of its two outer factors (no dense W), the
    zero singular values dropped, at most k kept."""
    left = np.asarray(weights[0], dtype=np.float64)
    for w in weights[1:-1]:
        left = left @ np.asarray(w, dtype=np.float64)
    right = np.asarray(weights[-1], dtype=np.float64)
    Qa, Ra = np.linalg.qr(left)
    Qb, Rb = np.linalg.qr(right.T)
    u, s, vt = np.linalg.svd(Ra @ Rb.T)
    keep = np.flatnonzero(s > 0)[:k]
    return (Qa @ u)[:, keep], s[keep], (Qb @ vt.T)[:, keep]


def _distance(A, B, C, D) -> float:
    """‖A Bᵀ − C Dᵀ‖_F from the R factors of [A, −C] and [B, D]: no n1 × n2 matrix and no
    cancellation between the two norms."""
    if A.shape[1] + C.shape[1] == 0:
        return 0.0
    Ra = np.linalg.qr(np.concatenate([A, -C], axis=1), mode="r")
    Rb = np.linalg.qr(np.concatenate([B, D], axis=1), mode="r")
    return float(np.linalg.norm(Ra @ Rb.T))


def _top_triplets(S, low_rank, count: int):
    """The top ``count`` singular triplets (U, σ, V) of S + U diag(d) Vᵀ (S sparse n1 × n2,
    ``low_rank`` = (U, d, V) or None), σ decreasing: LAPACK on the dense matrix when it is small
    or ``count`` is a large part of it, else ARPACK on the operator (never dense)."""
    from scipy.sparse.linalg import LinearOperator, svds

    n1, n2 = S.shape
    U, d, V = low_rank if low_rank is not None else (np.zeros((n1, 0)), np.zeros(0), None)
    V = np.zeros((n2, 0)) if V is None else V
    count = min(count, n1, n2)
    if n1 * n2 <= DENSE_ENTRIES or count >= min(n1, n2) // 2:
        X = S.toarray() + (U * d) @ V.T
        u, s, vt = np.linalg.svd(X, full_matrices=False)
        return u[:, :count], s[:count], vt[:count].T

    def matvec(x):
        return S @ x + U @ ((V.T @ x).T * d).T

    def rmatvec(y):
        return S.T @ y + V @ ((U.T @ y).T * d).T

    operator = LinearOperator(
        (n1, n2), matvec=matvec, rmatvec=rmatvec, matmat=matvec, rmatmat=rmatvec, dtype=float
    )
    start = np.ones(min(n1, n2)) / np.sqrt(min(n1, n2))  # deterministic
    u, s, vt = svds(operator, k=count, v0=start)
    order = np.argsort(s)[::-1]
    return u[:, order], s[order], vt[order].T


class _Rows:
    """The recorded rows of an out-of-loop run: the objective's loss and gradient norm at given
    factor weights, the probe's columns, the weights (``keep_weights``) and the method's own."""

    def __init__(self, objective, probe, keep_weights: bool, columns):
        self.value_grad = jax.jit(jax.value_and_grad(objective.loss))
        self.notebook = jax.jit(objective.notebook_loss)
        self.measure = None if probe is None else jax.jit(probe.measure)
        self.keep_weights, self.columns = keep_weights, tuple(columns)
        self.rows: list[tuple] = []

    def add(self, step: int, weights, seconds: float, **values) -> None:
        w = tuple(jnp.asarray(a, dtype=jnp.float64) for a in weights)
        loss, grads = self.value_grad(w)
        metrics = (float(loss), float(gradient_norm(grads)), float(self.notebook(w)))
        extras = {} if self.measure is None else jax.tree_util.tree_map(np.asarray, self.measure(w))
        extras |= {name: float(values.get(name, np.nan)) for name in self.columns}
        if self.keep_weights:
            extras["weights"] = tuple(np.asarray(a) for a in w)
        self.rows.append((step, metrics, seconds, extras))

    def curve(self):

        steps = np.array([r[0] for r in self.rows])
        metrics = np.array([r[1] for r in self.rows], dtype=np.float64)
        seconds = np.array([r[2] for r in self.rows], dtype=np.float64)
        extras = {name: _stack([r[3][name] for r in self.rows]) for name in self.rows[0][3]}
        return Curve(steps, metrics[:, 0], metrics[:, 1], metrics[:, 2], seconds, extras)


def _stack(values):
    if isinstance(values[0], tuple):  # the weights: one stacked array per layer
        return tuple(np.stack(layer) for layer in zip(*values))
    return np.stack([np.asarray(v) for v in values])

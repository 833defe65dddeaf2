"""Independent plain-NumPy reference of ScaledGD and vanilla GD (issue #10).

Tong, Ma & Chi, "Accelerating ill-conditioned low-rank matrix estimation via scaled gradient
descent", JMLR 22(150), 2021. Written from the paper's equations; the experiment's details
(sampling, normalisation, iteration count, error measure) were checked against the authors'
MATLAB scripts (github.com/Titan-Tong/ScaledGD, matrix/MC.m and matrix/MS.m) but not copied.
No JAX and no deeplinear imports: this is a reference to check the lab against.

Problems (ground truth M = U diag(σ) Vᵀ, σ = linspace(1, 1/κ, r), U and V the left singular
vectors of n×r Rademacher matrices, as in the authors' scripts):

* completion: Ω has each entry independently with probability p (one mask for every κ);
  f(L, R) = (1/2p) ‖P_Ω(LRᵀ − M)‖_F², gradients (1/p) P_Ω(LRᵀ − M) R and its transpose with L;
  stored as index arrays, O(|Ω| r) per iteration.
* sensing: y_k = ⟨A_k, M⟩ with A_k entries N(0, 1/m), m measurements;
  f(L, R) = ½ Σ_k (⟨A_k, LRᵀ⟩ − y_k)², gradient Z R with Z = Σ_k (⟨A_k, LRᵀ⟩ − y_k) A_k.

Methods, from the same spectral initialisation (top-r SVD of P_Ω(M)/p, resp. of Σ_k y_k A_k,
which is (1/m) Σ y_k G_k for standard Gaussian G_k; L = U Σ^{1/2}, R = V Σ^{1/2}):

* ScaledGD: L ← L − η ∇_L f (RᵀR)⁻¹, R ← R − η ∇_R f (LᵀL)⁻¹ (simultaneous update);
* GD: L ← L − (η/σ₁(M)) ∇_L f, R ← R − (η/σ₁(M)) ∇_R f.
* ``projection`` c > 0 (the paper's algorithm for completion): the start and every update go
  through the scaled projection P_B, L_i ← L_i min(1, B/(√n1 ‖L_i Rᵀ‖)), R_j ← R_j min(1,
  B/(√n2 ‖R_j Lᵀ‖)), both from the old (L, R), with B = c √r σ₁(L₀R₀ᵀ) (the paper's
  C_B √(μr) σ₁(M), σ₁(M) estimated by the spectral start's).

Iteration count: errors[t] is ‖L_t R_tᵀ − M‖_F / ‖M‖_F after t updates (errors[0] at the
initialisation); "iterations to tol" is the first t with errors[t] < tol. The authors' scripts
record the error at the top of loop pass t = 1..T and stop there, so their pass index is this
t + 1 and a cap of T passes is T − 1 updates.

Note on the authors' scripts: they build V_star from U_seed (``svds(U_seed, r)`` twice), so
their M is symmetric positive semidefinite (V = U). ``--same-factors`` reproduces that; the
default draws V independently (a general rank-r M). The paper's own text was not checked on this.

    .venv/bin/python benchmarks/scaledgd_reference.py                # both settings
    .venv/bin/python benchmarks/scaledgd_reference.py --sensing-n 100

Cost on 2 CPU cores: completion at n = 1000 takes about 100 s for κ ∈ {1, 5, 10, 20} (both
methods). Sensing at the paper's n = 200 (m = 10 000) stores 𝒜 as a 3 GiB dense matrix (drawn in
about 10 s) and takes about 0.17 s per iteration (two passes over it): ScaledGD for the four κ in
about 4.5 minutes, GD (mostly 1000-step runs) in about 10 more. n = 100 (m = 5000) takes 0.04 s
per iteration, both methods and four κ in about 2 minutes.

Measured with seed 0 (updates to relative error 1e-14, or the error after 1000 updates):

    completion n=1000 r=10 p=0.2   kappa   1     5     10    20
      ScaledGD                             110   110   111   111
      GD (eta/sigma1)                      110   444   931   6.9e-9
      ScaledGD, --same-factors             112   116   117   118
      GD, --same-factors                   113   442   963   1.6e-8
    sensing n=200 r=10 m=10000
      ScaledGD                             378   380   377   374
      GD (eta/sigma1)                      379   4.0e-14  8.5e-9  1.7e-5
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

TOL = 1e-14
BLOW_UP = 1e3


def _orthonormal_signs(rng: np.random.Generator, n: int, r: int) -> np.ndarray:
    """Left singular vectors of an n×r matrix of random signs."""
    signs = np.where(rng.random((n, r)) < 0.5, -1.0, 1.0)
    return np.linalg.svd(signs, full_matrices=False)[0]


def ground_truth_factors(
    n: int, r: int, rng: np.random.Generator, same_factors: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal U, V (n×r); V = U when ``same_factors`` (the authors' scripts)."""
    U = _orthonormal_signs(rng, n, r)
    V = U.copy() if same_factors else _orthonormal_signs(rng, n, r)
    return U, V


def spectrum(r: int, kappa: float) -> np.ndarray:
    return np.linspace(1.0, 1.0 / kappa, r)


def _top_r(Y: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Spectral initialisation: L = U Σ^{1/2}, R = V Σ^{1/2} from the top-r SVD of Y."""
    U, s, Vt = np.linalg.svd(Y, full_matrices=False)
    root = np.sqrt(s[:r])
    return U[:, :r] * root, Vt[:r].T * root


def _relative_error(L, R, M, M_norm):
    return np.linalg.norm(L @ R.T - M) / M_norm


# ---------------------------------------------------------------- matrix completion


@dataclass
class Completion:
    """P_Ω(M) on index arrays; f = (1/2p) ‖P_Ω(LRᵀ − M)‖²."""

    M: np.ndarray  # dense truth, used only for the error check and the initialisation
    rows: np.ndarray
    cols: np.ndarray
    p: float

    @property
    def n1(self) -> int:
        return self.M.shape[0]

    @property
    def n2(self) -> int:
        return self.M.shape[1]

    @property
    def values(self) -> np.ndarray:
        return self.M[self.rows, self.cols]

    def residual(self, L, R):
        """(LRᵀ − M) on Ω, O(|Ω| r)."""
        return np.einsum("kr,kr->k", L[self.rows], R[self.cols]) - self.values

    def loss(self, L, R) -> float:
        s = self.residual(L, R)
        return 0.5 / self.p * float(s @ s)

    def gradient(self, L, R):
        """(∇_L f, ∇_R f) = ((1/p) S R, (1/p) Sᵀ L), S = P_Ω(LRᵀ − M), by bincount."""
        s = self.residual(L, R) / self.p
        r = L.shape[1]
        gL = np.empty_like(L)
        gR = np.empty_like(R)
        for j in range(r):
            gL[:, j] = np.bincount(self.rows, weights=s * R[self.cols, j], minlength=self.n1)
            gR[:, j] = np.bincount(self.cols, weights=s * L[self.rows, j], minlength=self.n2)
        return gL, gR

    def spectral_init(self, r: int):
        Y = np.zeros_like(self.M)
        Y[self.rows, self.cols] = self.values / self.p
        return _top_r(Y, r)


def completion_problem(
    n: int, r: int, p: float, kappa: float, seed: int, same_factors: bool = False
) -> Completion:
    """The paper's completion instance. Factors and Ω depend on the seed only, not on κ."""
    rng = np.random.default_rng(seed)
    U, V = ground_truth_factors(n, r, rng, same_factors)
    mask = rng.random((n, n)) < p
    rows, cols = np.nonzero(mask)
    M = (U * spectrum(r, kappa)) @ V.T
    return Completion(M=M, rows=rows, cols=cols, p=p)


# ---------------------------------------------------------------- matrix sensing


@dataclass
class Sensing:
    """y = 𝒜(M), rows of ``A`` are vec(A_k) with N(0, 1/m) entries; f = ½ ‖𝒜(LRᵀ) − y‖²."""

    M: np.ndarray
    A: np.ndarray  # m × (n1 n2), row-major vec
    y: np.ndarray

    def residual(self, L, R):
        return self.A @ (L @ R.T).ravel() - self.y

    def loss(self, L, R) -> float:
        s = self.residual(L, R)
        return 0.5 * float(s @ s)

    def gradient(self, L, R):
        Z = (self.residual(L, R) @ self.A).reshape(self.M.shape)
        return Z @ R, Z.T @ L

    def spectral_init(self, r: int):
        return _top_r((self.y @ self.A).reshape(self.M.shape), r)


def sensing_operator(n: int, m: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)  # its own stream: the factors match completion's
    return rng.standard_normal((m, n * n)) / np.sqrt(m)


def sensing_problem(
    n: int,
    r: int,
    m: int,
    kappa: float,
    seed: int,
    same_factors: bool = False,
    A: np.ndarray | None = None,
) -> Sensing:
    rng = np.random.default_rng(seed)
    U, V = ground_truth_factors(n, r, rng, same_factors)
    M = (U * spectrum(r, kappa)) @ V.T
    if A is None:
        A = sensing_operator(n, m, seed)
    return Sensing(M=M, A=A, y=A @ M.ravel())


# ---------------------------------------------------------------- methods


def run(
    problem,
    r: int,
    method: str,
    eta: float = 0.5,
    max_iter: int = 1000,
    tol: float = TOL,
    init=None,
    projection: float = 0.0,
) -> np.ndarray:
    """Relative errors ‖L_t R_tᵀ − M‖_F/‖M‖_F for t = 0, 1, …; stops below ``tol``.

    ``method``: "scaledgd" or "gd" (step η/σ₁(M)). At most ``max_iter`` updates.
    ``projection`` c > 0: the start and every update through ``scaled_projection``.
    """
    if method not in ("scaledgd", "gd"):
        raise ValueError(f"method must be 'scaledgd' or 'gd', not {method!r}")
    L, R = problem.spectral_init(r) if init is None else (init[0].copy(), init[1].copy())
    M = problem.M
    M_norm = np.linalg.norm(M)
    sigma1 = np.linalg.norm(M, 2)
    if projection:
        bound = projection * np.sqrt(r) * np.linalg.norm(L @ R.T, 2)
        L, R = scaled_projection(L, R, bound)
    errors = [_relative_error(L, R, M, M_norm)]
    for _ in range(max_iter):
        if not np.isfinite(errors[-1]) or errors[-1] > BLOW_UP or errors[-1] < tol:
            break
        L, R = update(problem, L, R, method, eta, sigma1)
        if projection:
            L, R = scaled_projection(L, R, bound)
        errors.append(_relative_error(L, R, M, M_norm))
    return np.asarray(errors)


def scaled_projection(L, R, bound: float):
    """P_B: rows of L scaled so √n1 ‖L_i Rᵀ‖ ≤ B, rows of R so √n2 ‖R_j Lᵀ‖ ≤ B (old L, R)."""
    row_norms = np.sqrt(L.shape[0]) * np.linalg.norm(L @ R.T, axis=1)
    col_norms = np.sqrt(R.shape[0]) * np.linalg.norm(R @ L.T, axis=1)
    with np.errstate(divide="ignore"):
        return (
            L * np.minimum(1.0, bound / row_norms)[:, None],
            R * np.minimum(1.0, bound / col_norms)[:, None],
        )


def update(problem, L, R, method: str, eta: float, sigma1: float):
    """One simultaneous update of (L, R): ScaledGD, or GD with step η/σ₁."""
    gL, gR = problem.gradient(L, R)
    if method == "scaledgd":
        return (
            L - eta * np.linalg.solve(R.T @ R, gL.T).T,
            R - eta * np.linalg.solve(L.T @ L, gR.T).T,
        )
    return L - eta / sigma1 * gL, R - eta / sigma1 * gR


def seconds_per_update(problem, L, R, method: str, eta: float = 0.5, updates: int = 20) -> float:
    """Wall time of one ``update`` (the gradient and the step, no error check), the median of
    ``updates`` timed updates from (L, R) (σ₁ = 1 for GD's step: the cost does not depend on
    it)."""
    times = []
    for _ in range(updates):
        start = time.perf_counter()
        L, R = update(problem, L, R, method, eta, 1.0)  # σ₁ only scales GD's step
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def iterations_to(errors: np.ndarray, tol: float = TOL) -> int | None:
    """First t with errors[t] < tol (None if never)."""
    hit = np.flatnonzero(errors < tol)
    return int(hit[0]) if hit.size else None


def _describe(errors: np.ndarray, tol: float) -> str:
    t = iterations_to(errors, tol)
    if t is not None:
        return f"{t}"
    return f"{errors[-1]:.1e} after {len(errors) - 1}"


# ---------------------------------------------------------------- command line


def _row(prob, kappa, args, kw, t0) -> None:
    init = prob.spectral_init(args.r)
    cells = {
        m: _describe(run(prob, args.r, m, init=init, **kw), args.tol) if m in args.methods else "-"
        for m in ("scaledgd", "gd")
    }
    secs = time.perf_counter() - t0
    print(f"{kappa:>6g} | {cells['scaledgd']:>10} | {cells['gd']:>22} | {secs:7.1f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kappas", type=float, nargs="+", default=[1, 5, 10, 20])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eta", type=float, default=0.5)
    ap.add_argument("--max-iter", type=int, default=1000, help="updates per run")
    ap.add_argument("--tol", type=float, default=TOL)
    ap.add_argument("--n", type=int, default=1000, help="completion size (n × n)")
    ap.add_argument("--r", type=int, default=10)
    ap.add_argument("--p", type=float, default=0.2)
    ap.add_argument("--sensing-n", type=int, default=200, help="0 skips sensing")
    ap.add_argument("--sensing-m", type=int, default=None, help="default 5 n r")
    ap.add_argument("--skip-completion", action="store_true")
    ap.add_argument("--methods", nargs="+", choices=["scaledgd", "gd"], default=["scaledgd", "gd"])
    ap.add_argument(
        "--same-factors", action="store_true", help="V = U, as the authors' scripts build M"
    )
    args = ap.parse_args(argv)
    kw = dict(eta=args.eta, max_iter=args.max_iter, tol=args.tol)
    print(
        f"seed={args.seed} eta={args.eta} tol={args.tol:g} max_iter={args.max_iter} "
        f"same_factors={args.same_factors}"
    )
    header = f"{'kappa':>6} | {'ScaledGD':>10} | {'GD (eta/sigma1)':>22} | {'seconds':>7}"

    if not args.skip_completion:
        print(f"\ncompletion n={args.n} r={args.r} p={args.p}")
        print(header)
        for kappa in args.kappas:
            t0 = time.perf_counter()
            prob = completion_problem(args.n, args.r, args.p, kappa, args.seed, args.same_factors)
            _row(prob, kappa, args, kw, t0)

    if args.sensing_n:
        n = args.sensing_n
        m = args.sensing_m or 5 * n * args.r
        print(f"\nsensing n={n} r={args.r} m={m}  (A: {m * n * n * 8 / 2**30:.2f} GiB)")
        t0 = time.perf_counter()
        A = sensing_operator(n, m, args.seed)
        print(f"operator drawn in {time.perf_counter() - t0:.1f} s")
        print(header)
        for kappa in args.kappas:
            t0 = time.perf_counter()
            prob = sensing_problem(n, args.r, m, kappa, args.seed, args.same_factors, A=A)
            _row(prob, kappa, args, kw, t0)


if __name__ == "__main__":
    main()

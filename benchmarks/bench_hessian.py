"""The Hessian's extreme eigenvalues at scale: ``curvature.critical_point`` (Lanczos) on a
population loss with a 1024 × 1024 target (rank 32, Haar singular vectors, geometric singular
values, κ = 1e3), depth 2, hidden width 32 (65 536 parameters), Gaussian weights scaled by
1/sqrt(fan-in).

Prints the time with and without compilation (and the process's CPU time: the machine may be
shared), the Hessian-vector products used, and the ratio against baselines measured in this
run: one gradient of ``Objective.loss``, and 100 textbook HVPs (``jvp(grad(Objective.loss))``,
jitted). Then checks the answer without a dense Hessian (p² = 4.3e9 entries):

- λ_min's eigenvector against an independent NumPy Hessian-vector product;
- both ends against LOBPCG (``scipy.sparse.linalg.lobpcg``, a block of 4) on the textbook HVP:
  another algorithm on another HVP. Its Ritz values lie inside [λ_min, λ_max], so neither may
  pass Lanczos' ends, and both should agree with them (to 1e-4 of max|λ|: LOBPCG's smallest
  end converges slowly here);
- λ_max against the Gauss-Newton bracket (spectral norms, R = W1 W2 − A)
  ``2 max(‖W1‖², ‖W2‖²) − 2‖R‖ ≤ λ_max ≤ 2(‖W1‖² + ‖W2‖²) + 2‖R‖``.

Usage: ``python benchmarks/bench_hessian.py [--size 1024] [--hidden 32] [--rank 32]
[--lobpcg-iterations 60]``
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
from jax.flatten_util import ravel_pytree
from scipy.sparse.linalg import LinearOperator, lobpcg

from _timing import median_seconds
from deeplinear.core.backend import jax, jnp
from deeplinear.diagnostics.curvature import critical_point
from deeplinear.problems.dense import singular_values, spectral_problem
from deeplinear.problems.initialization import initial_weights


def numpy_hvp(A, W1, W2):
    """d ↦ H d for f = ‖W1 W2 − A‖²: the derivative of (2 R W2ᵀ, 2 W1ᵀ R) along d."""
    R = W1 @ W2 - A

    def hvp(x):
        dW1, dW2 = x[: W1.size].reshape(W1.shape), x[W1.size :].reshape(W2.shape)
        Jd = dW1 @ W2 + W1 @ dW2
        return np.concatenate([(Jd @ W2.T + R @ dW2.T).ravel(), (W1.T @ Jd + dW1.T @ R).ravel()])

    return lambda x: 2 * hvp(x)


def lobpcg_ends(hvp, p, iterations, rng):
    """LOBPCG's smallest and largest Ritz values (a block of 4 from a random start each)."""

    def matmat(X):
        X = X.reshape(p, -1)
        return np.stack([hvp(x) for x in X.T], axis=1)

    operator = LinearOperator((p, p), matvec=matmat, matmat=matmat, dtype=np.float64)
    ends = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not reaching the requested tolerance"
        for largest in (False, True):
            values, _ = lobpcg(
                operator, rng.standard_normal((p, 4)), largest=largest, maxiter=iterations
            )
            ends.append(float(values.max() if largest else values.min()))
    return ends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="the target is size × size")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--lobpcg-iterations", type=int, default=60)
    args = parser.parse_args()
    d, h = args.size, args.hidden
    rng = np.random.default_rng(0)
    problem = spectral_problem(d, d, singular_values(args.rank, 1e3), rng=rng)
    objective = problem.objective()
    weights = initial_weights("scaled_gaussian", [d, h, d], rng)
    p = sum(w.size for w in weights)
    devices = jax.local_devices()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__}, "
        f"{len(devices)} × {devices[0].device_kind}, load average {os.getloadavg()[0]:.1f}; "
        f"population loss {d} × {d} (rank {args.rank}), depth 2, hidden {h}: {p} parameters"
    )

    result = {}
    run = lambda: result.setdefault("point", critical_point(objective, weights, method="lanczos"))
    cold = median_seconds(run, 0)
    again = lambda: critical_point(objective, weights, method="lanczos")
    cpu = time.process_time()
    warm = median_seconds(again, 3)
    cpu = (time.process_time() - cpu) / 4  # per call: one warm-up and three timed
    point, hvps = result["point"], result["point"].hessian_vector_products

    jw = tuple(jnp.asarray(w) for w in weights)
    grad = jax.jit(lambda objective, w: jax.grad(objective.loss)(w))
    t_grad = median_seconds(lambda: jax.block_until_ready(grad(objective, jw)), 10)
    flat, unravel = ravel_pytree(jw)

    @jax.jit
    def textbook_hvp(objective, flat, v):
        return jax.jvp(jax.grad(lambda x: objective.loss(unravel(x))), (flat,), (v,))[1]

    v = jnp.asarray(rng.standard_normal(p))

    def hundred_hvps():
        for _ in range(100):
            out = textbook_hvp(objective, flat, v)
        jax.block_until_ready(out)

    t_hvp100 = median_seconds(hundred_hvps, 3)
    print(
        f"critical_point (lanczos): {warm:.2f} s ({cpu:.2f} s of CPU), {cold:.2f} s with "
        f"compilation; {hvps} Hessian-vector products, {warm / hvps * 1e3:.1f} ms each with ARPACK"
    )
    print(
        f"baselines: one gradient {t_grad * 1e3:.2f} ms → ratio {warm / t_grad:.0f}; "
        f"100 textbook HVPs {t_hvp100:.2f} s → ratio {warm / t_hvp100:.2f}"
    )
    lo, hi = point.hessian_min, point.hessian_max
    print(f"grad_norm {point.grad_norm:.6g}, hessian_min {lo:.12g}, hessian_max {hi:.12g}")

    A, W1, W2 = problem.A, *weights
    scale = max(abs(lo), hi)
    direction = np.concatenate([x.ravel() for x in point.direction])
    residual = np.linalg.norm(numpy_hvp(A, W1, W2)(direction) - lo * direction) / scale
    print(f"λ_min eigenpair, NumPy HVP: ‖H d − λ_min d‖ / max|λ| = {residual:.1e}")
    start = time.perf_counter()
    textbook = lambda x: np.asarray(textbook_hvp(objective, flat, jnp.asarray(x)))
    ritz_lo, ritz_hi = lobpcg_ends(textbook, p, args.lobpcg_iterations, rng)
    print(
        f"LOBPCG ({args.lobpcg_iterations} iterations, textbook HVP, "
        f"{time.perf_counter() - start:.1f} s): λ_min {ritz_lo:.12g}, λ_max {ritz_hi:.12g}; "
        f"(Ritz − Lanczos) / max|λ| = {(ritz_lo - lo) / scale:.1e}, {(ritz_hi - hi) / scale:.1e}"
    )
    norm_R = np.linalg.norm(W1 @ W2 - A, 2)
    n1, n2 = np.linalg.norm(W1, 2) ** 2, np.linalg.norm(W2, 2) ** 2
    low, high = 2 * max(n1, n2) - 2 * norm_R, 2 * (n1 + n2) + 2 * norm_R
    print(f"Gauss-Newton bracket for λ_max: [{low:.6g}, {high:.6g}]")
    checks = {
        "eigenpair": residual < 1e-6,
        "LOBPCG inside Lanczos' ends": ritz_lo >= lo - 1e-12 * scale
        and ritz_hi <= hi + 1e-12 * scale,
        "LOBPCG agrees to 1e-4": max(abs(ritz_lo - lo), abs(ritz_hi - hi)) <= 1e-4 * scale,
        "Gauss-Newton bracket": low <= hi <= high,
    }
    failed = [name for name, ok in checks.items() if not ok]
    print("checks:", "all passed" if not failed else f"FAILED: {', '.join(failed)}")


if __name__ == "__main__":
    main()

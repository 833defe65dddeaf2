"""Speed of ``deeplinear reproduce`` against the notebook's own algorithms, measured in one run.

Prints:
1. wall time of ``deeplinear reproduce`` in a fresh process, cold (empty XLA cache) and warm;
2. wall time of the plain-NumPy port of the notebook (``deeplinear.notebook2017.notebook``) on
   the same runs;
3. the LM step: the notebook's Kronecker + lstsq step against the structured step, per step, and
   the structured step's cost as n grows (it should not).

Usage: ``python benchmarks/bench_reproduce.py [--repeats 3]``. The TF1 notebook itself cannot run
here (no TensorFlow); its 35–46 s per seed on this 2-core machine come from ../shared/NOTES.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from _timing import median_seconds
from deeplinear.core.backend import jax, jnp
from deeplinear.methods import min_norm_gauss_newton_step
from deeplinear.notebook2017 import notebook
from deeplinear.notebook2017.experiment import (
    ADAM_RATES,
    FIRST_ORDER_STEPS,
    GD_RATES,
    LM_RATES,
    LM_STEPS,
)
from deeplinear.objectives.objective import Objective
from deeplinear.problems.dense import NotebookDims, notebook_problem

TF_NOTEBOOK_SECONDS = (35.0, 46.0)  # ../shared/NOTES.md, same machine type, not measured here


def time_cli(cache: str, out: str) -> float:
    env = dict(os.environ, DEEPLINEAR_JAX_CACHE=cache)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "deeplinear.cli", "reproduce", "--out", out, "--force"],
        check=True, env=env, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - start


def time_numpy_port(seed: int = 0) -> float:
    problem, (W1, W2) = notebook_problem(seed)
    X, Y = problem.X, problem.Y
    start = time.perf_counter()
    for rate in GD_RATES:
        notebook.gradient_descent(X, Y, W1, W2, rate, FIRST_ORDER_STEPS)
    for rate in ADAM_RATES:
        notebook.adam(X, Y, W1, W2, rate, FIRST_ORDER_STEPS)
    for rate in LM_RATES:
        notebook.levenberg_marquardt(X, Y, W1, W2, rate, LM_STEPS, "modern")
    return time.perf_counter() - start


def structured_step_seconds(objective: Objective, weights, steps: int = 200) -> float:
    """Per-step time of the structured step inside a compiled scan (as the runner runs it)."""

    def scan(w):
        def body(w, _):
            delta = min_norm_gauss_newton_step(w, objective)
            return tuple(a + 0.2 * d for a, d in zip(w, delta)), None

        return jax.lax.scan(body, w, None, steps)[0]

    compiled = jax.jit(scan)
    weights = tuple(jnp.asarray(w) for w in weights)
    return median_seconds(lambda: jax.block_until_ready(compiled(weights)), 3) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"jax {jax.__version__}, numpy {np.__version__}")  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        cache, out = os.path.join(tmp, "cache"), os.path.join(tmp, "out")
        cold = time_cli(cache, out)
        warm = statistics.median(time_cli(cache, out) for _ in range(args.repeats))
    port = statistics.median(time_numpy_port() for _ in range(max(1, args.repeats - 1)))
    print("\n1. whole experiment (GD ×4, Adam ×4 for 3000 steps; LM ×2 for 200 steps)")
    print(f"   deeplinear reproduce, fresh process, cold cache : {cold:7.2f} s")
    print(f"   deeplinear reproduce, fresh process, warm cache : {warm:7.2f} s")
    print(f"   NumPy port of the notebook (same runs)          : {port:7.2f} s")
    print(f"   speed-up over the NumPy port: cold ×{port / cold:.1f}, warm ×{port / warm:.1f}")
    lo, hi = TF_NOTEBOOK_SECONDS
    print(f"   vs the TF notebook's {lo:.0f}–{hi:.0f} s (NOTES.md, not measured here):")
    print(f"   cold ×{lo / cold:.1f}–{hi / cold:.1f}, warm ×{lo / warm:.1f}–{hi / warm:.1f}")

    print("\n2. one LM step at the notebook's size (6/6/10)")
    print(f"   {'n':>7} {'Kronecker + lstsq':>20} {'structured (scan)':>20} {'ratio':>8}")
    for n in (1000, 10_000, 100_000):
        problem, weights = notebook_problem(0, NotebookDims(samples=n))
        structured = structured_step_seconds(problem.objective(), weights)
        if n <= 10_000:
            kron = median_seconds(
                lambda p=problem, w=weights: notebook.kronecker_gauss_newton_step(p.X, p.Y, *w),
                args.repeats,
            )
            ratio = f"×{kron / structured:.0f}"
            kron_text = f"{kron * 1e3:.2f} ms"
        else:
            kron_text, ratio = "(10 GB: skipped)", ""
        print(f"   {n:>7} {kron_text:>20} {structured * 1e3:>17.3f} ms {ratio:>8}")


if __name__ == "__main__":
    main()

"""Second-order methods on the seed problem and at scale, every baseline measured in this run.

Parts (``--part seed|step|scale|all``):

seed   ``lm`` on the notebook's problem (seed 0): iterations to 1e-20 of the initial loss, time per
       iteration against the notebook's Kronecker + lstsq step and against optimistix's LM.
step   one structured damped step (``lm``'s Schur solve) against the notebook's Kronecker step at
       (d, d, d, n = 1000) for d = 25 and 50 (the latter builds a 50000 × 5000 matrix, ~80 s).
scale  population loss, κ = 1e5 over the target's non-zero singular values: a rank-32 1024 × 1024
       target with hidden width 32 (lm, gn-cg, als, scaled-gd, GD and Adam at their best learning
       rate from a grid), and depth 3 (1024 → 64 → 64 → 1024, rank 64: gn-cg). Each method gets the
       same wall-clock budget; printed side by side: time to 1e-10 and 1e-20 of the initial loss,
       or the best loss reached.

Usage: ``python benchmarks/bench_zoo.py --part all [--budget 60] [--size 1024]``
"""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np

from _timing import median_seconds
from deeplinear.core.backend import jax, jnp
from deeplinear.diagnostics.probes import roundoff_floor
from deeplinear.loop import runner
from deeplinear.methods import make_method
from deeplinear.methods._levenberg_marquardt import schur_solve
from deeplinear.notebook2017 import notebook
from deeplinear.problems import initialization as inits
from deeplinear.problems.dense import (
    NotebookDims,
    notebook_problem,
    singular_values,
    spectral_problem,
)
from deeplinear.verdict import judge


def part_seed() -> None:
    problem, weights = notebook_problem(0)
    objective = problem.objective()
    lm = runner.run(make_method("lm"), objective, weights, [1.0], 20)
    rel = lm.curves[0].loss / lm.curves[0].loss[0]
    hit = int(np.argmax(rel <= 1e-20)) if (rel <= 1e-20).any() else None
    optx = runner.run(make_method("optimistix-lm"), objective, weights, [1.0], 20)
    optx_rel = optx.curves[0].loss / optx.curves[0].loss[0]
    optx_hit = int(np.argmax(optx_rel <= 1e-20)) if (optx_rel <= 1e-20).any() else None
    # per-iteration cost from 200 iterations (the loop's dispatch amortised), both the same way
    per_iter = runner.run(make_method("lm"), objective, weights, [1.0], 200).run_seconds / 200
    optx_per = runner.run(make_method("optimistix-lm"), objective, weights, [1.0], 200)
    optx_per = optx_per.run_seconds / 200
    kron = median_seconds(
        lambda: notebook.kronecker_gauss_newton_step(problem.X, problem.Y, *weights)
    )
    print("seed problem (6/6/10, n = 1000, seed 0)")
    print(
        f"  lm reaches 1e-20 of the initial loss at iteration {hit} (min {rel.min():.1e}); "
        f"optimistix LM at step {optx_hit}"
    )
    print(
        f"  per iteration, compiled loop incl. recording: lm {per_iter * 1e3:.3f} ms, "
        f"optimistix LM {optx_per * 1e3:.3f} ms (lm ×{optx_per / per_iter:.1f} faster)"
    )
    print(f"  notebook's Kronecker + lstsq step {kron * 1e3:.2f} ms: lm is ×{kron / per_iter:.0f}")


def _structured_seconds(problem, weights) -> float:
    objective = problem.objective()
    w = tuple(jnp.asarray(x) for x in weights)
    step = jax.jit(lambda w, o: schur_solve(w, o, 1e-3)[0])
    return median_seconds(lambda: jax.block_until_ready(step(w, objective)))


def _kronecker_seconds(problem, weights, repeats: int) -> float:
    return median_seconds(
        lambda: notebook.kronecker_gauss_newton_step(problem.X, problem.Y, *weights), repeats
    )


def part_step() -> None:
    print("one damped Gauss-Newton step at (d, d, d, n = 1000)")
    for d in (25, 50):
        problem, weights = notebook_problem(0, NotebookDims(d, d, d, 1000))
        structured = _structured_seconds(problem, weights)
        kron = _kronecker_seconds(problem, weights, 3 if d == 25 else 0)
        print(
            f"  d = {d}: structured {structured * 1e3:.2f} ms, notebook {kron:.2f} s "
            f"→ ×{kron / structured:.0f}"
        )


def _scale_problem(d: int, depth: int):
    rank = 32 if depth == 2 else 64
    problem = spectral_problem(d, d, singular_values(rank, 1e5), rng=np.random.RandomState(0))
    widths = [d] + [rank] * (depth - 1) + [d]
    weights = inits.initial_weights("scaled_gaussian", widths, np.random.RandomState(1))
    return problem.objective(), weights


def _race(name, objective, weights, rate, budget, chunk, hyper=None):
    """Run in chunks until the budget (seconds) is spent or 1e-20 is reached."""
    method = make_method(name, **(hyper or {}))
    state, current, step, seconds = None, weights, 0, 0.0
    steps, losses, times = [], [], []
    compile_seconds = 0.0
    while seconds < budget:
        result = runner.run(
            method,
            objective,
            current,
            [rate],
            chunk,
            state=state,
            first_step=step,
            chunk_steps=chunk,
        )
        compile_seconds += result.compile_seconds
        curve = result.curves[0]
        offset = 1 if state is not None else 0
        steps += list(curve.steps[offset:])
        losses += list(curve.loss[offset:])
        times += list(seconds + curve.seconds[offset:])
        seconds += result.run_seconds
        current, state, step = result.final_weights, result.final_state, step + chunk
        if curve.diverged_at is not None or curve.loss[-1] <= 1e-20 * losses[0]:
            break
    return np.array(steps), np.array(losses), np.array(times), compile_seconds


def _time_to(losses, times, level):
    hit = np.flatnonzero(losses <= level * losses[0])
    return f"{times[hit[0]]:.1f} s" if hit.size else "—"


def _eta(objective, steps, losses, times) -> str:
    """The verdict's ETA to 1e-20, extrapolated from the record, where the race fell short."""
    if (losses <= 1e-20 * losses[0]).any():
        return ""
    finite = np.isfinite(losses)
    if finite.sum() < 8:
        return "diverged" if not finite.all() else ""
    verdict = judge(
        "race",
        steps[finite],
        losses[finite],
        floor=roundoff_floor(objective),
        target=1e-20,
        seconds_per_step=times[finite][-1] / max(steps[finite][-1], 1),
    )
    if verdict.eta_seconds is None:
        return verdict.kind
    low, high = verdict.eta_seconds
    return f"{verdict.kind}, ETA {low:.2g}–{high:.2g} s"


def _print_row(label, objective, steps, losses, times, compile_seconds) -> None:
    best = np.nanmin(losses) / losses[0]
    print(
        f"  {label:<28}{_time_to(losses, times, 1e-10):>10}{_time_to(losses, times, 1e-20):>10}"
        f"{best:>10.1e}{steps[-1]:>8}{compile_seconds:>8.1f}s  "
        f"{_eta(objective, steps, losses, times)}"
    )


def part_scale(d: int, budget: float, only: set[str] | None = None) -> None:
    print(f"scale: population loss, κ = 1e5, budget {budget:.0f} s per method, d = {d}")
    print(
        f"  {'method':<28}{'to 1e-10':>10}{'to 1e-20':>10}{'best':>10}{'steps':>8}{'compile':>9}"
        "  verdict where 1e-20 was not reached"
    )
    rows = [
        ("lm", 2, 1.0, 1),
        ("gn-cg", 2, 1.0, 1),
        ("als", 2, 1.0, 1),
        ("gn-cg", 3, 1.0, 1),
        ("lm", 3, 1.0, 1),
    ]
    for name, depth, rate, chunk in rows:
        if only and f"{name}:{depth}" not in only:
            continue
        objective, weights = _scale_problem(d, depth)
        race = _race(name, objective, weights, rate, budget, chunk)
        _print_row(f"{name} (depth {depth})", objective, *race)
    objective, weights = _scale_problem(d, 2)
    grids = {
        "scaled-gd": (0.03, 0.1, 0.3, 0.5),
        "gd": (1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
        "adam": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
    }
    for name, grid in grids.items():
        if only and f"{name}:2" not in only:
            continue
        best = None
        for rate in grid:  # a short tuning run each, then the best gets the full budget
            _, losses, _, _ = _race(name, objective, weights, rate, budget / len(grid) / 2, 200)
            score = losses[np.isfinite(losses)].min() / losses[0]
            if best is None or score < best[0]:
                best = (score, rate)
        race = _race(name, objective, weights, best[1], budget, 200)
        _print_row(f"{name} (η={best[1]:g}, tuned)", objective, *race)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("seed", "step", "scale", "all"), default="all")
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--only", help="scale rows to run, e.g. 'lm:2,gn-cg:3' (default: all)")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__}, "
        f"device {jax.devices()[0].device_kind}"
    )
    if args.part in ("seed", "all"):
        part_seed()
    if args.part in ("step", "all"):
        part_step()
    if args.part in ("scale", "all"):
        part_scale(args.size, args.budget, set(args.only.split(",")) if args.only else None)


if __name__ == "__main__":
    main()

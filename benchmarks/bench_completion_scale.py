"""Matrix completion at scale (issue #10, "Scale"): an n × n rank-10 truth with κ = 10
(singular values linspace(1, 1/10, 10), Rademacher singular vectors as in Tong, Ma & Chi's
scripts) observed at exactly ``--fraction`` · n² distinct entries (default n = 10⁴, 1 %: 10⁶
observations), spectral initialization (top-10 SVD of P_Ω(M)/p by ARPACK), then each method
through ``runner.run`` until the relative recovery error ‖W − M‖_F/‖M‖_F (``RecoveryProbe``,
recorded every step) is ≤ ``--target`` (default 1e-10) or ``--max-seconds`` of run time pass.

Methods (``--methods``): ``scaled-gd`` once per ``--eta`` in the paper's units (the lab's rate
is η/(2p)), by default the paper's 0.5 and smaller steps down to 0.1, with the paper's scaled
projection P_B (``--projection`` c: B = c √r σ₁(W₀), every iterate and the start; 0 = none: at
1 % sampling the spectral estimate's last modes are noise vectors localized on a few rows, and
without P_B ScaledGD diverges from it at every step size tried); ``als`` (row-wise exact least
squares, rate 1); ``gn-cg`` (matrix-free Gauss-Newton / LM by CG, rate 1).
Each method's seconds are run time (the compiled loop, recording every step), compile time
apart; the problem and its spectral initialization are built once and timed apart.

The anchor, measured in the same process: the NumPy port of the authors' ScaledGD
(``scaledgd_reference.py``) on the n = 1000, p = 0.2, κ = 10 case, seconds per iteration (with
its dense error check each iteration, as the authors' scripts, and the update alone).

    .venv/bin/python benchmarks/bench_completion_scale.py                 # n = 1e4, 1e6 entries
    .venv/bin/python benchmarks/bench_completion_scale.py --n 3000 --methods scaled-gd
    python3 benchmarks/bench_completion_scale.py --n 100000 --max-seconds 300   # a GPU: 1e8
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scaledgd_reference as ref
from bench_scaledgd import machine
from deeplinear.experiment import config as configs
from deeplinear.experiment import execution
from deeplinear.loop import runner
from deeplinear.methods import make_method

RANK, KAPPA = 10, 10.0


def lab_config(n: int, observations: int, seed: int):
    return configs.parse(
        {
            "seed": seed,
            "checkpoints": 0,
            "problem": {
                "kind": "completion",
                "rows": n,
                "cols": n,
                "rank": RANK,
                "condition_number": KAPPA,
                "singular_values": "linear",
                "largest_singular_value": 1.0,
                "vectors": "rademacher",
                "observations": observations,
            },
            "model": {"hidden": [RANK]},
            "init": {"kind": "spectral_estimate"},
            "methods": [{"name": "scaled-gd", "learning_rates": [1.0]}],
        }
    )


def runs_of(names, etas, fraction: float, projection: float) -> list[tuple]:
    """(method, hyperparameters, lab rate, label): scaled-gd once per paper η (the lab's
    η/(2p)) with ``projection``; als and gn-cg at rate 1."""
    out = []
    for name in names:
        if name == "scaled-gd":
            hyper = {"projection": projection}
            tag = f" c={projection:g}" if projection else ""
            out += [(name, hyper, eta / (2 * fraction), f"{name} eta={eta:g}{tag}") for eta in etas]
        else:
            out.append((name, {}, 1.0, name))
    return out


def run_to_target(name: str, hyper: dict, setup, rate: float, args) -> dict:
    """Chunks of ``--chunk`` steps (recorded every step) until the recovery error is ≤ target,
    the run time passes ``--max-seconds`` or ``--max-steps`` are done, or it diverges."""
    method = make_method(name, **hyper)
    weights, state, done = setup.weights, None, 0
    full = args.chunk // args.record_every  # rows of a chunk that did not diverge: full + 1
    seconds = compile_seconds = 0.0
    errors, times, steps = [], [], []
    while True:
        result = runner.run(
            method,
            setup.objective,
            weights,
            [rate],
            args.chunk,
            record_every=args.record_every,
            probe=setup.probe,
            state=state,
            first_step=done,
        )
        curve = result.curves[0]
        chunk_errors = np.asarray(curve.extras["recovery_error"], dtype=np.float64)
        start = 0 if done == 0 else 1  # a continuation repeats the previous chunk's last row
        errors.extend(chunk_errors[start:])
        steps.extend(np.asarray(curve.steps)[start:])
        times.extend(seconds + np.asarray(curve.seconds)[start:])
        seconds += result.run_seconds
        compile_seconds += result.compile_seconds
        done += args.chunk
        weights, state = result.final_weights, result.final_state  # batched: continued
        reached = np.flatnonzero(np.asarray(errors) <= args.target)
        if reached.size or not np.isfinite(errors[-1]) or len(curve.steps) <= full:
            break  # reached, or diverged (the curve ends at its first non-finite loss)
        if seconds >= args.max_seconds or done >= args.max_steps:
            break
    errors = np.asarray(errors)
    hit = np.flatnonzero(errors <= args.target)
    row = int(hit[0]) if hit.size else None
    return {
        "method": name,
        "rate": rate,
        "steps": int(steps[row]) if row is not None else None,
        "seconds": float(times[row]) if row is not None else None,
        "ran_steps": int(steps[-1]),
        "ran_seconds": seconds,
        "compile_seconds": compile_seconds,
        "final_error": float(errors[-1]),
        "error_at_step": float(errors[row]) if row is not None else None,
    }


def anchor(seed: int, updates: int) -> dict:
    """The NumPy port's ScaledGD at n = 1000, p = 0.2, κ = 10: seconds per iteration."""
    start = time.perf_counter()
    prob = ref.completion_problem(1000, RANK, 0.2, KAPPA, seed)
    L, R = prob.spectral_init(RANK)
    built = time.perf_counter() - start
    start = time.perf_counter()
    errors = ref.run(prob, RANK, "scaledgd", max_iter=updates, tol=0.0, init=(L, R))
    counted = (time.perf_counter() - start) / (len(errors) - 1)
    bare = ref.seconds_per_update(prob, L, R, "scaledgd", updates=updates)
    return {"built_s": built, "per_iteration_s": counted, "per_update_s": bare}


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="rows = cols")
    ap.add_argument("--fraction", type=float, default=0.01, help="observed fraction of n²")
    ap.add_argument("--methods", default="scaled-gd,als,gn-cg")
    ap.add_argument(
        "--eta", type=float, nargs="+", default=[0.5, 0.25, 0.2, 0.1],
        help="scaled-gd's steps in the paper's units (the lab's is eta/(2p)); one run each",
    )  # fmt: skip
    ap.add_argument(
        "--projection", type=float, default=1.0,
        help="scaled-gd's scaled projection c (B = c sqrt(r) sigma1(W0)); 0: none",
    )  # fmt: skip
    ap.add_argument("--target", type=float, default=1e-10, help="relative recovery error")
    ap.add_argument("--max-seconds", type=float, default=60.0, help="run time per method")
    ap.add_argument("--max-steps", type=int, default=2000)
    ap.add_argument("--chunk", type=int, default=25, help="steps per compiled call")
    ap.add_argument(
        "--record-every", type=int, default=1, help="steps between records (divides --chunk)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--anchor-updates", type=int, default=20, help="0: no anchor")
    args = ap.parse_args(argv)
    if args.chunk % args.record_every:
        ap.error("--record-every must divide --chunk")

    print(f"machine: {machine()}")
    print(" ".join(["command:", "python", *sys.argv]))
    if args.anchor_updates:
        a = anchor(args.seed, args.anchor_updates)
        print(
            f"anchor (NumPy port of ScaledGD, n=1000 p=0.2 kappa=10): "
            f"{1e3 * a['per_iteration_s']:.1f} ms/iteration with its error check, "
            f"{1e3 * a['per_update_s']:.1f} ms/update alone "
            f"(problem and init {a['built_s']:.1f} s)",
            flush=True,
        )
    observations = round(args.fraction * args.n**2)
    start = time.perf_counter()
    setup = execution.build(lab_config(args.n, observations, args.seed))
    built = time.perf_counter() - start
    fraction = setup.problem.fraction
    print(
        f"problem: {args.n} x {args.n}, rank {RANK}, kappa {KAPPA:g}, {observations:,} observed "
        f"entries (p = {fraction:g}); drawn + spectral init in {built:.1f} s; "
        f"initial recovery error {_initial_error(setup):.3g}",
        flush=True,
    )
    rows = []
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    for name, hyper, rate, label in runs_of(names, args.eta, fraction, args.projection):
        try:
            row = run_to_target(name, hyper, setup, rate, args)
        except Exception as error:  # a method that cannot run here is reported, not fatal
            print(f"  {label}: failed: {type(error).__name__}: {error}".splitlines()[0], flush=True)
            rows.append({"method": label, "failed": f"{type(error).__name__}: {error}"})
            continue
        row["method"] = label
        rows.append(row)
        print(f"  {label}: {_describe(row, args.target)}", flush=True)
    print()
    print(
        f"{'method':>22} {'rate':>6} | {'steps':>6} {'seconds':>8} | {'ran':>5} {'run s':>7} "
        f"{'compile s':>9} | {'final error':>11}"
    )
    for row in rows:
        if "failed" in row:
            print(f"{row['method']:>22} failed: {row['failed'].splitlines()[0][:80]}")
            continue
        steps = "-" if row["steps"] is None else str(row["steps"])
        secs = "-" if row["seconds"] is None else f"{row['seconds']:.1f}"
        print(
            f"{row['method']:>22} {row['rate']:>6g} | {steps:>6} {secs:>8} | "
            f"{row['ran_steps']:>5} {row['ran_seconds']:>7.1f} {row['compile_seconds']:>9.1f} | "
            f"{row['final_error']:>11.2e}"
        )
    print(
        f"steps, seconds: to recovery error <= {args.target:g} (run time, a record every "
        f"{args.record_every} step(s); "
        "'-': not reached); ran: steps run; compile s: apart"
    )
    return rows


def _initial_error(setup) -> float:
    from deeplinear.core.backend import jnp

    weights = tuple(jnp.asarray(w) for w in setup.weights)
    return float(setup.probe.measure(weights)["recovery_error"])


def _describe(row, target) -> str:
    if row["steps"] is None:
        return (
            f"not at {target:g} after {row['ran_steps']} steps, {row['ran_seconds']:.1f} s "
            f"(error {row['final_error']:.2e})"
        )
    return f"{row['steps']} steps, {row['seconds']:.1f} s to {target:g}"


if __name__ == "__main__":
    main()

"""Each completion method's time per iteration against the one-pass-over-Ω floor, measured in
the same process (issue 22, "iterations at the floor").

The instance: n × n, rank 10, κ = 10, ``--fraction`` · n² distinct observed entries (the lab's
own draw, ``bench_completion_scale.lab_config``), the spectral estimate as the start. Each
method runs through ``runner.run`` (the loop every command uses) for ``--steps`` and for
2 · ``--steps`` steps, recorded only at the end; its time per iteration is the difference over
the extra steps (compile and recording apart).

The floors, probes in the same run on the same arrays (jitted JAX, best of ``--repeats``):
- **bandwidth**: a STREAM-like triad a + 3 b over 2·10⁷ float64 values (GB/s, three arrays);
- **one pass over Ω**: the m predictions ⟨left[i_k], right[:, j_k]⟩, the faster of the lab's
  gather and two row gathers — what a gradient cannot avoid (its adjoint reads the same);
- **one side**: the gather of the r features of the other factor over Ω (what one side of ALS
  reads) and the 2 m r² flops of its Grams as one dense (m × r)ᵀ(m × r) GEMM.

Floors per iteration (issue 22: "per iteration the floor is one pass over Ω"): gd and scaled-gd
one pass; ALS its two sides; gn-cg one pass per CG step, times its CG steps. The ratio is
time / floor (the issue's target: within 3×).

    .venv/bin/python benchmarks/bench_floor.py                       # n = 10⁴, 10⁶ entries
    .venv/bin/python benchmarks/bench_floor.py --n 3000 --fraction 0.05
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_completion_scale import lab_config
from bench_scaledgd import machine
from deeplinear.core.backend import jax, jnp
from deeplinear.experiment import execution
from deeplinear.loop import runner
from deeplinear.methods import make_method
from deeplinear.objectives.measurement import entries


def best_of(fn, args, repeats: int) -> float:
    """The fastest of ``repeats`` calls of the jitted ``fn`` (after one warm call), in seconds."""
    jitted = jax.jit(fn)
    jax.block_until_ready(jitted(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(jitted(*args))
        times.append(time.perf_counter() - start)
    return min(times)


def probes(objective, weights, repeats: int) -> dict:
    """The floor probes (module docstring), in seconds (bandwidth in GB/s)."""
    a = jnp.arange(2 * 10**7, dtype=jnp.float64)
    b = a[::-1] + 1.0
    triad = best_of(lambda x, y: x + 3.0 * y, (a, b), repeats)
    left, right = weights
    index = (objective.rows, objective.cols)
    as_lab = lambda lf, rt, i, j: entries(lf, rt, i, j, dense=False)
    by_rows = lambda lf, rt_t, i, j: jnp.sum(lf[i] * rt_t[j], axis=1)  # two row gathers
    one_pass = min(
        best_of(as_lab, (left, right, *index), repeats),
        best_of(by_rows, (left, right.T.copy(), *index), repeats),
    )
    side = best_of(lambda rt_t, j: rt_t[j], (right.T.copy(), objective.cols), repeats)
    F = jnp.asarray(np.asarray(right).T[np.asarray(objective.cols)])
    gemm = best_of(lambda f: f.T @ f, (F,), repeats)
    return {"bandwidth_GBs": 3 * a.nbytes / triad / 1e9, "pass": one_pass, "side": side,
            "gemm": gemm}  # fmt: skip


def per_iteration(name: str, hyper: dict, rate: float, setup, steps: int) -> tuple[float, float]:
    """(seconds per iteration, CG steps per iteration or nan) from runs of ``steps`` and
    2 · ``steps`` steps, each recorded at its end only."""
    method = make_method(name, **hyper)
    seconds, cg = [], []
    for count in (steps, 2 * steps):
        result = runner.run(
            method, setup.objective, setup.weights, [rate], count, record_every=count,
            probe=setup.probe,
        )  # fmt: skip
        curve = result.curves[0]
        if len(curve.steps) < 2 or not np.all(np.isfinite(curve.loss)):
            raise RuntimeError(f"{name} at rate {rate:g} did not run {count} finite steps")
        seconds.append(result.run_seconds)
        if "cg_steps" in curve.extras:  # CG iterations so far
            cg.append(float(np.asarray(curve.extras["cg_steps"], dtype=np.float64)[-1]))
    per_cg = (cg[1] - cg[0]) / steps if cg else float("nan")
    return (seconds[1] - seconds[0]) / steps, per_cg


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--fraction", type=float, default=0.01)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--methods", default="gd,scaled-gd,als,gn-cg")
    args = ap.parse_args(argv)
    print(f"machine: {machine()}")
    print(" ".join(["command:", "python", *sys.argv]))
    observations = round(args.fraction * args.n**2)
    setup = execution.build(lab_config(args.n, observations, 0))
    fraction = setup.problem.fraction
    weights = tuple(jnp.asarray(w) for w in setup.weights)
    floor = probes(setup.objective, weights, args.repeats)
    print(
        f"problem: {args.n} x {args.n}, rank 10, {observations:,} entries; bandwidth "
        f"{floor['bandwidth_GBs']:.1f} GB/s (triad); one pass over Ω (m predictions, the "
        f"faster of two forms) {1e3 * floor['pass']:.1f} ms; one side's gather of r features "
        f"{1e3 * floor['side']:.1f} ms and its Gram flops as one GEMM {1e3 * floor['gemm']:.1f} ms"
    )
    floors = {
        "gd": floor["pass"],
        "scaled-gd": floor["pass"],
        "als": 2 * (floor["side"] + floor["gemm"]),
        "gn-cg": floor["pass"],  # per CG step
    }
    rates = {"gd": 0.01 / fraction, "scaled-gd": 0.5 / (2 * fraction), "als": 1.0, "gn-cg": 1.0}
    rows = []
    print(f"{'method':>10} | {'ms/iteration':>12} {'floor ms':>9} {'ratio':>6} | note")
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        hyper = {"projection": 1.0} if name == "scaled-gd" else {}  # the paper's P_B (scale bench)
        try:
            seconds, cg = per_iteration(name, hyper, rates[name], setup, args.steps)
        except RuntimeError as error:  # a diverging run has no time per iteration: say so
            print(f"{name:>10} | {error}")
            continue
        floor_s = floors[name] * (cg if np.isfinite(cg) else 1.0)
        note = f"{cg:.1f} CG steps per step, floor per CG step × that" if np.isfinite(cg) else ""
        print(
            f"{name:>10} | {1e3 * seconds:>12.1f} {1e3 * floor_s:>9.1f} "
            f"{seconds / floor_s:>6.2f} | {note}"
        )
        rows.append({"method": name, "seconds": seconds, "floor": floor_s, "cg_steps": cg})
    return rows


if __name__ == "__main__":
    main()

"""The edge-of-stability example (Cohen, Kaur, Li, Kolter & Talwalkar, ICLR 2021), checked.

Runs ``examples/edge_of_stability.toml`` (GD on their 20 × 50 deep linear network with the
sharpness λ_max(∇²f) measured by ``sharpness.SharpnessProbe`` at every record) and prints, for
each step size η:

- 2/η, the first recorded step t₁ at which the sharpness reaches 2/η, and its peak after t₁;
- over the **stable phase**, from t₁ + ``--settle`` steps (default 250: the overshoot right
  after t₁ settles) to the end of the run: the sharpness's min / median / max and their ratio to
  2/η, and whether every record lies within ±10 % of 2/η;
- the loss at the start and end of the phase, and its increases: between records, and between
  consecutive steps. The step-by-step count comes from the same GD batch re-run without the
  probe at ``record_every = 1`` (cheap), after checking it is the same trajectory: its losses at
  the recorded steps must equal the example's to 1e-12 relative (column ``same``), else the
  count is not given.

``--arpack`` also compares the probe's Lanczos value with ARPACK (``scipy.sparse.linalg.eigsh``,
tol 1e-10, the largest eigenvalue only, on curvature.py's Gram-form Hessian-vector products, an
independent formula) at each run's final weights (tens of seconds each on 2 cores).

    .venv/bin/python benchmarks/edge_of_stability.py
    .venv/bin/python benchmarks/edge_of_stability.py --arpack --out /tmp/eos
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy.sparse.linalg import LinearOperator, eigsh

from deeplinear import config as configs
from deeplinear import curvature, runfile, runner
from deeplinear._backend import jax
from deeplinear.methods import make_method
from deeplinear.sharpness import SharpnessProbe

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "edge_of_stability.toml"
BAND = 0.10  # the claim: the sharpness within ±10 % of 2/η over the stable phase


def phase_summary(steps, sharpness, loss, rate: float, settle: int) -> dict:
    """The stable phase's numbers for one run's records (module docstring)."""
    edge = 2.0 / rate
    reached = np.flatnonzero(sharpness >= edge)
    if not reached.size:
        return {"edge": edge, "t1": None}
    t1 = int(steps[reached[0]])
    phase = steps >= t1 + settle
    s, values = sharpness[phase], loss[phase]
    return {
        "edge": edge,
        "t1": t1,
        "peak": float(np.max(sharpness[steps >= t1]) / edge),
        "start": int(steps[phase][0]) if phase.any() else None,
        "min": float(s.min()),
        "median": float(np.median(s)),
        "max": float(s.max()),
        "within": bool(np.all(np.abs(s / edge - 1) <= BAND)),
        "fraction": float(np.mean(np.abs(s / edge - 1) <= BAND)),
        "increases": int(np.sum(np.diff(values) > 0)),
        "loss_start": float(values[0]),
        "loss_end": float(values[-1]),
    }


def arpack_top(objective, weights) -> float:
    """λ_max by ARPACK (``eigsh``, tol 1e-10) on curvature.py's Gram-form Hessian products."""
    moments = curvature._moments(objective)
    weights = tuple(jax.numpy.asarray(w) for w in weights)
    p = sum(w.size for w in weights)

    def hvp(v):
        return np.asarray(curvature._hvp(moments, weights, jax.numpy.asarray(v.ravel())))

    operator = LinearOperator((p, p), matvec=hvp, dtype=np.float64)
    v0 = np.random.default_rng(1).standard_normal(p)
    return float(eigsh(operator, k=1, which="LA", v0=v0, tol=1e-10, maxiter=1000)[0][0])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=EXAMPLE)
    parser.add_argument("--settle", type=int, default=250, help="steps after t₁ (default 250)")
    parser.add_argument("--out", type=Path, help="write the results directory here")
    parser.add_argument("--arpack", action="store_true", help="check the final sharpness")
    args = parser.parse_args(argv)

    config = configs.load(args.config)
    start = time.perf_counter()
    result = runfile.execute(config, args.out, force=True)
    seconds = time.perf_counter() - start
    infos, batch = result.batches[0]
    rates = [info.learning_rate for info in infos]
    spec = config.methods[0]
    print(
        f"{config.name}: {len(rates)} runs × {spec.steps} steps, sharpness every "
        f"{config.record_every} steps; run file {seconds:.1f} s (compile "
        f"{batch.compile_seconds:.1f} s, run {batch.run_seconds:.1f} s)"
    )

    start = time.perf_counter()
    setup = result.setup
    plain = runner.run(
        make_method(spec.name), setup.objective, setup.weights, rates, spec.steps, record_every=1
    )
    plain_seconds = time.perf_counter() - start

    header = (
        f"{'eta':>8} {'2/eta':>9} {'t1':>5} {'peak':>5} {'from':>5} {'min':>9} {'median':>9} "
        f"{'max':>9} {'min':>6} {'med':>6} {'max':>6} {'±10%':>5} {'in':>5} {'up/rec':>6} "
        f"{'up/step':>7} {'loss start':>10} {'loss end':>10} {'same':>8}"
    )
    print(f"stable phase: from t1 + {args.settle} steps to the end; ratios are to 2/eta")
    print(header)
    for rate, curve, every in zip(rates, batch.curves, plain.curves):
        steps, loss = curve.steps, curve.loss
        summary = phase_summary(steps, curve.extras["sharpness"], loss, rate, args.settle)
        if summary["t1"] is None:
            print(f"{rate:8.2e} {summary['edge']:9.3e}  never reached 2/eta")
            continue
        same = np.max(np.abs(every.loss[steps] / loss - 1))  # the same trajectory?
        step_phase = every.loss[summary["start"] :]
        up_step = str(int(np.sum(np.diff(step_phase) > 0))) if same <= 1e-12 else "n/a"
        e = summary["edge"]
        print(
            f"{rate:8.2e} {e:9.3e} {summary['t1']:5d} {summary['peak']:5.3f} "
            f"{summary['start']:5d} {summary['min']:9.3e} {summary['median']:9.3e} "
            f"{summary['max']:9.3e} {summary['min'] / e:6.3f} {summary['median'] / e:6.3f} "
            f"{summary['max'] / e:6.3f} {'yes' if summary['within'] else 'NO':>5} "
            f"{summary['fraction']:5.2f} {summary['increases']:6d} {up_step:>7} "
            f"{summary['loss_start']:10.4e} {summary['loss_end']:10.4e} {same:8.1e}"
        )
    residual = max(
        float(np.max(c.extras["sharpness_residual"] / c.extras["sharpness"])) for c in batch.curves
    )
    print(
        f"largest Lanczos residual ‖Hy − θy‖/θ over all records: {residual:.1e}; loss-only "
        f"re-run at every step: {plain_seconds:.1f} s"
    )
    if args.arpack:
        iterations = config.diagnostics.get("sharpness_iterations", 20)
        measure = jax.jit(lambda probe, weights: probe.measure(weights))
        for b, rate in enumerate(rates):
            weights = tuple(np.asarray(w[b]) for w in batch.final_weights)
            probe = SharpnessProbe.for_objective(setup.objective, weights, iterations)
            lanczos = float(measure(probe, weights)["sharpness"])
            start = time.perf_counter()
            exact = arpack_top(setup.objective, weights)
            print(
                f"eta {rate:.2e} final weights: probe {lanczos:.10e}, ARPACK {exact:.10e}, "
                f"relative {lanczos / exact - 1:+.1e} ({time.perf_counter() - start:.0f} s)"
            )


if __name__ == "__main__":
    main()

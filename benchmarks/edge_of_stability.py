"""The edge-of-stability example (Cohen, Kaur, Li, Kolter & Talwalkar, ICLR 2021), checked.

Runs ``examples/edge_of_stability.toml`` (GD on their 20 × 50 deep linear network with the
sharpness λ_max(∇²f) measured by ``sharpness.SharpnessProbe`` at every record) and prints, for
each step size η:

- 2/η, the first recorded step t₁ at which the sharpness reaches 2/η, and its peak after t₁;
- over the **stable phase**, the later half of the time at the edge, from t₁ + (T − t₁)/2 to
  the end of the run T (the entry transient — the sharpness overshoots 2/η after t₁, the loss
  catapults and the sharpness falls back — ended within 375 steps of t₁ in the 14 runs of seeds
  0–4 that reached the edge, under a tenth of their time there: no record outside ±10 % came
  later; ``--settle N`` starts the phase at t₁ + N instead): the
  sharpness's min / median / max, their ratio to 2/η and the step of the max, and whether every
  record lies within ±10 % of 2/η;
- the loss at the start and end of the phase, and its increases: between records, and between
  consecutive steps over the phase and over the whole time at the edge (from t₁). The
  step-by-step counts come from the same GD batch re-run without the probe at
  ``record_every = 1`` (cheap), after checking it is the same trajectory: its losses at the
  recorded steps must equal the example's to 1e-12 relative (column ``same``), else the counts
  are not given.

``--seeds`` runs the example once per seed (default: the run file's) and ends with the count
of runs inside the band, under this phase and under t₁ + 250 (the phase first used).

``--arpack`` also compares the probe's Lanczos value with ARPACK (``scipy.sparse.linalg.eigsh``,
tol 1e-10, the largest eigenvalue only, on curvature.py's Gram-form Hessian-vector products, an
independent formula) at each run's final weights (tens of seconds each on 2 cores).

    .venv/bin/python benchmarks/edge_of_stability.py
    .venv/bin/python benchmarks/edge_of_stability.py --arpack --out /tmp/eos
    .venv/bin/python benchmarks/edge_of_stability.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
from scipy.sparse.linalg import LinearOperator, eigsh

from deeplinear.core.backend import jax
from deeplinear.diagnostics import curvature
from deeplinear.diagnostics.sharpness import SharpnessProbe
from deeplinear.experiment import config as configs
from deeplinear.experiment import execution
from deeplinear.loop import runner
from deeplinear.methods import make_method

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "edge_of_stability.toml"
BAND = 0.10  # the claim: the sharpness within ±10 % of 2/η over the stable phase


def phase_summary(steps, sharpness, loss, rate: float, settle: int | None = None) -> dict:
    """The stable phase's numbers for one run's records (module docstring): from t₁ + ``settle``
    steps, or (None) from t₁ + (T − t₁)/2, to the last record T."""
    edge = 2.0 / rate
    reached = np.flatnonzero(sharpness >= edge)
    if not reached.size:
        return {"edge": edge, "t1": None}
    t1 = int(steps[reached[0]])
    start = t1 + (settle if settle is not None else (int(steps[-1]) - t1) / 2)
    phase = steps >= start
    s, values = sharpness[phase], loss[phase]
    return {
        "edge": edge,
        "t1": t1,
        "peak": float(np.max(sharpness[steps >= t1]) / edge),
        "start": int(steps[phase][0]) if phase.any() else None,
        "min": float(s.min()),
        "median": float(np.median(s)),
        "max": float(s.max()),
        "argmax": int(steps[phase][np.argmax(s)]),
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
    parser.add_argument(
        "--settle", type=int, help="phase from t₁ + SETTLE steps (default: the later half)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the run file's seed")
    parser.add_argument("--out", type=Path, help="write the (first seed's) results here")
    parser.add_argument("--arpack", action="store_true", help="check the final sharpness")
    args = parser.parse_args(argv)

    config = configs.load(args.config)
    rule = "t1 + (T - t1)/2" if args.settle is None else f"t1 + {args.settle}"
    inside, first_used, runs = [], [], 0
    for k, seed in enumerate(args.seeds or [config.seed]):
        seeded = dataclasses.replace(config, seed=seed)
        out = args.out if k == 0 else None
        summaries = one_seed(seeded, out, args.settle, args.arpack)
        runs += len(summaries)
        inside += [(seed, r) for r, summary, _ in summaries if summary.get("within")]
        first_used += [(seed, r) for r, _, legacy in summaries if legacy.get("within")]
    print(
        f"\nwithin ±10 % of 2/eta over the phase from {rule}: {len(inside)} of {runs} runs; "
        f"from t1 + 250 (the phase first used): {len(first_used)} of {runs}"
    )


def one_seed(config, out, settle, arpack) -> list[tuple[float, dict, dict]]:
    """Run the example with ``config``, print its table; (η, phase summary, summary from
    t₁ + 250) per run."""
    start = time.perf_counter()
    result = execution.execute(config, out, force=True)
    seconds = time.perf_counter() - start
    infos, batch = result.batches[0]
    rates = [info.learning_rate for info in infos]
    spec = config.methods[0]
    print(
        f"{config.name}, seed {config.seed}: {len(rates)} runs × {spec.steps} steps, sharpness "
        f"every {config.record_every} steps; run file {seconds:.1f} s (compile "
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
        f"{'max':>9} {'min':>6} {'med':>6} {'max':>6} {'at':>5} {'±10%':>5} {'in':>5} "
        f"{'up/rec':>6} {'up/step':>7} {'up/edge':>7} {'loss start':>10} {'loss end':>10} "
        f"{'same':>8} {'t1+250':>6}"
    )
    rule = "t1 + (T - t1)/2" if settle is None else f"t1 + {settle}"
    print(f"stable phase: from {rule} to the end T; ratios are to 2/eta")
    print(header)
    out = []
    for rate, curve, every in zip(rates, batch.curves, plain.curves):
        steps, loss = curve.steps, curve.loss
        summary = phase_summary(steps, curve.extras["sharpness"], loss, rate, settle)
        legacy = phase_summary(steps, curve.extras["sharpness"], loss, rate, 250)
        out.append((rate, summary, legacy))
        if summary["t1"] is None:
            print(f"{rate:8.2e} {summary['edge']:9.3e}  never reached 2/eta")
            continue
        same = np.max(np.abs(every.loss[steps] / loss - 1))  # the same trajectory?
        step_phase = every.loss[summary["start"] :]
        up_step = str(int(np.sum(np.diff(step_phase) > 0))) if same <= 1e-12 else "n/a"
        at_edge = every.loss[summary["t1"] :]
        up_edge = str(int(np.sum(np.diff(at_edge) > 0))) if same <= 1e-12 else "n/a"
        e = summary["edge"]
        print(
            f"{rate:8.2e} {e:9.3e} {summary['t1']:5d} {summary['peak']:5.3f} "
            f"{summary['start']:5d} {summary['min']:9.3e} {summary['median']:9.3e} "
            f"{summary['max']:9.3e} {summary['min'] / e:6.3f} {summary['median'] / e:6.3f} "
            f"{summary['max'] / e:6.3f} {summary['argmax']:5d} "
            f"{'yes' if summary['within'] else 'NO':>5} "
            f"{summary['fraction']:5.2f} {summary['increases']:6d} {up_step:>7} {up_edge:>7} "
            f"{summary['loss_start']:10.4e} {summary['loss_end']:10.4e} {same:8.1e} "
            f"{legacy['max'] / e:6.3f}"
        )
    residual = max(
        float(np.max(c.extras["sharpness_residual"] / c.extras["sharpness"])) for c in batch.curves
    )
    print(
        f"largest Lanczos residual ‖Hy − θy‖/θ over all records: {residual:.1e}; loss-only "
        f"re-run at every step: {plain_seconds:.1f} s; up/edge: loss rises step to step from t1 to "
        "T; t1+250: the max ratio from t1 + 250"
    )
    if arpack:
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
    return out


if __name__ == "__main__":
    main()

"""``runner.run``'s plain loop against ``fast_gd.recorded_gd`` (the fast path for constant-step
GD at depth 2), same batch, same process: wall time of the whole call (start state, compile and
run, as a sweep pays it, cold: first call in the process for that shape) and of the run alone
(``run_seconds``, best of ``--repeats`` warm calls), and the largest relative loss difference
over all rows.

Cases: ``fair`` — ``examples/seed_fair.toml``'s GD group, 10 seeds × 12 rates, each member its
own problem (``shared=False``), 3000 steps, a record every 10 with the probe, as ``sweep`` runs
it; ``fair-bare`` — the same without the probe; ``wide`` — 1e4 runs (1e4 rates on seed 0,
shared, no probe); ``small`` — batches of 1, 2, 4 and 12 rates (where the fast path must not
lose). Usage:
``python benchmarks/bench_fast_path.py [--cases fair,wide,small] [--steps 3000] [--repeats 2]
[--kernels xla,pallas]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from functools import partial

import numpy as np

from deeplinear.core.backend import enable_compilation_cache, jax
from deeplinear.diagnostics.probes import Probe
from deeplinear.loop import fast_gd, runner
from deeplinear.methods import make_method
from deeplinear.problems.dense import notebook_problem


def stack(trees):
    return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def fair_batch(seeds=10, rates=12):
    """The seed_fair GD group's members: seed-major, every seed × every rate."""
    grid = np.geomspace(1e-7, 3e-5, rates)
    problems = [notebook_problem(seed) for seed in range(seeds)]
    members = [(p, w, r) for p, w in problems for r in grid]
    objective = stack([p.objective() for p, _, _ in members])
    probe = stack([Probe.for_problem(p) for p, _, _ in members])
    weights = stack([w for _, w, _ in members])
    return objective, weights, [r for *_, r in members], probe, False


def shared_batch(runs):
    """``runs`` rates on seed 0, no probe."""
    problem, weights = notebook_problem(0)
    return problem.objective(), weights, np.geomspace(1e-7, 3e-5, runs), None, True


def plain(method, args, steps, record_every):
    objective, weights, rates, probe, shared = args
    # the plain loop: runner.run's own path, whatever the lead wires in front of it
    return runner.run(
        method,
        objective,
        weights,
        rates,
        steps,
        record_every=record_every,
        probe=probe,
        shared=shared,
        **_plain_only(),
    )


def _plain_only() -> dict:
    """The keyword that forces ``runner.run``'s plain loop, once the fast path is wired in."""
    import inspect

    return {"fast": False} if "fast" in inspect.signature(runner.run).parameters else {}


def fast(method, args, steps, record_every, kernel):
    objective, weights, rates, probe, shared = args
    return fast_gd.recorded_gd(
        method,
        objective,
        weights,
        rates,
        steps,
        record_every=record_every,
        probe=probe,
        shared=shared,
        kernel=kernel,
    )


def measure(fn, repeats):
    start = time.perf_counter()
    result = fn()
    cold = time.perf_counter() - start
    runs = [fn().run_seconds for _ in range(repeats)]
    return result, cold, min(runs) if runs else result.run_seconds


def largest_difference(a, b) -> float:
    worst = 0.0
    for x, y in zip(a.curves, b.curves):
        if len(x.steps) != len(y.steps):
            return np.inf
        finite = np.isfinite(x.loss)
        worst = max(worst, float(np.max(np.abs(x.loss - y.loss)[finite] / np.abs(x.loss[finite]))))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="fair,wide,small")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--record-every", type=int, default=10)
    parser.add_argument("--wide", type=int, default=10_000, help="runs in the wide case")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--kernels", help="xla,pallas (default xla), run even where the policy")
    args = parser.parse_args()
    enable_compilation_cache()  # DEEPLINEAR_JAX_CACHE, as a sweep uses it
    devices = jax.local_devices()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__}, "
        f"{len(devices)} × {devices[0].device_kind}; {args.steps} steps, a record every "
        f"{args.record_every}"
    )
    print(
        f"{'case':<10} {'runs':>6} {'method':<7} {'kernel':<7} {'plain cold':>10} "
        f"{'fast cold':>10} {'ratio':>6} {'plain run':>10} {'fast run':>9} {'ratio':>6} "
        f"{'compile':>15} {'max rel diff':>12}"
    )
    cases = []
    for case in args.cases.split(","):
        if case == "fair":
            cases.append(("fair", fair_batch(), args.record_every))
            objective, weights, rates, _, shared = fair_batch()
            cases.append(
                ("fair-bare", (objective, weights, rates, None, shared), args.record_every)
            )
        elif case == "wide":
            cases.append(("wide", shared_batch(args.wide), args.record_every))
        elif case == "small":
            cases += [(f"small-{n}", shared_batch(n), re) for n in (1, 2, 4, 12) for re in (1, 10)]
        else:
            raise SystemExit(f"bench_fast_path: unknown case {case!r} (fair, wide, small)")
    kernels = (args.kernels or "xla").split(",")
    for name, batch, record_every in cases:
        for method_name in ("gd", "tf1-gd") if name.startswith("fair") else ("gd",):
            method = make_method(method_name)
            slow, c_slow, r_slow = measure(
                partial(plain, method, batch, args.steps, record_every), args.repeats
            )
            for kernel in kernels:
                call = partial(fast, method, batch, args.steps, record_every, kernel)
                quick, c_fast, r_fast = measure(call, args.repeats)
                if quick is None:
                    print(
                        f"{name:<10} {len(batch[2]):>6} {method_name:<7} fast path does not apply"
                    )
                    continue
                print(
                    f"{name:<10} {len(batch[2]):>6} {method_name:<7} {kernel or 'auto':<7} "
                    f"{c_slow:>10.3f} {c_fast:>10.3f} {c_slow / c_fast:>6.2f} {r_slow:>10.4f} "
                    f"{r_fast:>9.4f} {r_slow / r_fast:>6.2f} "
                    f"{slow.compile_seconds:>6.2f} / {quick.compile_seconds:<6.2f} "
                    f"{largest_difference(slow, quick):>12.1e}",
                    flush=True,
                )


if __name__ == "__main__":
    main()

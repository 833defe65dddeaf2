"""The ScaledGD example against the NumPy port of the authors' algorithm, in one process, on the
same problem arrays (issue #10).

For every group of a ScaledGD sweep file (default ``examples/scaledgd_completion.toml``: each κ,
ScaledGD and GD) and each seed, the lab's problem and spectral initialization are built as
``deeplinear sweep`` builds them (``Sweep.run_config`` → ``execution.build``), then

- the lab runs them through ``runner.run`` (record every step, the ``recovery_error`` column of
  ``diagnostics.RecoveryProbe``): iterations to relative recovery error < ``--tol``;
- the NumPy port (``scaledgd_reference.py``) runs from the *same* arrays (observed entries or
  operators, truth, initial factors L = W1, R = W2ᵀ) with the paper's step: the lab's η is the
  paper's η/(2p) for completion (f = (1/2p)‖P_Ω(LRᵀ − M)‖² against Σ_Ω (W − M)²) and η/2 for
  sensing (f = ½‖𝒜(LRᵀ) − y‖²), so the two iterate sequences are the same up to round-off
  and the counts must agree within ±1;
- seconds per iteration: as counted (the lab recording every step; the port checking the dense
  error every step, as the authors' scripts do), and the update alone (the lab recording once
  in ``--timing-steps`` steps; the port's ``seconds_per_update``, no error check). The ratio
  port / lab is the speed-up (the issue's target: ≥ 10 per iteration at n = 1000).

    .venv/bin/python benchmarks/bench_scaledgd.py                         # completion, seed 0
    .venv/bin/python benchmarks/bench_scaledgd.py --seeds 0 1 2 --methods scaled-gd
    .venv/bin/python benchmarks/bench_scaledgd.py --example examples/scaledgd_sensing.toml
    .venv/bin/python benchmarks/bench_scaledgd.py --example examples/scaledgd_sensing.toml \\
        --rows 200 --methods scaled-gd                                   # the paper's n = 200
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scaledgd_reference as ref
from deeplinear import sweep
from deeplinear.core.backend import jax
from deeplinear.experiment import execution
from deeplinear.loop import runner
from deeplinear.methods import make_method

ROOT = Path(__file__).resolve().parents[1]
PORT_NAMES = {"scaled-gd": "scaledgd", "gd": "gd"}


def first_below(errors, tol: float) -> int | None:
    """The first index t with errors[t] < tol (None if never): the iteration count."""
    hit = np.flatnonzero(np.asarray(errors, dtype=np.float64) < tol)
    return int(hit[0]) if hit.size else None


def reference_problem(problem, probability: float | None = None):
    """The port's problem on the lab's ``MeasuredProblem`` arrays (padding dropped): the
    completion's observed entries with ``probability`` as the paper's p (default the observed
    fraction), or the sensing operators and values."""
    obs = problem.measurements
    keep = np.asarray(obs.weights) > 0
    M = problem.dense_truth()
    if problem.kind == "completion":
        p = problem.fraction if probability is None else probability
        rows, cols = np.asarray(obs.rows)[keep], np.asarray(obs.cols)[keep]
        return ref.Completion(M=M, rows=rows.astype(np.int64), cols=cols.astype(np.int64), p=p)
    A = np.asarray(obs.operators)
    A = A if keep.all() else A[keep]
    return ref.Sensing(M=M, A=A, y=np.asarray(obs.values)[keep])


def paper_step(problem, rate: float, probability: float | None) -> float:
    """The paper's η of the lab's rate: η_lab = η/(2p) (completion) or η/2 (sensing)."""
    if problem.kind == "completion":
        p = problem.fraction if probability is None else probability
        return rate * 2 * p
    return rate * 2


def lab_run(method, setup, rate, steps, record_every):
    result = runner.run(
        method,
        setup.objective,
        setup.weights,
        [rate],
        steps,
        record_every=record_every,
        probe=setup.probe if record_every == 1 else None,
    )
    return result.curves[0], result.run_seconds


def measure(sw, group, seed, args) -> dict:
    """One group × seed: counts and seconds per iteration of the lab and the port."""
    config = sw.run_config(group, seed)
    start = time.perf_counter()
    setup = execution.build(config)
    built = time.perf_counter() - start
    problem = setup.problem
    probability = config.problem.get("probability")
    method = make_method(group.method.name, **group.method.hyperparameters)
    rate = group.method.learning_rates[0]
    steps = (
        group.method.steps if args.max_steps is None else min(args.max_steps, group.method.steps)
    )

    curve, seconds = lab_run(method, setup, rate, steps, 1)
    if not args.lab_only:  # as counted, too: the median of --repeats runs (the first is noisy)
        more = [lab_run(method, setup, rate, steps, 1)[1] for _ in range(args.repeats - 1)]
        seconds = float(np.median([seconds, *more]))
    errors = np.asarray(curve.extras["recovery_error"])
    lab_count = first_below(errors, args.tol)

    if args.lab_only:
        nan = float("nan")
        return {
            "kappa": problem.condition_number, "seed": seed, "method": group.method.name,
            "lab": lab_count, "lab_final": float(errors[-1]), "lab_steps": len(errors) - 1,
            "port": None, "port_final": nan, "port_steps": 0, "lab_s": seconds / (len(errors) - 1),
            "port_s": nan, "lab_bare_s": nan, "port_bare_s": nan, "built_s": built,
        }  # fmt: skip
    port = reference_problem(problem, probability)
    init = (np.array(setup.weights[0]), np.array(setup.weights[1]).T)
    port_name = PORT_NAMES[group.method.name]
    sigma1 = float(problem.singular_values[0])
    eta = paper_step(problem, rate, probability) * (sigma1 if port_name == "gd" else 1.0)
    start = time.perf_counter()
    port_errors = ref.run(port, init[0].shape[1], port_name, eta, steps, args.tol, init)
    port_seconds = time.perf_counter() - start
    port_count = ref.iterations_to(port_errors, args.tol)

    timing = args.timing_steps
    # the median of --repeats timed runs (one compiled program; a single timing on a shared
    # machine varied 2-3x between runs)
    lab_bare = float(
        np.median([lab_run(method, setup, rate, timing, timing)[1] for _ in range(args.repeats)])
    )
    port_bare = ref.seconds_per_update(port, *init, port_name, eta, updates=args.port_updates)
    return {
        "kappa": problem.condition_number,
        "seed": seed,
        "method": group.method.name,
        "lab": lab_count,
        "lab_final": float(errors[-1]),
        "lab_steps": len(errors) - 1,
        "port": port_count,
        "port_final": float(port_errors[-1]),
        "port_steps": len(port_errors) - 1,
        "lab_s": seconds / (len(errors) - 1),
        "port_s": port_seconds / max(1, len(port_errors) - 1),
        "lab_bare_s": lab_bare / timing,
        "port_bare_s": port_bare,
        "built_s": built,
    }


def _count(count, final, steps) -> str:
    return f"{count}" if count is not None else f"{final:.1e}@{steps}"


def table(rows) -> list[str]:
    head = (
        f"{'kappa':>5} {'seed':>4} {'method':>9} | {'lab':>11} {'port':>11} {'diff':>4} | "
        f"{'lab ms/it':>9} {'port ms/it':>10} {'ratio':>6} | {'lab ms/upd':>10} "
        f"{'port ms/upd':>11} {'ratio':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        port = _count(r["port"], r["port_final"], r["port_steps"]) if r["port_steps"] else "-"
        diff = "" if r["lab"] is None or r["port"] is None else f"{r['lab'] - r['port']:+d}"
        lines.append(
            f"{r['kappa']:>5g} {r['seed']:>4} {r['method']:>9} | "
            f"{_count(r['lab'], r['lab_final'], r['lab_steps']):>11} "
            f"{port:>11} {diff:>4} | "
            f"{1e3 * r['lab_s']:>9.2f} {1e3 * r['port_s']:>10.2f} "
            f"{r['port_s'] / r['lab_s']:>6.1f} | "
            f"{1e3 * r['lab_bare_s']:>10.2f} {1e3 * r['port_bare_s']:>11.2f} "
            f"{r['port_bare_s'] / r['lab_bare_s']:>6.1f}"
        )
    return lines


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, jax {jax.__version__} {jax.devices()[0].platform}"


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--example", default=str(ROOT / "examples" / "scaledgd_completion.toml"))
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the file's")
    ap.add_argument("--kappas", type=float, nargs="+", default=None, help="default: the file's")
    ap.add_argument("--methods", nargs="+", choices=sorted(PORT_NAMES), default=None)
    ap.add_argument("--rows", type=int, default=None, help="n = rows = cols (sensing: m = 5nr)")
    ap.add_argument("--max-steps", type=int, default=None, help="cap on each method's steps")
    ap.add_argument("--tol", type=float, default=ref.TOL)
    ap.add_argument("--lab-only", action="store_true", help="the lab's counts only (no port)")
    ap.add_argument("--timing-steps", type=int, default=50, help="lab steps timed bare")
    ap.add_argument("--port-updates", type=int, default=20, help="port updates timed bare")
    ap.add_argument("--repeats", type=int, default=5, help="lab timings (their median)")
    args = ap.parse_args(argv)

    text = Path(args.example).read_text()
    if args.rows is not None:
        text = resize(text, args.rows)
    sw = sweep.parse(tomllib.loads(text), source=text, base_dir=Path(args.example).resolve().parent)
    seeds = sw.seeds if args.seeds is None else args.seeds
    print(f"{args.example}: {sw.base.get('name', '')}")
    print(f"machine: {machine()}; tol {args.tol:g}")
    print(" ".join(["command:", "python", *sys.argv]))
    rows = []
    for group in sw.groups:
        kappa = dict(group.point).get("problem.condition_number")
        if args.kappas is not None and kappa not in args.kappas:
            continue
        if args.methods is not None and group.method.name not in args.methods:
            continue
        for seed in seeds:
            start = time.perf_counter()
            rows.append(measure(sw, group, seed, args))
            r = rows[-1]
            lab = _count(r["lab"], r["lab_final"], r["lab_steps"])
            port = _count(r["port"], r["port_final"], r["port_steps"]) if r["port_steps"] else "-"
            print(
                f"  {group.name} seed {seed}: lab {lab}, port {port}; "
                f"{time.perf_counter() - start:.0f} s (problem and init {r['built_s']:.1f} s)",
                flush=True,
            )
    print()
    print("\n".join(table(rows)))
    print(
        "lab/port: iterations to recovery error < tol (or the error after the steps run); "
        "ms/it: as counted (lab records every step, port checks the dense error); "
        "ms/upd: the update alone; ratio = port / lab"
    )
    return rows


def resize(text: str, n: int) -> str:
    """The sweep file at n = rows = cols (sensing: measurements = 5 n r)."""
    data = tomllib.loads(text)
    problem = data["problem"]
    lines = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip()
        if key in ("rows", "cols"):
            line = f"{key} = {n}"
        elif key == "measurements":
            line = f"measurements = {5 * n * problem['rank']}"
        lines.append(line)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""A user's own completion problem end to end: ``deeplinear run`` against the simplest
NumPy/SciPy program that does the same job (``_numpy_als.py``), both timed as whole processes
from start to exit, in the same run (issue 22).

The instance (by default the issue's: 3000 × 2500, rank 8, κ = 20, ~439 000 observed entries,
a fixed seed) is written once as an .npz three ways: the truth as factors ``U``, ``s``, ``V``;
as a dense ``truth``; and without one. Each is solved by the lab (``als``, spectral-estimate
init, ``--sweeps`` sweeps) and the NumPy program (the same init, the same sweeps) gets the
factors. Prints the wall seconds, the ratio lab / NumPy and each one's final recovery error.

Usage: ``python benchmarks/bench_end_to_end.py [--rows 3000 --cols 2500 --rank 8
--entries 439000 --sweeps 25 --repeats 1]``.
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
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def instance(n1, n2, r, kappa, entries, seed=0):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((n1, r)))
    V, _ = np.linalg.qr(rng.standard_normal((n2, r)))
    s = np.linspace(1.0, 1.0 / kappa, r)
    pairs = rng.choice(n1 * n2, entries, replace=False)
    rows, cols = pairs // n2, pairs % n2
    values = np.einsum("mr,mr->m", U[rows] * s, V[cols])
    observed = {"rows": rows, "cols": cols, "values": values, "shape": np.array([n1, n2])}
    return observed, (U, s, V)


def run_file(npz: str, r: int, sweeps: int) -> str:
    return (
        f'steps = {sweeps}\n[problem]\nkind = "completion"\npath = "{npz}"\n[model]\n'
        f'hidden = [{r}]\n[init]\nkind = "spectral_estimate"\n[[methods]]\nname = "als"\n'
        "learning_rates = [1.0]\n"
    )


def timed(command: list[str], repeats: int) -> tuple[float, str]:
    times, out = [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        out = done.stdout
    return statistics.median(times), out


def lab_recovery(directory: Path) -> float:
    import pyarrow.parquet as pq

    table = pq.read_table(directory / "curves.parquet", columns=["step", "recovery_error"])
    if table.num_rows == 0:
        return float("nan")
    return float(table.column("recovery_error").to_numpy()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--cols", type=int, default=2500)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--kappa", type=float, default=20.0)
    parser.add_argument("--entries", type=int, default=439_000)
    parser.add_argument("--sweeps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    print(f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}")
    print(
        f"{args.rows} × {args.cols}, rank {args.rank}, κ = {args.kappa:g}, {args.entries} "
        f"entries, {args.sweeps} ALS sweeps; whole processes, median of {args.repeats}"
    )
    observed, (U, s, V) = instance(args.rows, args.cols, args.rank, args.kappa, args.entries)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        np.savez(folder / "factors.npz", **observed, U=U, s=s, V=V)
        np.savez(folder / "dense.npz", **observed, truth=(U * s) @ V.T)
        np.savez(folder / "none.npz", **observed)
        numpy_seconds, out = timed(
            [
                sys.executable,
                str(HERE / "_numpy_als.py"),
                str(folder / "factors.npz"),
                str(args.rank),
                str(args.sweeps),
            ],
            args.repeats,
        )
        print(f"{'NumPy/SciPy ALS (factors)':34s} {numpy_seconds:8.2f} s  {out.strip()}")
        env = {**os.environ, "DEEPLINEAR_JAX_CACHE": str(folder / "cache")}  # cold, then warm
        for name in ("factors", "dense", "none"):
            path = folder / f"{name}.toml"
            path.write_text(run_file(f"{name}.npz", args.rank, args.sweeps))
            out_dir = folder / f"out-{name}"
            command = [
                sys.executable,
                "-m",
                "deeplinear.cli",
                "run",
                str(path),
                "--out",
                str(out_dir),
                "--force",
            ]
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, env=env)
            first = time.perf_counter() - start
            seconds = statistics.median(_once(command, env) for _ in range(args.repeats))
            recovery = lab_recovery(out_dir) if name != "none" else float("nan")
            label = f"deeplinear run (truth: {name})"
            print(
                f"{label:34s} {seconds:8.2f} s  ×{seconds / numpy_seconds:5.2f} NumPy "
                f"(first, cold cache: {first:.2f} s)  recovery {recovery:.3e}"
            )


def _once(command, env) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()

"""The time estimate against the time a user waits, for the cases it used to miss (issue 26).

Each case is a real ``deeplinear run`` or ``deeplinear sweep`` in a fresh process with the XLA
cache off (compiles are what the model predicts), timed from process start to exit; the estimate
is the one the command prints (``estimated … ~T``), computed here by the same functions.
Prints per case: the estimate, the measured wall time and their ratio (the goal: within ×2).

Cases: deep chains (``hidden`` of length 100, 400, 800; GD at width 6), a deep LM (32 layers,
CG), and a sweep of Adam variants (``--variants`` [[methods]] tables, default 21: each its own
program, compiled twice: its batch and its best run timed alone).

Usage: ``python benchmarks/bench_estimates.py [--variants 21] [--depths 100 400 800]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from deeplinear import sweep
from deeplinear.experiment import budget, config


def deep_run_file(method: str, depth: int) -> str:
    hidden = ", ".join(["6"] * depth)
    return (
        'steps = 100\n[problem]\nkind = "notebook"\n[init]\nkind = "gaussian"\nscale = 0.5\n'
        f'[model]\nhidden = [{hidden}]\n[[methods]]\nname = "{method}"\n'
        "learning_rates = [0.001]\n"
    )


def variants_sweep_file(count: int) -> str:
    text = 'seeds = [0]\nsteps = 2000\n[problem]\nkind = "notebook"\n'
    for b1 in np.linspace(0.8, 0.999, count):
        text += f'[[methods]]\nname = "adam"\nb1 = {round(float(b1), 6)!r}\n'
        text += "learning_rates = [0.001, 0.01, 0.1]\n"
    return text


def timed(command: list[str]) -> float:
    env = {**os.environ, "DEEPLINEAR_JAX_CACHE": "off"}
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=21)
    parser.add_argument("--depths", type=int, nargs="+", default=[100, 400, 800])
    args = parser.parse_args()
    cli = [sys.executable, "-m", "deeplinear.cli"]
    print(f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'case':34s} {'estimate (s)':>12s} {'measured (s)':>12s} {'ratio':>6s}")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        cases = [("gd", depth) for depth in args.depths] + [("lm", 32)]
        for method, depth in cases:
            path = folder / f"{method}-{depth}.toml"
            path.write_text(deep_run_file(method, depth))
            estimate = budget.estimate_run(config.load(path)).seconds
            wall = timed([*cli, "run", str(path), "--out", str(folder / path.stem)])
            name = f"run: {method}, {depth} layers"
            print(f"{name:34s} {estimate:12.1f} {wall:12.1f} {wall / estimate:6.2f}", flush=True)
        path = folder / "variants.toml"
        path.write_text(variants_sweep_file(args.variants))
        estimate = sweep.estimate(sweep.load(path)).seconds
        wall = timed([*cli, "sweep", str(path), "--out", str(folder / "variants")])
        name = f"sweep: {args.variants} Adam variants"
        print(f"{name:34s} {estimate:12.1f} {wall:12.1f} {wall / estimate:6.2f}")


if __name__ == "__main__":
    main()

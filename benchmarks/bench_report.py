"""`deeplinear report` of a 2000-run sweep, start to exit, against the simplest program that does
the report's core job in the same run (issue 22's target: ≤ 10 s at 2000 runs).

The sweep: the notebook problem, GD and Adam × 10 learning rates × 100 seeds, ``steps`` steps
recorded every ``record_every`` (2000 runs). The baseline (``baseline``): PyArrow reads the
group files, NumPy computes each run's steps until the loss stays below the target, the best
rate per method by median steps, and writes the summary CSV — no intervals, verdicts, figures or
page. Both are timed as processes (interpreter start included), the report twice (the second
reads the cached Vega bundle).

    .venv/bin/python benchmarks/bench_report.py [--steps 3000] [--record-every 10]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

SWEEP = """name = "report benchmark: 2000 runs"
seeds = 100
targets = [1e-10]
steps = {steps}
record_every = {record_every}
[problem]
kind = "notebook"
[model]
hidden = [6]
[init]
kind = "notebook"
[[methods]]
name = "gd"
learning_rates = {{min = 1e-7, max = 3e-5, num = 10, scaling = "log"}}
[[methods]]
name = "adam"
learning_rates = {{min = 1e-4, max = 1e-1, num = 10, scaling = "log"}}
"""

BASELINE = r"""
import sys, glob, csv
import numpy as np, pyarrow.parquet as pq, pyarrow as pa
tables = [pq.read_table(f, columns=["run_id", "method", "learning_rate", "step", "loss"])
          for f in sorted(glob.glob(sys.argv[1] + "/groups/*.parquet"))]
t = pa.concat_tables(tables).to_pydict()
run, method, rate = np.array(t["run_id"]), np.array(t["method"]), np.array(t["learning_rate"])
step, loss = np.array(t["step"], float), np.array(t["loss"], float)
best = {}
order = np.argsort(run, kind="stable")
names, starts = np.unique(run[order], return_index=True)
for k in np.split(order, starts[1:]):  # one run's rows, in step order
    rel = loss[k] / loss[k][0]
    stays = np.logical_and.accumulate((rel <= 1e-10)[::-1])[::-1]
    hit = np.flatnonzero(stays)
    best.setdefault((method[k[0]], rate[k[0]]), []).append(step[k][hit[0]] if hit.size else np.inf)
rows = {}
for (m, eta), steps in best.items():
    rows.setdefault(m, []).append((float(np.median(steps)), eta))
with open(sys.argv[1] + "/baseline.csv", "w", newline="") as out:
    w = csv.writer(out)
    for m, options in rows.items():
        w.writerow([m, *min(options)])
"""


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--record-every", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "sweep.toml").write_text(
            SWEEP.format(steps=args.steps, record_every=args.record_every)
        )
        out = folder / "out"
        swept = timed([str(BIN / "deeplinear"), "sweep", str(folder / "sweep.toml"), "--out",
                       str(out)])  # fmt: skip
        reports = [timed([str(BIN / "deeplinear"), "report", str(out)]) for _ in range(2)]
        base = timed([sys.executable, "-c", BASELINE, str(out)])
    print(f"sweep (2000 runs × {args.steps} steps, every {args.record_every}): {swept:.1f} s")
    print(f"baseline (read, steps to target, best rate, CSV): {base:.2f} s")
    for i, seconds in enumerate(reports, 1):
        print(f"deeplinear report, run {i}: {seconds:.1f} s  (× {seconds / base:.1f} baseline)")


if __name__ == "__main__":
    main()

"""Long runs are cheap: GD on the seed problem for 1e4 … 1e6 steps, recording every 100.

Each length runs in a fresh process (so peak memory is its own), with the diagnostics probe that
``deeplinear run`` uses. Prints compile time apart from run time, run-steps per second, and the
process's peak resident memory, which should not grow with the number of steps.

Usage: ``python benchmarks/bench_long_run.py``
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

CHILD = """
import json, resource, sys
from deeplinear.loop import runner
from deeplinear.diagnostics.probes import Probe
from deeplinear.methods import make_method
from deeplinear.problems.dense import notebook_problem
steps = int(sys.argv[1])
problem, weights = notebook_problem(0)
result = runner.run(make_method("gd"), problem.objective(), weights, [1e-5], steps,
                    record_every=100, chunk_steps=10_000, probe=Probe.for_problem(problem))
curve = result.curves[0]
print(json.dumps({"compile": result.compile_seconds, "run": result.run_seconds,
                  "rows": len(curve.steps), "final": float(curve.loss[-1] / curve.loss[0]),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; GD η=1e-5, seed 0, "
        "record_every=100, with the diagnostics probe"
    )
    print(
        f"{'steps':>9} {'compile s':>10} {'run s':>8} {'steps/s':>10} {'peak RSS MB':>12} "
        f"{'loss/initial':>13}"
    )
    for steps in (10_000, 100_000, 1_000_000):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(steps)], check=True, capture_output=True, text=True
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{steps:>9} {r['compile']:>10.2f} {r['run']:>8.2f} {steps / r['run']:>10.3g} "
            f"{r['rss_mb']:>12.0f} {r['final']:>13.2e}"
        )


if __name__ == "__main__":
    main()

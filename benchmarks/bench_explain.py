"""What the honest verdicts cost: ``deeplinear explain`` on ``examples/seed.toml``'s results.

Runs ``deeplinear run examples/seed.toml`` once, then ``deeplinear explain`` on it in fresh
processes (figures included), ``--repeats`` times; with ``--baseline-src DIR`` (the ``src`` of
another checkout, e.g. ``git worktree add /tmp/old <commit>``) it times that version's ``run``
and ``explain`` in the same way, interleaved, and prints the ratio.

Usage: ``python benchmarks/bench_explain.py [--repeats 2] [--baseline-src /tmp/old/src]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(args: list[str], src: str | None) -> float:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "deeplinear.cli", *args], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--baseline-src", help="src/ of the version to compare against")
    args = parser.parse_args()
    versions = {"this checkout": None}
    if args.baseline_src:
        versions["baseline"] = str(Path(args.baseline_src).resolve())
    times: dict[str, list[float]] = {name: [] for name in versions}
    with tempfile.TemporaryDirectory() as tmp:
        for name, src in versions.items():
            timed(["run", str(ROOT / "examples/seed.toml"), "--out", f"{tmp}/{name}"], src)
        for _ in range(args.repeats):
            for name, src in versions.items():
                times[name].append(timed(["explain", f"{tmp}/{name}"], src))
    for name, values in times.items():
        print(f"explain, {name}: " + ", ".join(f"{v:.2f} s" for v in values))
    if args.baseline_src:
        ratio = min(times["this checkout"]) / min(times["baseline"])
        print(f"ratio this checkout / baseline (best of each): ×{ratio:.2f}")


if __name__ == "__main__":
    main()

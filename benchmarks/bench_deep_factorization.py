"""Arora, Cohen, Hu & Luo (NeurIPS 2019), deep matrix factorization: does the sweep of
``examples/deep_factorization.toml`` reproduce their ordering? (issue #10)

Runs the sweep into ``--out`` (finished groups are kept: a second call only reads them), then
prints from the group files, with the final row of every run:

- per observations × depth × initialization (and the nuclear norm, once per data set) the final
  recovery error ‖W − M‖_F/‖M‖_F of each seed, its loss and effective rank;
- at 2000 observations, per initialization: on how many seeds depth 3, depth 4 and both beat
  depth 2 (same seed, same M and Ω, same initialization scale) and the nuclear norm (same seed);
- at 5000 observations: on how many seeds every run (each depth, each initialization, the nuclear
  norm) recovers M, error < ``--success`` (1e-2);
- the effective rank exp(H(σ/Σσ)) of W along the runs (median over seeds) per depth.

The claim holds when both counts reach ``--need`` (4) of the seeds; the exit status is 1
otherwise.

    .venv/bin/python benchmarks/bench_deep_factorization.py --out runs/deep_factorization
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from deeplinear import sweep
from deeplinear.store import groups as group_files

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "deep_factorization.toml"
NUCLEAR = "nuclear-norm"


def final_rows(table) -> list[dict]:
    """One dict per run: its axis point, method, seed, and its last row's loss, recovery error
    and effective rank; plus the effective rank at every recorded step (``curve``)."""
    frame = table.select(
        [
            "run_id",
            "method",
            "seed",
            "step",
            "loss",
            "recovery_error",
            "effective_rank",
            "axis:problem.observations",
            "axis:model.hidden",
            "axis:init.end_to_end",
        ]
    ).to_pandas()
    out = []
    for run_id, rows in frame.groupby("run_id", sort=False):
        rows = rows.sort_values("step")
        last = rows.iloc[-1]
        out.append(
            {
                "run_id": run_id,
                "method": last["method"],
                "seed": int(last["seed"]),
                "observations": int(last["axis:problem.observations"]),
                "depth": len(json.loads(last["axis:model.hidden"])) + 1,
                "init": float(last["axis:init.end_to_end"]),
                "loss": float(last["loss"]),
                "error": float(last["recovery_error"]),
                "effective_rank": float(last["effective_rank"]),
                "curve": (rows["step"].to_numpy(), rows["effective_rank"].to_numpy()),
            }
        )
    return out


def lookup(runs, **where) -> dict[int, dict]:
    """The runs matching ``where``, by seed."""
    return {r["seed"]: r for r in runs if all(r[k] == v for k, v in where.items())}


def wins(deep: dict, shallow: dict, nuclear: dict) -> list[int]:
    """Seeds on which ``deep`` has a lower recovery error than both ``shallow`` and ``nuclear``."""
    return sorted(
        s
        for s in deep
        if s in shallow
        and s in nuclear
        and deep[s]["error"] < shallow[s]["error"]
        and deep[s]["error"] < nuclear[s]["error"]
    )


def report(runs, seeds, success: float, need: int) -> bool:
    gd = [r for r in runs if r["method"] != NUCLEAR]
    observations = sorted({r["observations"] for r in runs})
    depths = sorted({r["depth"] for r in gd})
    inits = sorted({r["init"] for r in gd}, reverse=True)
    line = "  ".join(f"seed {s:<7}" for s in seeds)
    print(f"final recovery error ‖W − M‖_F/‖M‖_F per seed (GD: {len(gd)} runs)")
    print(f"{'obs':>5} {'method':<22} {line}  {'median loss':>11}  {'eff. rank':>9}")
    for m in observations:
        for depth in depths:
            for init in inits:
                at = lookup(gd, observations=m, depth=depth, init=init)
                name = f"GD depth {depth}, init {init:g}"
                _row(m, name, at, seeds)
        _row(m, "nuclear norm", lookup(runs, observations=m, method=NUCLEAR), seeds)
    held = True
    low, high = observations[0], observations[-1]
    nuclear = lookup(runs, observations=low, method=NUCLEAR)
    print(f"\nat {low} observations: seeds on which depth ≥ 3 beats depth 2 and the nuclear norm")
    for init in inits:
        shallow = lookup(gd, observations=low, depth=2, init=init)
        per_depth = {
            d: wins(lookup(gd, observations=low, depth=d, init=init), shallow, nuclear)
            for d in depths
            if d >= 3
        }
        both = sorted(set.intersection(*(set(v) for v in per_depth.values()))) if per_depth else []
        parts = ", ".join(f"depth {d}: {len(v)}/{len(seeds)}" for d, v in per_depth.items())
        print(f"  init {init:g}: {parts}; every depth ≥ 3: {len(both)}/{len(seeds)} {both}")
        held &= len(both) >= need
    if high == low:
        print("no second number of observations finished yet")
        return False
    ok = []
    for s in seeds:
        errors = [r["error"] for r in runs if r["observations"] == high and r["seed"] == s]
        if errors and max(errors) < success:
            ok.append(s)
    worst = max(r["error"] for r in runs if r["observations"] == high)
    print(
        f"at {high} observations: seeds on which every run recovers (error < {success:g}): "
        f"{len(ok)}/{len(seeds)} {ok}; largest error {worst:.2e}"
    )
    held &= len(ok) >= need
    _rank_curves(gd, observations, depths, inits)
    print(f"\nclaim (≥ {need} of {len(seeds)} seeds each): {'holds' if held else 'does NOT hold'}")
    return held


def _row(m, name, at: dict, seeds) -> None:
    cells = "  ".join(f"{at[s]['error']:.2e}" if s in at else f"{'—':>8}" for s in seeds)
    cells = "  ".join(f"{c:<12}" for c in cells.split("  "))
    if not at:
        return
    loss = np.median([r["loss"] for r in at.values()])
    rank = np.median([r["effective_rank"] for r in at.values()])
    print(f"{m:>5} {name:<22} {cells}  {loss:>11.2e}  {rank:>9.2f}")


def _rank_curves(gd, observations, depths, inits) -> None:
    """Median effective rank over seeds at a few recorded steps, per depth."""
    for m in observations:
        for init in inits:
            runs = [r for r in gd if r["observations"] == m and r["init"] == init]
            if not runs:
                continue
            steps = runs[0]["curve"][0]
            shown = np.unique(np.linspace(0, len(steps) - 1, 8).round().astype(int))
            head = "  ".join(f"{int(steps[i]):>6}" for i in shown)
            print(f"\neffective rank of W (median over seeds), {m} observations, init {init:g}")
            print(f"  {'step':<8} {head}")
            for depth in depths:
                curves = [r["curve"][1] for r in runs if r["depth"] == depth]
                if not curves or any(len(c) != len(steps) for c in curves):
                    continue
                median = np.median(np.stack(curves), axis=0)
                cells = "  ".join(f"{median[i]:>6.2f}" for i in shown)
                print(f"  depth {depth:<2} {cells}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", type=Path, default=EXAMPLE, help="the sweep file")
    parser.add_argument("--out", type=Path, required=True, help="its results directory")
    parser.add_argument("--success", type=float, default=1e-2, help="recovered: error below")
    parser.add_argument("--need", type=int, default=4, help="seeds the claim needs")
    parser.add_argument(
        "--read-only", action="store_true", help="only read the finished groups of --out"
    )
    args = parser.parse_args(argv)
    plan = sweep.load(args.sweep)
    if not args.read_only:
        start, cpu = time.perf_counter(), time.process_time()

        def progress(done, total, group):
            seconds = time.perf_counter() - start
            print(f"[{done}/{total}] {seconds:7.1f} s  {group.name}", flush=True)

        sweep.run(plan, args.out, progress=progress)
        print(
            f"sweep: {time.perf_counter() - start:.1f} s wall, {time.process_time() - cpu:.1f} s "
            "CPU (groups finished before are read, not rerun)\n"
        )
    runs = final_rows(group_files.read(args.out))
    return 0 if report(runs, list(plan.seeds), args.success, args.need) else 1


if __name__ == "__main__":
    sys.exit(main())

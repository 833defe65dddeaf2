"""Ratings (issue 24): the lab's ``kind = "ratings"`` tuned by a ``deeplinear sweep`` against an
independent NumPy biased ALS tuned over the same grid on the same split, and one fit at the
MovieLens 1M and 20M shapes (not a timed test).

    .venv/bin/python benchmarks/bench_ratings.py                      # 10⁵ ratings only
    .venv/bin/python benchmarks/bench_ratings.py --sizes 1e5,1e6,2e7  # and one fit at 1M, 20M
    ... --sweep-timeout 720      # stop the lab's sweep there (and say how many groups it wrote)
    ... --max-memory 20          # raise the lab's memory limit for the 1M/20M fits (GiB)

10⁵ ratings of 943 × 1682 (rank 5, noise 0.97: ``floor_rmse`` ≈ 0.90, MovieLens 100K's RMSE
range) are synthesized and written as TSV (u.data's layout). Both sides split them 80/10/10 at
random by ``ratings_split.split`` (split seed 0), fit the baseline predictors first (global
mean, user and item biases, alternating ridge with the same λ_b) and then rank-r factors of
the residuals by ALS-WR (λ n_u on user u's row, λ n_i on item i's), ``--sweeps`` sweeps; the
predictions are clipped to [1, 5] and the setting chosen by validation RMSE. The NumPy side is
written here (Ω laid out by line, one stacked ``np.linalg.solve`` a side; random init), the
lab's is the CLI in child processes (spectral-estimate init), timed from start to exit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from deeplinear.problems.ratings_data import read_ratings, write_ratings
from deeplinear.problems.ratings_split import split
from deeplinear.problems.ratings_synthetic import floor_rmse, synthetic_ratings

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
SHAPES = {100_000: (943, 1682), 1_000_000: (6040, 3706), 20_000_000: (138_000, 27_000)}
RANKS = (2, 5, 10, 20, 50)
LAMBDAS = (0.03, 0.05, 0.07, 0.1, 0.14, 0.2)  # {0.01, 0.03, 0.1, 0.3, 1, 3}: 0.1 best, ≥ 0.3 zero


# --- the NumPy reference: biased ALS-WR -------------------------------------------------------


def biases(users, items, ratings, shape, lam, sweeps=500, tol=1e-12):
    """μ, b, c of min Σ (r − μ − b_u − c_i)² + λ (‖b‖² + ‖c‖²), μ the mean: exact alternating
    updates from 0 until the biases stop moving."""
    mu = ratings.mean()
    n_u, n_i = np.bincount(users, minlength=shape[0]), np.bincount(items, minlength=shape[1])
    b, c = np.zeros(shape[0]), np.zeros(shape[1])
    for _ in range(sweeps):
        b_new = np.bincount(users, ratings - mu - c[items], shape[0]) / np.maximum(
            lam + n_u, 1e-300
        )
        c_new = np.bincount(items, ratings - mu - b_new[users], shape[1]) / np.maximum(
            lam + n_i, 1e-300
        )
        change = max(np.abs(b_new - b).max(), np.abs(c_new - c).max())
        b, c = b_new, c_new
        if change <= tol * max(np.abs(b).max(), np.abs(c).max(), 1.0):
            break
    return mu, b, c


def by_line(index, other, values, n, n_other):
    """Ω laid out by line: row x's entries in ⌈n_x / K⌉ ≥ 1 lines of K = ⌈m / 4n⌉ slots (padding:
    ``other`` = n_other, a zero row); the first line of each row; each row's count."""
    width = max(1, -(-index.size // (4 * n)))
    counts = np.bincount(index, minlength=n)
    order = np.argsort(index, kind="stable")
    position = np.arange(index.size) - np.repeat(np.cumsum(counts) - counts, counts)
    lines = np.maximum(-(-counts // width), 1)
    first = np.cumsum(lines) - lines
    line = first[index[order]] + position // width
    slots_other = np.full((lines.sum(), width), n_other)
    slots_value = np.zeros((lines.sum(), width))
    slots_other[line, position % width] = other[order]
    slots_value[line, position % width] = values[order]
    return slots_other, slots_value, first, counts


def side(layout, other, lam):
    """Each row x of one side: argmin Σ_Ω (x · o_j − y)² + λ n_x ‖x‖², the r × r systems of all
    rows stacked into one ``np.linalg.solve`` (an empty row: 0)."""
    slots_other, slots_value, first, counts = layout
    r = other.shape[1]
    F = np.vstack([other, np.zeros((1, r))])[slots_other]  # lines × K × r
    grams = np.add.reduceat(np.matmul(F.transpose(0, 2, 1), F), first, axis=0)
    rhs = np.add.reduceat(np.einsum("lkr,lk->lr", F, slots_value), first, axis=0)
    grams += (lam * counts)[:, None, None] * np.eye(r)
    grams[counts == 0] = np.eye(r)
    return np.linalg.solve(grams, rhs[:, :, None])[:, :, 0]


def numpy_fit(data, rank, lam, bias_lam, sweeps, seed=0):
    """Biased ALS-WR on data's training part; the clipped RMSE of each part and the seconds."""
    start = time.perf_counter()
    (users, items, ratings), shape, parts = data["train"], data["shape"], data["parts"]
    mu, b, c = biases(users, items, ratings, shape, bias_lam)
    residual = ratings - mu - b[users] - c[items]
    rows = by_line(users, items, residual, shape[0], shape[1])
    cols = by_line(items, users, residual, shape[1], shape[0])
    V = np.random.default_rng(seed).normal(0.0, 0.1, (shape[1], rank))
    for _ in range(sweeps):
        U = side(rows, V, lam)
        V = side(cols, U, lam)
    rmse = {}
    for name, (u, i, y) in parts.items():
        predicted = np.clip(mu + b[u] + c[i] + np.einsum("kr,kr->k", U[u], V[i]), 1.0, 5.0)
        rmse[name] = float(np.sqrt(np.mean((predicted - y) ** 2)))
    return rmse, time.perf_counter() - start


def numpy_data(table, seed=0):
    parts = split(table, test_fraction=0.1, validation_fraction=0.1, seed=seed)
    take = {name: table.take(getattr(parts, name)) for name in ("train", "validation", "test")}
    return {"train": take["train"], "parts": take, "shape": table.shape, "split": parts}


# --- the lab, through its CLI -----------------------------------------------------------------


def problem_text(path: str, bias_lam: float, regularization: float | None = None) -> str:
    text = (
        f'[problem]\nkind = "ratings"\npath = "{path}"\nvalidation_fraction = 0.1\n'
        f"test_fraction = 0.1\nsplit_seed = 0\nbias_regularization = {bias_lam}\n"
    )
    return text + ("" if regularization is None else f"regularization = {regularization}\n")


def sweep_text(path, bias_lam, ranks, lambdas, seeds, sweeps) -> str:
    hidden = ", ".join(f"[{r}]" for r in ranks)
    return (
        f'name = "ratings {path}"\nseeds = {seeds}\ntargets = [1e-3]\nsteps = {sweeps}\n'
        f'record_every = {sweeps}\nselect = "validation"\n{problem_text(path, bias_lam)}'
        f'[model]\nhidden = [{ranks[0]}]\n[axes]\n"problem.regularization" = {list(lambdas)}\n'
        f'"model.hidden" = [{hidden}]\n[[methods]]\nname = "als"\nlearning_rates = [1.0]\n'
    )


def run_text(path, bias_lam, rank, lam, sweeps) -> str:
    return (
        f"seed = 0\nsteps = {sweeps}\nrecord_every = {sweeps}\n"
        f"{problem_text(path, bias_lam, lam)}[model]\nhidden = [{rank}]\n"
        '[[methods]]\nname = "als"\nlearning_rates = [1.0]\n'
    )


def timed_process(command, cwd, env, timeout=None) -> tuple[float, float, str | None]:
    """(wall seconds from start to exit, peak resident GiB, stdout + stderr) of one child,
    under ``/usr/bin/time -v`` where there is one; past ``timeout`` seconds its process group
    is stopped and the output is None."""
    wrapper = ["/usr/bin/time", "-v"] if Path("/usr/bin/time").exists() else []
    start = time.perf_counter()
    child = subprocess.Popen(
        wrapper + command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGTERM)
        child.communicate()
        return time.perf_counter() - start, float("nan"), None
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        print(f"FAILED ({child.returncode}): {' '.join(command)}\n{stdout}\n{stderr}")
        raise SystemExit(1)
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    peak = int(found.group(1)) / 2**20 if found else float("nan")
    return seconds, peak, stdout + stderr


def curve_seconds(out: Path) -> tuple[float, float, dict]:
    """(iteration seconds, compile seconds, the last record's RMSEs) of a run directory."""
    import pyarrow.parquet as pq

    table = pq.read_table(out / "curves.parquet").to_pylist()
    last = table[-1]
    rmse = {k: last[f"{k}_rmse"] for k in ("train", "validation", "test")}
    return float(last["seconds"]), float(last["compile_seconds"]), rmse


def median_of(entry):
    return entry["median"] if isinstance(entry, dict) else entry


# --- the benchmark ----------------------------------------------------------------------------


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def hundred_thousand(folder: Path, args, env) -> dict:
    users, items = SHAPES[100_000]
    table = synthetic_ratings(
        users=users, items=items, ratings=100_000, rank=5, noise=args.noise, seed=0
    )
    print(
        f"10⁵ ratings, {users} × {items}, rank 5, noise {args.noise}: floor_rmse = "
        f"{floor_rmse(table):.4f}"
    )
    write_ratings(table, folder / "ratings.tsv")
    floor = floor_rmse(table)
    table = read_ratings(folder / "ratings.tsv")  # what the lab reads: the same entries, in order
    data = numpy_data(table)
    print(f"split 80/10/10 (seed 0): {data['split'].counts}")
    # NumPy: the grid, one seed each
    print(f"NumPy biased ALS-WR, {args.sweeps} sweeps, λ_b = {args.bias_lambda}; {load()}")
    grid = {}
    for rank in args.ranks:
        for lam in args.lambdas:
            grid[rank, lam] = numpy_fit(data, rank, lam, args.bias_lambda, args.sweeps)
            rmse, seconds = grid[rank, lam]
            print(
                f"  rank {rank:3d} λ {lam:<5g} validation {rmse['validation']:.4f} "
                f"test {rmse['test']:.4f}  {seconds:6.3f} s",
                flush=True,
            )
    best = min(grid, key=lambda k: grid[k][0]["validation"])
    edge = best[0] in (min(args.ranks), max(args.ranks)) or best[1] in (
        min(args.lambdas),
        max(args.lambdas),
    )
    fits = [s for _, s in grid.values()]
    bias_only = numpy_fit(data, 1, 1e12, args.bias_lambda, 1)[0]  # λ → ∞: the factors vanish
    numpy = {
        "best": best,
        "rmse": grid[best][0],
        "seconds_best": grid[best][1],
        "seconds_median": statistics.median(fits),
        "seconds_total": sum(fits),
        "edge": edge,
        "bias_only": bias_only,
        "floor": floor,
    }
    print(
        f"NumPy best by validation: rank {best[0]}, λ {best[1]:g} (on the grid's edge: {edge})"
        f"; test RMSE {grid[best][0]['test']:.4f}; biases only {bias_only['test']:.4f}; "
        f"{numpy['seconds_median']:.3f} s per fit (median), {sum(fits):.1f} s for the grid"
    )
    # the lab: the same grid as a sweep, 3 seeds
    (folder / "sweep.toml").write_text(
        sweep_text(
            "ratings.tsv", args.bias_lambda, args.ranks, args.lambdas, args.seeds, args.sweeps
        )
    )
    print(
        f"deeplinear sweep ({len(args.ranks)}×{len(args.lambdas)}×{args.seeds}); {load()}",
        flush=True,
    )
    sweep_s, sweep_peak, output = timed_process(
        [str(BIN / "deeplinear"), "sweep", "sweep.toml", "--out", "sweep-out"],
        folder,
        env,
        timeout=args.sweep_timeout,
    )
    if output is None:
        done = len(list((folder / "sweep-out" / "groups").glob("*.parquet")))
        print(
            f"  sweep stopped after {sweep_s:.0f} s (--sweep-timeout): {done} of "
            f"{len(args.ranks) * len(args.lambdas)} groups written; {load()}"
        )
        report_s, rows, chosen = float("nan"), [], []
    else:
        report_s, _, _ = timed_process(
            [str(BIN / "deeplinear"), "report", "sweep-out"], folder, env
        )
        rows = json.loads((folder / "sweep-out" / "summary.json").read_text())["rows"]
        chosen = [r for r in rows if r.get("selected")]
        print(
            f"  sweep {sweep_s:.1f} s (peak {sweep_peak:.2f} GiB), report {report_s:.1f} s; "
            f"{len(rows)} rows, {len(chosen)} selected; {load()}"
        )
    for r in chosen:
        print(
            f"  selected: {r.get('axis_point')}: validation "
            f"{median_of(r['validation_rmse']):.4f}, test {median_of(r['test_rmse']):.4f}"
        )
    lab = {"sweep_s": sweep_s, "report_s": report_s, "selected": chosen, "rows": len(rows)}
    # one lab fit at NumPy's best setting, twice (cold, then warm XLA cache)
    rank, lam = best
    (folder / "run.toml").write_text(
        run_text("ratings.tsv", args.bias_lambda, rank, lam, args.sweeps)
    )
    runs = []
    for _ in range(2):
        runs.append(
            timed_process(
                [str(BIN / "deeplinear"), "run", "run.toml", "--out", "run-out", "--force"],
                folder,
                env,
            )
        )
    iterations, compile_s, rmse = curve_seconds(folder / "run-out")
    lab.update(
        run_cold=runs[0][0],
        run_warm=runs[1][0],
        run_peak=runs[1][1],
        iterations=iterations,
        compile=compile_s,
        run_rmse=rmse,
    )
    print(
        f"  deeplinear run rank {rank} λ {lam:g}: {runs[0][0]:.2f} s cold, {runs[1][0]:.2f} s "
        f"warm, iterations {iterations:.3f} s, compile {compile_s:.2f} s, test "
        f"{rmse['test']:.4f} (NumPy same setting {grid[best][0]['test']:.4f}); {load()}"
    )
    return {"numpy": numpy, "lab": lab}


def one_fit(size: int, folder: Path, args, env) -> dict:
    users, items = SHAPES.get(size) or (
        round(943 * (size / 1e5) ** 0.5),
        round(1682 * (size / 1e5) ** 0.5),
    )
    start = time.perf_counter()
    table = synthetic_ratings(
        users=users, items=items, ratings=size, rank=5, noise=args.noise, seed=0
    )
    path = folder / f"ratings-{size}.tsv"
    write_ratings(table, path)
    made = time.perf_counter() - start
    print(
        f"{size:.0e} ratings, {users} × {items}: synthesized and written in {made:.1f} s "
        f"({path.stat().st_size / 2**20:.0f} MiB), floor {floor_rmse(table):.4f}",
        flush=True,
    )
    del table
    rank, lam = args.big_rank, args.big_lambda
    (folder / f"run-{size}.toml").write_text(
        run_text(path.name, args.bias_lambda, rank, lam, args.sweeps)
    )
    print(f"  deeplinear run (rank {rank}, λ {lam:g}, {args.sweeps} sweeps); {load()}", flush=True)
    seconds, peak, _ = timed_process(
        [str(BIN / "deeplinear"), "run", f"run-{size}.toml", "--out", f"run-{size}", "--force"]
        + (["--max-memory", str(args.max_memory)] if args.max_memory else []),
        folder,
        env,
    )
    iterations, compile_s, rmse = curve_seconds(folder / f"run-{size}")
    print(
        f"  {seconds:.1f} s end to end, peak {peak:.2f} GiB, iterations {iterations:.2f} s, "
        f"compile {compile_s:.2f} s, test RMSE {rmse['test']:.4f}; {load()}",
        flush=True,
    )
    result = {
        "size": size,
        "seconds": seconds,
        "peak": peak,
        "iterations": iterations,
        "compile": compile_s,
        "rmse": rmse,
    }
    if size <= args.numpy_up_to:
        data = numpy_data(read_ratings(path))
        rmse_np, seconds_np = numpy_fit(data, rank, lam, args.bias_lambda, args.sweeps)
        result.update(numpy_seconds=seconds_np, numpy_rmse=rmse_np)
        print(
            f"  NumPy, same setting, in process: {seconds_np:.2f} s, test RMSE "
            f"{rmse_np['test']:.4f}",
            flush=True,
        )
    return result


def floats(text):
    return tuple(float(x) for x in text.split(","))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e5", help="comma-separated: 1e5, 1e6, 2e7")
    parser.add_argument("--sweeps", type=int, default=25)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--noise", type=float, default=0.97)
    parser.add_argument("--bias-lambda", type=float, default=5.0)
    parser.add_argument("--ranks", type=lambda t: tuple(map(int, t.split(","))), default=RANKS)
    parser.add_argument("--lambdas", type=floats, default=LAMBDAS)
    parser.add_argument("--big-rank", type=int, default=10, help="the 1M/20M fits' rank")
    parser.add_argument("--big-lambda", type=float, default=0.1, help="the 1M/20M fits' λ")
    parser.add_argument(
        "--numpy-up-to", type=float, default=1e6, help="also time the NumPy fit at sizes up to this"
    )
    parser.add_argument("--sweep-timeout", type=float, default=900, help="seconds")
    parser.add_argument("--max-memory", type=float, help="GiB, passed to the 1M/20M runs")
    args = parser.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    print(
        f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}; {load()}"
    )
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        env = {**os.environ, "DEEPLINEAR_JAX_CACHE": str(folder / "cache")}
        small = hundred_thousand(folder, args, env) if 100_000 in sizes else None
        big = [one_fit(size, folder, args, env) for size in sizes if size != 100_000]
    print("\nsummary")
    if small:
        n, lab = small["numpy"], small["lab"]
        best = lab["selected"][0] if lab["selected"] else None
        grid = len(args.ranks) * len(args.lambdas)
        print(
            f"  10⁵ sweep {grid}×{args.seeds}: lab {lab['sweep_s']:.1f} s"
            f"{'' if lab['selected'] else ' (stopped)'} (target ≤ 60 s); "
            f"NumPy grid ×1 seed {n['seconds_total']:.1f} s; lab ÷ NumPy (per fit) "
            f"{lab['sweep_s'] / (grid * args.seeds) / n['seconds_median']:.2f}"
        )
        print(
            f"  one fit: lab {lab['run_warm']:.2f} s end to end, {lab['iterations']:.3f} s "
            f"iterations (target ≤ 0.5 s); NumPy {n['seconds_best']:.3f} s; lab ÷ NumPy "
            f"{lab['run_warm'] / n['seconds_best']:.1f} (end to end), "
            f"{lab['iterations'] / n['seconds_best']:.2f} (iterations)"
        )
        if best:
            print(
                f"  best test RMSE: lab {median_of(best['test_rmse']):.4f} "
                f"({best['axis_point']}), NumPy {n['rmse']['test']:.4f} (rank {n['best'][0]}, "
                f"λ {n['best'][1]:g}); floor {n['floor']:.4f}"
            )
    for r in big:
        ratio = f", NumPy {r['numpy_seconds']:.1f} s" if "numpy_seconds" in r else ""
        print(f"  {r['size']:.0e}: one fit {r['seconds']:.1f} s, {r['peak']:.2f} GiB{ratio}")


if __name__ == "__main__":
    main()

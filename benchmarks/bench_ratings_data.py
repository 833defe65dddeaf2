"""Seconds to synthesize, write and read ratings files, and to split them (not a timed test).

    .venv/bin/python benchmarks/bench_ratings_data.py            # 10⁵, 10⁶ and 2·10⁷ ratings
    .venv/bin/python benchmarks/bench_ratings_data.py 100000     # chosen sizes

Shapes: MovieLens 100K (943 × 1682), 1M (6040 × 3706), 20M (138 000 × 27 000); rank 10,
noise 0.8, popularity 1. Each of TSV, CSV and Parquet is written and read back once (cold:
one call each, as a run reads its file once) and checked equal to the table written.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from deeplinear.problems.ratings_data import read_ratings, write_ratings
from deeplinear.problems.ratings_split import split
from deeplinear.problems.ratings_synthetic import synthetic_ratings

SHAPES = {100_000: (943, 1682), 1_000_000: (6040, 3706), 20_000_000: (138_000, 27_000)}


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def shape_for(ratings: int) -> tuple[int, int]:
    if ratings in SHAPES:
        return SHAPES[ratings]
    users = max(10, round(943 * (ratings / 100_000) ** 0.5))
    return users, max(10, round(1682 * (ratings / 100_000) ** 0.5))


def bench(ratings: int, folder: Path) -> None:
    users, items = shape_for(ratings)
    table, seconds = timed(
        lambda: synthetic_ratings(
            users=users, items=items, ratings=ratings, rank=10, noise=0.8, seed=0
        )
    )
    print(f"{ratings:>10} ratings ({users} × {items}): synthesize {seconds:6.2f} s", flush=True)
    for suffix in (".tsv", ".csv", ".parquet"):
        path = folder / f"ratings{suffix}"
        _, write = timed(lambda path=path: write_ratings(table, path))
        back, read = timed(lambda path=path: read_ratings(path, scale=table.scale))
        same = np.array_equal(back.users, table.users) and np.array_equal(back.items, table.items)
        same = same and np.array_equal(back.ratings, table.ratings)
        size = path.stat().st_size / 2**20
        print(
            f"{'':>10} {suffix:<8} write {write:6.2f} s, read {read:6.2f} s, "
            f"{size:7.1f} MiB, same table: {same}",
            flush=True,
        )
        path.unlink()
    for how in ("random", "time"):
        _, seconds = timed(lambda how=how: split(table, test_fraction=0.1, how=how))
        print(f"{'':>10} split {how:<6} {seconds:6.2f} s", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{'':>10} peak resident memory so far {peak:.2f} GiB", flush=True)


def main(argv: list[str]) -> None:
    sizes = [int(arg) for arg in argv] or list(SHAPES)
    with tempfile.TemporaryDirectory() as folder:
        for ratings in sizes:
            bench(ratings, Path(folder))


if __name__ == "__main__":
    main(sys.argv[1:])

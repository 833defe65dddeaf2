"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time


def median_seconds(fn, repeats: int = 5) -> float:
    """Median of ``repeats`` timed calls after one warm-up; ``repeats = 0``: one cold call."""
    if repeats == 0:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)

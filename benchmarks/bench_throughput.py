"""Seed-size GD throughput: ``deeplinear.batched.gd`` against a plain ``jax.vmap`` of the same
sufficient-statistics (reduced-residual) update, same batch size, same steps, same machine.

Prints run-steps per second (runs × steps / wall seconds, compile excluded and printed apart)
at 1e3, 1e4 and 1e5 runs, and checks that both give the same weights.
Usage: ``python benchmarks/bench_throughput.py [--steps 100]``
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from deeplinear import batched
from deeplinear._backend import jax, jnp


def plain_step(W1, W2, L, T, lr):
    R = W1 @ W2 @ L.T - T
    G = 2 * R @ L
    return W1 - lr * G @ W2.T, W2 - lr * W1.T @ G


def plain(W1, W2, L, T, lr, steps):
    step = jax.vmap(plain_step)
    return jax.lax.scan(
        lambda c, _: (step(*c, L, T, lr[:, None, None]), None), (W1, W2), None, steps
    )[0]


def timed(fn, args, repeats=3):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return out, best, first - best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__}, "
        f"device {jax.devices()[0].device_kind}; seed size 10/6/6, k = 6, {args.steps} steps"
    )
    print(
        f"{'runs':>8} {'plain vmap':>14} {'batched':>14} {'ratio':>7} {'compile (s)':>14} "
        f"{'max rel diff':>13}"
    )
    rng = np.random.default_rng(0)
    for b in (1_000, 10_000, 100_000):
        data = [
            rng.standard_normal((b, 10, 6)),
            rng.standard_normal((b, 6, 6)),
            30 * rng.standard_normal((b, 6, 6)),
            rng.standard_normal((b, 10, 6)),
            np.full(b, 1e-6),
        ]
        data = [jnp.asarray(x) for x in data]
        slow = jax.jit(lambda *a: plain(*a, args.steps))
        fast = jax.jit(lambda *a: batched.gd(*a, args.steps))
        a, t_plain, c_plain = timed(slow, data)
        z, t_fast, c_fast = timed(fast, data)
        diff = float(jnp.max(jnp.abs(a[0] - z[0])) / jnp.max(jnp.abs(a[0])))
        steps = b * args.steps
        print(
            f"{b:>8} {steps / t_plain:>14.3g} {steps / t_fast:>14.3g} {t_plain / t_fast:>7.2f} "
            f"{c_plain:>6.2f} / {c_fast:<5.2f} {diff:>13.1e}"
        )


if __name__ == "__main__":
    main()

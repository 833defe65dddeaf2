"""Seed-size GD throughput: ``deeplinear.loop.fast_gd.gd`` (XLA, batch-last) and ``gd_pallas`` (one
Pallas kernel, GPU) against a plain ``jax.vmap`` of the same sufficient-statistics
(reduced-residual) update, same batch size, same steps, same machine.

Prints run-steps per second (runs × steps / wall seconds, compile excluded and printed apart)
at each batch size, and checks that every variant gives the baseline's weights. Two baselines:
the plain ``vmap`` as anyone would write it (one device, the ratio the targets name) and, where
there are several local devices (on a CPU, one per core: see ``deeplinear.core.backend``), the same
``vmap`` with the runs split across them, so the gain from the kernel and the gain from using
every core can be told apart.
Usage: ``python benchmarks/bench_throughput.py [--steps 100] [--runs 1000,10000,100000]
[--variants batched,batched:TILE:DEVICES,pallas:128:4,pallas:256:8:mk] [--precompile]``;
a Pallas variant is ``pallas:BLOCK:WARPS:FLAGS``, FLAGS ``m`` (``hoist_m``: M = LᵀL loaded once)
``k`` (``k_registers``: K = W2 M kept in registers) and ``w`` (``registers``: the weights in
the step loop's carry, not in the output refs), defaults from
``fast_gd.PALLAS_DEFAULTS``. ``--precompile`` only builds the variants into the persistent
compilation cache (``DEEPLINEAR_JAX_CACHE``), so several processes can build in parallel and a
later timing run finds them built. On the GPU: ``bash benchmarks/gpu_session.sh``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from functools import partial

import numpy as np

from deeplinear.core.backend import enable_compilation_cache, jax, jnp
from deeplinear.loop import fast_gd


def plain_step(W1, W2, L, T, lr):
    R = W1 @ W2 @ L.T - T
    G = 2 * R @ L
    return W1 - lr * G @ W2.T, W2 - lr * W1.T @ G


def plain(W1, W2, L, T, lr, steps):
    step = jax.vmap(plain_step)
    return jax.lax.scan(
        lambda c, _: (step(*c, L, T, lr[:, None, None]), None), (W1, W2), None, steps
    )[0]


def sharded_plain(steps: int):
    """The plain ``vmap`` with the runs split evenly across every local device."""
    return jax.jit(fast_gd.split_runs(partial(plain, steps=steps), jax.local_devices()))


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


def variants(names: list[str], steps: int) -> dict:
    """The candidates, by name, as jitted functions of (W1, W2, L, T, lr)."""
    out = {}
    for name in names:
        if name.startswith("batched"):  # batched or batched:TILE:DEVICES
            _, tile, count = [*name.split(":"), "", ""][:3]
            devices = jax.local_devices()[: int(count)] if count else None
            out[name] = jax.jit(
                partial(fast_gd.gd, steps=steps, tile=int(tile) if tile else None, devices=devices)
            )
        elif name.startswith("pallas"):  # pallas[:BLOCK[:WARPS[:FLAGS]]], FLAGS from "mkw"
            _, block, warps, flags = [*name.split(":"), "", "", ""][:4]
            out[name] = partial(
                fast_gd.gd_pallas,
                steps=steps,
                block=int(block) if block else None,
                num_warps=int(warps) if warps else None,
                hoist_m="m" in flags,
                k_registers="k" in flags,
                registers="w" in flags,
            )
        else:
            raise SystemExit(
                f"bench_throughput: unknown variant {name!r} "
                "(batched[:TILE:DEVICES], pallas:BLOCK:WARPS:FLAGS)"
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--runs", default="1000,10000,100000", help="batch sizes, comma-separated")
    parser.add_argument(
        "--variants",
        help="batched[:TILE:DEVICES], pallas[:BLOCK:WARPS], comma-separated (default: batched on "
        "a CPU, both on a GPU; pallas builds for about a minute per batch size)",
    )
    parser.add_argument("--precompile", action="store_true", help="build the variants, time none")
    args = parser.parse_args()
    enable_compilation_cache()
    devices = jax.local_devices()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__}, "
        f"{len(devices)} × {devices[0].device_kind}; seed size 10/6/6, k = 6, {args.steps} steps"
    )
    print(
        f"{'runs':>8} {'variant':<16} {'run-steps/s':>12} {'plain vmap':>12} {'ratio':>7} "
        f"{'vmap, split':>12} {'ratio':>7} {'compile (s)':>14} {'max rel diff':>13}"
    )
    rng = np.random.default_rng(0)
    slow = jax.jit(lambda *a: plain(*a, args.steps))
    split = sharded_plain(args.steps) if len(devices) > 1 else None
    names = args.variants or ("batched" if jax.default_backend() == "cpu" else "batched,pallas")
    candidates = variants(names.split(","), args.steps)
    for b in map(int, args.runs.split(",")):
        data = [
            rng.standard_normal((b, 10, 6)),
            rng.standard_normal((b, 6, 6)),
            30 * rng.standard_normal((b, 6, 6)),
            rng.standard_normal((b, 10, 6)),
            np.full(b, 1e-6),
        ]
        data = [jnp.asarray(x) for x in data]
        if args.precompile:
            for name, fast in candidates.items():
                start = time.perf_counter()
                try:
                    # lowered exactly as the timing run calls it, so it finds the same cache entry
                    lower = getattr(fast, "lower", None) or partial(
                        fast.func.lower, **fast.keywords
                    )
                    lower(*data).compile()
                except Exception as error:  # reported, as in the timing run
                    print(f"{b:>8} {name:<16} failed: {type(error).__name__}: {str(error)[:300]}")
                    continue
                print(f"{b:>8} {name:<16} built in {time.perf_counter() - start:.1f} s", flush=True)
            continue
        reference, t_plain, c_plain = timed(slow, data)
        t_split = timed(split, data)[1] if split is not None and b % len(devices) == 0 else np.nan
        steps = b * args.steps
        for name, fast in candidates.items():
            try:
                z, t_fast, c_fast = timed(fast, data)
            except Exception as error:  # a candidate that does not build here is reported
                print(f"{b:>8} {name:<16} failed: {type(error).__name__}: {str(error)[:300]}")
                continue
            diff = max(
                float(jnp.max(jnp.abs(r - o)) / jnp.max(jnp.abs(r))) for r, o in zip(reference, z)
            )
            print(
                f"{b:>8} {name:<16} {steps / t_fast:>12.3g} {steps / t_plain:>12.3g} "
                f"{t_plain / t_fast:>7.2f} {steps / t_split:>12.3g} {t_split / t_fast:>7.2f} "
                f"{c_plain:>6.2f} / {c_fast:<5.2f} {diff:>13.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()

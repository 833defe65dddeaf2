"""The notebook's experiment as data: its grids, lengths and identity (no heavy imports).

Kept apart from ``reproduce`` so the CLI can check arguments and claim ``--out`` before JAX loads.
"""

from __future__ import annotations

from pathlib import Path

from .errors import UsageError

GD_RATES = (1e-6, 1e-5, 1e-4, 1e-3)
ADAM_RATES = (1e-5, 1e-4, 1e-3, 1e-2)
LM_RATES = (0.05, 0.2)
FIRST_ORDER_STEPS = 3000
LM_STEPS = 200
RCOND_CHOICES = ("modern", "2017", "both")
LM_FIDELITY_FLOOR = 1e-12  # LM is compared only while loss > this × the initial loss


def default_out(seed: int) -> Path:
    return Path("runs") / f"reproduce-seed{seed}"


def experiment_identity(seed: int, rcond: str) -> dict:
    """What makes two reproductions the same experiment (stored in ``experiment.json``)."""
    return {"experiment": "reproduce", "seed": seed, "rcond": rcond}


def validate(seed, rcond: str) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, got {seed!r}")
    if seed >= 2**32:
        raise UsageError(f"--seed must be below 2**32 (NumPy's legacy seeding), got {seed}")
    if rcond not in RCOND_CHOICES:
        raise UsageError(f"--rcond must be one of {', '.join(RCOND_CHOICES)}, got {rcond!r}")

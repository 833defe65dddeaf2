"""The notebook's experiment as data: its grids, lengths and identity (no heavy imports).

Kept apart from ``reproduce`` so the CLI can check arguments and claim ``--out`` before JAX loads.
The batches run in the compiled loop are a run file (``run_file``: ``examples/seed.toml``'s
problem, initial weights and methods), executed as ``deeplinear run`` executes one; each names
the function of ``notebook.py`` (the 2017 algorithm in NumPy) that ``reproduce --check`` compares
it with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deeplinear.errors import UsageError

GD_RATES = (1e-6, 1e-5, 1e-4, 1e-3)
ADAM_RATES = (1e-5, 1e-4, 1e-3, 1e-2)
LM_RATES = (0.05, 0.2)
FIRST_ORDER_STEPS = 3000
LM_STEPS = 200
RCOND_CHOICES = ("modern", "2017", "both")
LM_FIDELITY_FLOOR = 1e-12  # LM is compared only while loss > this × the initial loss


@dataclass(frozen=True)
class Batch:
    """One batch of the notebook's experiment: a registered method, its grid and length, and its
    NumPy reference ``notebook.<reference>(X, Y, W1, W2, rate, steps, *reference_options)``."""

    method: str
    learning_rates: tuple[float, ...]
    steps: int
    reference: str
    reference_options: tuple = ()
    variant: str = ""  # the table's ``variant`` of its runs
    fidelity_floor: float | None = None  # compared only while loss > this × the initial loss


FIRST_ORDER = (
    Batch("tf1-gd", GD_RATES, FIRST_ORDER_STEPS, "gradient_descent"),
    Batch("tf1-adam", ADAM_RATES, FIRST_ORDER_STEPS, "adam"),
)
LM = Batch(
    "seed-lm",
    LM_RATES,
    LM_STEPS,
    "levenberg_marquardt",
    ("modern",),
    "structured minimum-norm step (modern rcond)",
    LM_FIDELITY_FLOOR,
)
# the runs the summary's findings quote: the GD run the notebook thought stuck, the LM run whose
# floor it misread (both as (batch, learning rate))
SLOW_GD_RUN = (FIRST_ORDER[0], 1e-5)
LM_RUN = (LM, 0.2)
# the 2017 setting of LM is not run in the loop: notebook.py's literal algorithm, in NumPy
LITERAL_LM_OPTIONS = ("2017",)
LITERAL_LM_VARIANT = "notebook literal: Kronecker matrix + lstsq(rcond=-1), NumPy (2017 setting)"


def batches(rcond: str) -> tuple[Batch, ...]:
    """The batches run in the compiled loop for ``rcond`` (the modern LM unless only 2017)."""
    return FIRST_ORDER + ((LM,) if rcond in ("modern", "both") else ())


def run_file(seed: int, rcond: str) -> dict:
    """The run file (parsed TOML, ``config.parse``'s input) of the loop's batches: the
    notebook's problem and its own initial weights, one record per step, no diagnostics."""
    return {
        "name": "seed notebook (Dec 2017)",
        "seed": seed,
        "generator": "numpy",
        "record_every": 1,
        "checkpoints": 0,
        "problem": {"kind": "notebook", "input": 6, "output": 10, "samples": 1000},
        "model": {"hidden": [6]},
        "init": {"kind": "notebook"},
        "methods": [
            {"name": b.method, "learning_rates": list(b.learning_rates), "steps": b.steps}
            for b in batches(rcond)
        ],
    }


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

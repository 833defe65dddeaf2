"""Learning-rate grids as a sweep file gives them: a list, or ``{min, max, num, scaling = "log" |
"linear"}`` (``grid``), a log grid drawn the same by every NumPy (``log_grid``).
"""

from __future__ import annotations

import decimal
import math

import numpy as np

from deeplinear.errors import UsageError
from deeplinear.experiment import config as configs

MAX_GRID = 10_000  # values in one learning-rate grid


def log_grid(low: float, high: float, num: int) -> list[float]:
    """``num`` values from ``low`` to ``high`` equally spaced in log10, each 10**y correctly
    rounded for the float64 exponents y of ``linspace(log10 low, log10 high, num)``, the ends
    exactly ``low`` and ``high``. NumPy's ``power`` is not correctly rounded and its last bit
    changed between releases (``geomspace(1e-3, 1e-1, 6)[2]``: …801929, now …80193): a grid,
    and so a group's id, must not depend on the NumPy it was drawn with."""
    exponents = np.linspace(math.log10(low), math.log10(high), num).tolist()
    with decimal.localcontext() as context:
        context.prec = 40  # far past float64's 17 digits: the rounding to float64 is exact
        values = [float(decimal.Decimal(10) ** decimal.Decimal(y)) for y in exponents]
    values[0], values[-1] = float(low), float(high)
    return values


def grid(value, path: str) -> list[float]:
    """A list, or ``{min, max, num, scaling = "log" | "linear"}``, as a list of numbers."""
    if isinstance(value, list):
        if not value:
            raise UsageError(f"{path} is an empty grid: give at least one value")
        if len(value) > MAX_GRID:
            raise UsageError(f"{path} has {len(value)} values, more than {MAX_GRID}: use fewer")
        return value
    if not isinstance(value, dict):
        raise UsageError(f"{path} must be a list or a table {{min, max, num, scaling}}")
    unknown = sorted(set(value) - {"min", "max", "num", "scaling"})
    if unknown:
        raise UsageError(f"unknown key {path}.{unknown[0]} (allowed: min, max, num, scaling)")
    low = configs.require_number(value.get("min"), f"{path}.min")
    high = configs.require_number(value.get("max"), f"{path}.max")
    num = configs.require_int(value.get("num"), f"{path}.num", 1, MAX_GRID)
    scaling = configs.require_choice(
        value.get("scaling", "log"), f"{path}.scaling", ("log", "linear")
    )
    if high < low:
        raise UsageError(f"{path}.max must be ≥ {path}.min, got {high} < {low}")
    if high == low and num > 1:
        raise UsageError(
            f"{path}: min = max = {low} gives {num} equal values (one run each, the same run): "
            "use num = 1, or widen the range"
        )
    if scaling == "log":
        if low <= 0:
            raise UsageError(f"{path}.min must be > 0 for a log grid, got {low}")
        values = log_grid(low, high, num)
    else:
        values = np.linspace(low, high, num).tolist()
    if len(set(values)) != len(values):
        raise UsageError(
            f"{path}: {num} values between {low} and {high} are not all distinct in float64: "
            "use fewer (num) or widen the range"
        )
    return values

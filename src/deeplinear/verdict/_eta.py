"""How an ETA in steps reads, for the fit's verdict and the recovery's alike.

An extrapolated interval is an ETA only where it says something: its high end finite, within
``HORIZON`` steps, and at most ``SPAN`` times its low end. Wider (fitted rates that disagree by
orders of magnitude, a power law with a small exponent), it reads "no reliable ETA … between
3e+05 and ≫1e+10 more steps": the low end (what the fastest fitted rate says) and where the
high end is, without a number of 47 digits' magnitude.
"""

from __future__ import annotations

import numpy as np

SPAN = 100.0  # an interval wider than ×100 is no ETA
HORIZON = 1e10  # steps past which a number of steps is "≫1e+10"


def fmt_steps(n: float) -> str:
    """``∞``, ``3e+05`` (from 1e4 on), ``950``."""
    return "∞" if not np.isfinite(n) else f"{n:.2g}" if n >= 1e4 else f"{n:.0f}"


def fmt_range(low: float, high: float) -> str:
    """``≈1.1e+05`` where the ends agree within 5 %, else ``4.3e+04–7.8e+04``."""
    if np.isclose(low, high, rtol=0.05):
        return f"≈{fmt_steps(low)}"
    return f"{fmt_steps(low)}–{fmt_steps(high)}"


def reliable(low: float, high: float) -> bool:
    """Whether ``low``–``high`` more steps is an ETA a reader can use."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return False
    return high <= HORIZON and high <= SPAN * max(low, 1.0)


def _bound(n: float) -> str:
    return fmt_steps(n) if n <= HORIZON or not np.isfinite(n) else f"≫{HORIZON:.0e}"


def reaches(target: str, low: float, high: float, seconds: str = "") -> str:
    """``reaches TARGET in LOW–HIGH more steps SECONDS`` or, where the interval is no ETA,
    ``no reliable ETA to TARGET: between LOW and ≫1e+10 more steps`` (``seconds``, the time
    here, left out then: it would span as widely)."""
    if reliable(low, high):
        return f"reaches {target} in {fmt_range(low, high)} more steps{seconds}"
    return f"no reliable ETA to {target}: between {fmt_steps(low)} and {_bound(high)} more steps"

"""The limits every estimate is checked against, and the one-line refusal over them.

Memory: half of this machine's RAM; time: one hour. Raise them with ``--max-memory GIB`` /
``--max-hours H`` or the environment variables ``DEEPLINEAR_MAX_MEMORY_GIB`` and
``DEEPLINEAR_MAX_HOURS`` (which sweeps' Ray workers inherit). What a run costs is estimated in
``experiment.budget``; files about to be read are checked here (``check_bytes``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from deeplinear.errors import UsageError

MEMORY_ENV = "DEEPLINEAR_MAX_MEMORY_GIB"
TIME_ENV = "DEEPLINEAR_MAX_HOURS"
DEFAULT_HOURS = 1.0
GIB = 2**30
BYTES_PER_VALUE = 8
RUNTIME_BYTES = 2**28  # JAX, XLA and the interpreter themselves


@dataclass(frozen=True)
class Limits:
    """The most memory (bytes) and time (seconds) an estimate may reach."""

    memory_bytes: float
    seconds: float

    @classmethod
    def from_env(cls) -> Limits:
        """Half this machine's memory and one hour, unless the environment raises them."""
        memory = _env_number(MEMORY_ENV)
        hours = _env_number(TIME_ENV)
        return cls(
            machine_bytes() / 2 if memory is None else memory * GIB,
            3600 * (DEFAULT_HOURS if hours is None else hours),
        )


def _env_number(name: str) -> float | None:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"environment variable {name} must be a positive number, got {text!r}")
    return value


def machine_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume the project's 24 GiB
        return 24 * GIB


@dataclass(frozen=True)
class Estimate:
    """Peak bytes and seconds, and what dominates each (for the message's advice)."""

    bytes: float
    seconds: float
    memory_advice: str = ""
    time_advice: str = ""

    def describe(self) -> str:
        return f"~{_size(self.bytes)} of memory, ~{_duration(self.seconds)}"


def _size(value: float) -> str:
    return f"{value / GIB:.3g} GiB" if value >= GIB / 10 else f"{value / 2**20:.3g} MiB"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 86400:.3g} days"


def check(estimate: Estimate, limits: Limits, what: str) -> None:
    """Refuse, in one line with the number, the limit and how to raise it, an estimate over."""
    if estimate.bytes > limits.memory_bytes:
        raise UsageError(
            f"{what} would need ~{_size(estimate.bytes)} of memory, over the limit of "
            f"{_size(limits.memory_bytes)}: {estimate.memory_advice or 'make it smaller'}; or "
            f"raise the limit (--max-memory GIB, or {MEMORY_ENV})"
        )
    if estimate.seconds > limits.seconds:
        raise UsageError(
            f"{what} would take ~{_duration(estimate.seconds)}, over the limit of "
            f"{_duration(limits.seconds)}: {estimate.time_advice or 'make it smaller'}; or raise "
            f"the limit (--max-hours H, or {TIME_ENV})"
        )


def check_bytes(need: float, limits: Limits, what: str) -> None:
    """Refuse ``need`` bytes over the memory limit (files about to be read)."""
    check(Estimate(need, 0.0, "use smaller arrays"), limits, what)

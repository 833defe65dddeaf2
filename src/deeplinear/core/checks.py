"""The small checks every file format shares (run files, sweep files, problem kinds): each
value against its expected type and range, refused in one line naming its TOML path."""

from __future__ import annotations

import math

from deeplinear.errors import UsageError


def type_name(value) -> str:
    return type(value).__name__


def require_int(value, path: str, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{path} must be an integer, got {value!r} ({type_name(value)})")
    if minimum is not None and value < minimum:
        raise UsageError(f"{path} must be ≥ {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise UsageError(f"{path} must be ≤ {maximum}, got {value}")
    return value


def require_number(value, path: str, minimum=None, *, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{path} must be a number, got {value!r} ({type_name(value)})")
    if not math.isfinite(value):
        raise UsageError(f"{path} must be finite, got {value!r}")
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        raise UsageError(f"{path} must be {'>' if strict else '≥'} {minimum}, got {value!r}")
    return float(value)


def require_choice(value, path: str, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise UsageError(f"{path} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def require_flag(value, path: str) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"{path} must be true or false, got {value!r}")
    return value


def check_keys(table: dict, allowed: set, path: str) -> None:
    if not isinstance(table, dict):
        raise UsageError(f"{path} must be a table, got {table!r}")
    unknown = sorted(set(table) - allowed)
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise UsageError(f"unknown key {where} (allowed here: {', '.join(sorted(allowed))})")

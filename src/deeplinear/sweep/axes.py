"""A sweep's axes: the ``[axes]`` table checked (TOML paths into the run file, non-empty lists
of distinct finite values, a number of axis points that can be enumerated), an axis point set
into the run file (``with_point``), how points and values print in run ids and axis columns
(``point_label``, ``value_text``), and a method's ``only_at`` (the axis values it runs at).
"""

from __future__ import annotations

import copy
import json
import math

from deeplinear.errors import UsageError
from deeplinear.experiment import config as configs

MAX_GROUPS = 10_000  # axis points × methods in one sweep: split a larger one into several files
NOT_AXES = {
    "seed": "the seed is not an axis: list the seeds in seeds = [...] (or give a count)",
    "seeds": "seeds is not an axis: give seeds = [...] at the top of the sweep file",
    "methods": "methods are not an axis: add one [[methods]] table per variant",
    "name": "the sweep's name is not an axis",
    "targets": "targets is not an axis: list them in targets = [...]",
    "recovery_targets": "recovery_targets is not an axis: list them in recovery_targets = [...]",
    "select": "select is not an axis: set select = ... once",
    "axes": "axes cannot be an axis",
    "extend_grids": "extend_grids is not an axis: set extend_grids = true once",
    "max_grid_extensions": "max_grid_extensions is not an axis: set it once",
}


def with_point(base: dict, point) -> dict:
    """A deep copy of ``base`` with each (TOML path, value) of ``point`` set."""
    data = copy.deepcopy(base)
    for path, value in point:
        *parents, leaf = path.split(".")
        table = data
        for i, key in enumerate(parents):
            table = table.setdefault(key, {})
            if not isinstance(table, dict):
                through = ".".join(parents[: i + 1])
                raise UsageError(
                    f'axes."{path}" goes through {through}, which is not a table: '
                    "give the path of a value inside a table, e.g. problem.condition_number"
                )
        table[leaf] = value
    return data


def check_axes(axes) -> int:
    """The axes table checked (valid paths, non-empty lists of distinct finite values, a number
    of axis points that can be enumerated); returns that number."""
    if not isinstance(axes, dict):
        raise UsageError("axes must be a table of TOML paths to lists")
    points = 1
    for key, values in axes.items():
        where = f'axes."{key}"'
        parts = key.split(".")
        if not all(parts):
            raise UsageError(f"{where} is not a path: name a value, e.g. problem.condition_number")
        if parts[0] in NOT_AXES:
            raise UsageError(f"{where}: {NOT_AXES[parts[0]]}")
        if parts[0] not in configs.TOP_KEYS:
            allowed = ", ".join(sorted(configs.TOP_KEYS - set(NOT_AXES)))
            raise UsageError(
                f"{where}: unknown key {parts[0]} (an axis path starts with one of {allowed})"
            )
        if not isinstance(values, list) or not values:
            raise UsageError(f"{where} is an empty grid: give a non-empty list")
        points *= len(values)
    if points > MAX_GROUPS:
        sizes = " × ".join(str(len(v)) for v in axes.values())
        raise UsageError(
            f"axes has {sizes} = {points} axis points, more than {MAX_GROUPS}: split the sweep "
            "into several files or use fewer axis values"
        )
    for key, values in axes.items():
        where = f'axes."{key}"'
        seen: dict[str, int] = {}
        for i, value in enumerate(values):
            bad = _non_finite(value)
            if bad is not None:
                raise UsageError(f"{where}[{i}] holds {bad}: give finite numbers")
            label = value_text(value)
            same = json.dumps(value, sort_keys=True, default=str)
            for name in (label, same):
                if seen.setdefault(name, i) != i:
                    raise UsageError(
                        f"{where}[{i}] repeats {where}[{seen[name]}] ({label}): the same axis "
                        "point twice would be the same runs; remove one"
                    )
    return points


def _non_finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, list):
        for item in value:
            if (bad := _non_finite(item)) is not None:
                return bad
    if isinstance(value, dict):
        for item in value.values():
            if (bad := _non_finite(item)) is not None:
                return bad
    return None


def only_at(value, axes: dict, path: str) -> dict[str, set[str]] | None:
    """A method's ``only_at``: per axis path, the values (as JSON) at which it runs."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise UsageError(
            f"{path} must be a table of axis paths to lists of their values, e.g. "
            '{"model.hidden" = [[100]]}'
        )
    out = {}
    for key, values in value.items():
        if key not in axes:
            known = ", ".join(axes) or "none"
            raise UsageError(f'{path}."{key}" is not an axis of the sweep (axes: {known})')
        if not isinstance(values, list) or not values:
            raise UsageError(f'{path}."{key}" must be a non-empty list of that axis\'s values')
        allowed = {_same(v) for v in axes[key]}
        for j, v in enumerate(values):
            if _same(v) not in allowed:
                raise UsageError(
                    f'{path}."{key}"[{j}] = {value_text(v)} is not a value of axes."{key}": '
                    "name values the axis has"
                )
        out[key] = {_same(v) for v in values}
    return out


def _same(value) -> str:
    """An axis value as ``only_at`` compares it (1 and 1.0 alike, as TOML tells them apart)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return json.dumps(value, sort_keys=True, default=str)


def matches(point, only: dict[str, set[str]] | None) -> bool:
    """Whether a method with this ``only_at`` runs at ``point``."""
    return only is None or all(_same(v) in only[k] for k, v in point if k in only)


def point_label(point) -> str:
    """An axis point's (path, value) pairs as run ids show them: ``problem.samples=100``."""
    return ",".join(f"{k}={value_text(v)}" for k, v in point) or "base"


def value_text(value) -> str:
    """An axis value as it appears in run ids and axis columns: floats as short as ``:g``
    prints them where that is exact, else exactly, so distinct values never print alike."""
    if isinstance(value, float):
        return configs.format_number(value)
    return json.dumps(value, separators=(",", ":"), default=str)

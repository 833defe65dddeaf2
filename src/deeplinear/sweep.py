"""Sweeps: a product of problem axes × methods × learning-rate grids × seeds, run in groups that
are written atomically, so an interrupted sweep resumes where it stopped.

A sweep file is a run file (``config.py``) plus:

```toml
seeds = 10                      # or a list, e.g. [0, 3, 7]
targets = [1e-10]               # relative to the initial loss, for the analysis
[axes]                          # each key a TOML path into the run file, each value a list
"problem.condition_number" = [1e1, 1e3, 1e5]
[[methods]]
name = "gd"
learning_rates = {min = 1e-6, max = 1e-4, num = 12, scaling = "log"}   # or a list
```

A **group** is one axis point and one method (with its hyperparameters): its runs are every seed
× every learning rate, one compiled program for all of them (the seeds reuse it: objectives and
weights are arguments, not constants). Each finished group is one Parquet file under
``groups/``, written atomically, so ``kill -9`` at any moment loses only the unfinished group and
never duplicates rows; the manifest lists what the sweep contains.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import config as configs
from .errors import UsageError
from .rundir import write_atomic

SWEEP_KEYS = {"seeds", "axes", "targets"}
MAX_RUNS = 200_000  # refuse sweeps that would not fit: rows × columns × 8 bytes, see estimate


@dataclass(frozen=True)
class Group:
    """One axis point and one method: all its seeds and learning rates."""

    id: str
    point: dict  # TOML path → value
    method: configs.MethodSpec
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class Sweep:
    source: str
    base: dict  # the run-file part, parsed TOML
    axes: dict
    seeds: tuple[int, ...]
    targets: tuple[float, ...]
    groups: tuple[Group, ...]
    base_dir: Path

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]

    def run_config(self, group: Group, seed: int) -> configs.RunConfig:
        """The run file of one seed of a group (checked like any run file)."""
        data = _with_point(self.base, group.point)
        data["seed"] = seed
        data.setdefault("checkpoints", 0)  # Gauss-Newton spectra are for single runs
        data["methods"] = [_method_table(group.method)]
        return configs.parse(data, base_dir=self.base_dir, source=self.source)


def _method_table(spec: configs.MethodSpec) -> dict:
    return {
        "name": spec.name,
        "learning_rates": list(spec.learning_rates),
        "steps": spec.steps,
        **spec.hyperparameters,
    }


def _with_point(base: dict, point: dict) -> dict:
    data = copy.deepcopy(base)
    for path, value in point.items():
        *parents, leaf = path.split(".")
        table = data
        for key in parents:
            table = table.setdefault(key, {})
        table[leaf] = value
    return data


def grid(value, path: str) -> list[float]:
    """A list, or ``{min, max, num, scaling = "log" | "linear"}``, as a list of numbers."""
    if isinstance(value, list):
        if not value:
            raise UsageError(f"{path} is an empty grid: give at least one value")
        return value
    if not isinstance(value, dict):
        raise UsageError(f"{path} must be a list or a table {{min, max, num, scaling}}")
    unknown = sorted(set(value) - {"min", "max", "num", "scaling"})
    if unknown:
        raise UsageError(f"unknown key {path}.{unknown[0]} (allowed: min, max, num, scaling)")
    low = configs.require_number(value.get("min"), f"{path}.min")
    high = configs.require_number(value.get("max"), f"{path}.max")
    num = configs.require_int(value.get("num"), f"{path}.num", 1)
    scaling = configs.require_choice(
        value.get("scaling", "log"), f"{path}.scaling", ("log", "linear")
    )
    if high < low:
        raise UsageError(f"{path}.max must be ≥ {path}.min, got {high} < {low}")
    if scaling == "log":
        if low <= 0:
            raise UsageError(f"{path}.min must be > 0 for a log grid, got {low}")
        return np.geomspace(low, high, num).tolist()
    return np.linspace(low, high, num).tolist()


def load(path: str | Path) -> Sweep:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UsageError(f"sweep file {path} does not exist: check the path") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"sweep file {path} is not valid TOML: {error}") from None
    return parse(data, source=text, base_dir=path.parent)


def parse(data: dict, *, source: str = "", base_dir: Path = Path(".")) -> Sweep:
    """Check a sweep file: every axis point and method is checked as a run file would be."""
    data = dict(data)
    seeds = data.pop("seeds", 1)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise UsageError(f"seeds must be ≥ 1 (or a list of seeds), got {seeds}")
        seeds = list(range(seeds))
    if not isinstance(seeds, list) or not seeds:
        raise UsageError("seeds must be a positive integer or a non-empty list of seeds")
    seeds = tuple(configs.require_int(s, f"seeds[{i}]", 0) for i, s in enumerate(seeds))
    targets = data.pop("targets", [1e-10])
    if not isinstance(targets, list) or not targets:
        raise UsageError("targets must be a non-empty list, e.g. [1e-10]")
    targets = tuple(
        configs.require_number(t, f"targets[{i}]", 0, strict=True) for i, t in enumerate(targets)
    )
    axes = data.pop("axes", {})
    if not isinstance(axes, dict):
        raise UsageError("axes must be a table of TOML paths to lists")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise UsageError(f"axes.{key!r} is an empty grid: give a non-empty list")
    methods = data.get("methods")
    if not isinstance(methods, list) or not methods:
        raise UsageError("methods is missing or empty: add at least one [[methods]] table")
    for i, table in enumerate(methods):
        if isinstance(table, dict) and "learning_rates" in table:
            table["learning_rates"] = grid(table["learning_rates"], f"methods[{i}].learning_rates")
    data.setdefault("seed", seeds[0])
    checked = configs.parse(data, base_dir=base_dir, source=source)  # methods, shared sections
    points = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    groups = []
    for point in points:
        configs.parse(_with_point(data, point), base_dir=base_dir, source=source)  # each point
        label = ",".join(f"{k}={_short(v)}" for k, v in point.items()) or "base"
        for spec in checked.methods:
            hyper = "".join(f",{k}={v}" for k, v in sorted(spec.hyperparameters.items()))
            key = json.dumps([point, spec.name, spec.hyperparameters], sort_keys=True, default=str)
            digest = hashlib.sha256(key.encode()).hexdigest()[:10]
            groups.append(Group(f"{label}|{spec.name}{hyper}|{digest}", point, spec, seeds))
    sweep = Sweep(source, data, axes, seeds, targets, tuple(groups), Path(base_dir))
    runs = sum(len(g.seeds) * len(g.method.learning_rates) for g in groups)
    if runs > MAX_RUNS:
        raise UsageError(
            f"the sweep has {runs} runs, more than this machine's limit {MAX_RUNS}: "
            "shrink the grids or the seeds"
        )
    return sweep


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value, separators=(",", ":"))


def group_file(directory: Path, group: Group) -> Path:
    return directory / "groups" / (group.id.rsplit("|", 1)[1] + ".parquet")


def run(
    sweep: Sweep,
    directory: str | Path,
    *,
    progress: Callable[[int, int, Group], None] | None = None,
) -> list[Path]:
    """Run every group not yet on disk; return the group files (old and new)."""
    from . import runfile  # heavy: JAX
    from .results import provenance, write_table

    directory = Path(directory)
    (directory / "groups").mkdir(parents=True, exist_ok=True)
    manifest = {
        "sweep_sha256": sweep.digest,
        "groups": [
            {
                "id": g.id,
                "file": str(group_file(directory, g).relative_to(directory)),
                "point": g.point,
                "method": g.method.name,
            }
            for g in sweep.groups
        ],
    }
    write_atomic(directory / "manifest.json", json.dumps(manifest, indent=2, default=str).encode())
    write_atomic(directory / "sweep.toml", sweep.source.encode())
    files = []
    for index, group in enumerate(sweep.groups):
        path = group_file(directory, group)
        files.append(path)
        if path.exists():
            continue  # finished earlier: resume skips it
        tables = []
        for seed in group.seeds:
            result = runfile.execute(sweep.run_config(group, seed))
            table = result.table
            for key, value in group.point.items():
                table = table.append_column(f"axis:{key}", pa.array([_short(value)] * len(table)))
            tables.append(table.append_column("group", pa.array([group.id] * len(table))))
        combined = pa.concat_tables(tables, promote_options="default")
        write_table(combined, path, provenance(sweep=sweep.digest, group=group.id))
        if progress:
            progress(index + 1, len(sweep.groups), group)
    return files


def read(directory: str | Path) -> pa.Table:
    """Every finished group's rows, as one table (also readable as a Parquet dataset)."""
    files = sorted((Path(directory) / "groups").glob("*.parquet"))
    if not files:
        raise UsageError(f"{directory} holds no finished groups: run 'deeplinear sweep' first")
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")

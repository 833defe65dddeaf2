"""Sweeps: a product of problem axes × methods × learning-rate grids × seeds, run in groups that
are written atomically, so an interrupted sweep resumes where it stopped.

A sweep file is a run file (``config.py``) plus:

```toml
seeds = 10                      # or a list, e.g. [0, 3, 7]
targets = [1e-10]               # relative to the initial loss, for the analysis
# recovery_targets = [1e-14]    # ‖W − M‖_F/‖M‖_F, for a measured problem with its truth
                                # (default: √ of the last target)
[axes]                          # each key a TOML path into the run file, each value a list
"problem.condition_number" = [1e1, 1e3, 1e5]
[[methods]]
name = "gd"
learning_rates = {min = 1e-6, max = 1e-4, num = 12, scaling = "log"}   # or a list
# extend_grid = false           # this method's grid is not extended (default: extend_grids)
# learning_rate_scaling = "per_sample"  # rates ÷ the loss's terms (samples, observations, …)
# only_at = {"problem.condition_number" = [1e1]}  # this method at these axis values only
```

``only_at`` runs a method at the axis points whose value on each named axis is one of those
listed (e.g. a convex baseline that does not depend on the network's depth, once per data set).

**Grids extended past their edge** (``extend_grids = true``, at most ``max_grid_extensions``
times, default 6): after a group's runs, while its best learning rate (by ``select`` and the first
target, ``tuning``) is the grid's smallest or largest, ``EXTENSION_RATES`` more rates beyond that
edge, continuing the grid's spacing (×ratio for a geometric grid, +step for an arithmetic one),
run as one more batch for the same seeds. The best is ``tuning``'s: a rate at which some seed
diverged is not eligible while another rate had none. It stops when the best is interior
because a neighbouring rate is not eligible (``diverged``: that rate is the stability limit),
when it is interior otherwise (``interior``), at the cap (``cap reached``), or when a linear grid
would reach zero (``non-positive``). The group
file holds every rate's rows; its metadata and ``manifest.json``'s entry hold ``grid_extension``
(``added`` rates in the sweep file's units, ``side``, ``stopped``, ``extensions``, ``max``, and
``best_learning_rate`` and its ``edge`` over every rate run, as the rows give the rate).

**Time alone**: every group also times one run alone (its best rate, its first seed, the same
steps, a batch of one): column ``seconds_alone`` = step × ``seconds_per_step_alone`` (group
metadata, with ``alone``: the run timed), so the time a method is charged does not depend on how
many runs shared its batch. Out-of-loop methods run alone already: their own ``seconds``.

A **group** is one axis point and one method (with its hyperparameters): its runs are every seed
× every learning rate, one compiled program for all of them (the seeds reuse it: objectives and
weights are arguments, not constants). Each finished group is one Parquet file under
``groups/``, written atomically, so ``kill -9`` at any moment loses only the unfinished group and
never duplicates rows; the manifest lists what the sweep contains.

Group files are not trusted blindly: after each one its sha256 is written beside it
(``groups/_<name>.sha256``, ``sha256sum``'s format). A resume recomputes every group whose file
does not match (and says so); ``read`` (and so ``report``) refuses it in one line.
"""

from __future__ import annotations

import copy
import dataclasses
import decimal
import hashlib
import io
import itertools
import json
import math
import os
import socket
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from deeplinear.core import limits
from deeplinear.core.backend import jax
from deeplinear.diagnostics import probes as diagnostics
from deeplinear.diagnostics.sharpness import SharpnessProbe
from deeplinear.errors import UsageError
from deeplinear.experiment import budget, execution
from deeplinear.experiment import config as configs
from deeplinear.loop import runner
from deeplinear.methods import METHODS, make_method, recorded_columns, register
from deeplinear.problems.kinds import kind_of
from deeplinear.store import directories
from deeplinear.store.directories import write_atomic
from deeplinear.store.groups import NOT_WRITTEN, checksum_file, verify_group, write_group
from deeplinear.store.results import SCHEMA, batch_table, provenance
from deeplinear.sweep import tuning
from deeplinear.sweep.watchdog import GroupStalledError, Worker, WorkerDiedError
from deeplinear.verdict import default_recovery_target

try:
    import fcntl
except ImportError:  # not POSIX: group files are written without the folder's lock
    fcntl = None

SELECT = tuning.SELECT  # how each group's best learning rate is chosen
MAX_GRID_EXTENSIONS = 6  # default cap of ``extend_grids``
EXTENSION_RATES = 2  # rates added beyond the edge by one extension
METADATA = b"deeplinear"  # results.METADATA_KEY: a file's provenance (JSON)
GROUP_KEY = b"deeplinear.group"  # run_group's table: its grid_extension and time alone (JSON)
SCALINGS = ("none", "per_sample")  # per_sample: η / n for a sample loss (it grows with n)
STALL_SECONDS = 600.0  # ``deeplinear sweep``: a group silent this long is stopped (--stall-seconds)
BYTES_PER_VALUE = 8


@dataclass(frozen=True)
class Group:
    """One axis point and one method: all its seeds and learning rates.

    ``digest`` hashes everything that decides the group's rows (the run file at its point, the
    method's table, the seeds, the scaling): a changed grid, length or section makes a new group
    file instead of resuming the old one. Its ``id`` and file name are derived from the fields.
    """

    point: tuple[tuple[str, object], ...]  # (TOML path, value) per axis, in the axes' order
    method: configs.MethodSpec
    seeds: tuple[int, ...]
    digest: str
    scaling: str = "none"  # "per_sample": the learning rates are divided by n
    extensions: int = 0  # at most this many grid extensions past the edge (0: none)

    @property
    def label(self) -> str:
        """The axis point as run ids and messages show it: ``problem.samples=100`` (or base)."""
        return point_label(self.point)

    @property
    def name(self) -> str:
        """``label|method(,hyperparameters)``: the group in messages."""
        spec = self.method
        hyper = "".join(f",{k}={v}" for k, v in sorted(spec.hyperparameters.items()))
        return f"{self.label}|{spec.name}{hyper}"

    @property
    def id(self) -> str:
        """``name|digest``: the ``group`` column and the manifest's entry."""
        return f"{self.name}|{self.digest}"

    @property
    def file_name(self) -> str:
        return f"{self.digest}.parquet"


@dataclass(frozen=True)
class Sweep:
    source: str
    base: dict  # the run-file part, parsed TOML
    axes: dict
    seeds: tuple[int, ...]
    targets: tuple[float, ...]
    groups: tuple[Group, ...]
    base_dir: Path
    select: str = "time_to_target"
    recovery_targets: tuple[float, ...] = ()  # as given; ``recovery_goals`` fills the default

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]

    def run_config(self, group: Group, seed: int) -> configs.RunConfig:
        """The run file of one seed of a group (checked like any run file)."""
        data = _with_point(self.base, group.point)
        data["seed"] = seed
        data.setdefault("checkpoints", 0)  # Gauss-Newton spectra are for single runs
        table = _method_table(group.method)
        samples = sample_count(data.get("problem", {}))
        if group.scaling == "per_sample" and samples is not None:
            table["learning_rates"] = [r / samples for r in table["learning_rates"]]
        data["methods"] = [table]
        return configs.parse(data, base_dir=self.base_dir, source=self.source)


def sample_count(problem: dict) -> float | None:
    """What ``learning_rate_scaling = "per_sample"`` divides a rate by: the terms the loss sums
    (``problem.samples``, default 1000; a completion's ``observations``, or its expected count
    p · rows · cols; a sensing problem's ``measurements``). None where the loss is no such sum
    (``samples = "population"``) or the count is not in the run file (an ``.npz`` problem)."""
    kind = kind_of(problem)
    return None if kind is None else kind.sample_count(problem)


def _method_table(spec: configs.MethodSpec) -> dict:
    return {
        "name": spec.name,
        "learning_rates": list(spec.learning_rates),
        "steps": spec.steps,
        **spec.hyperparameters,
    }


def _with_point(base: dict, point) -> dict:
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


MAX_GRID = 10_000  # values in one learning-rate grid
MAX_SEEDS = 1_000_000
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


def load(path: str | Path) -> Sweep:
    path = Path(path)
    text = configs.read_text(path, "sweep file")
    data = configs.parse_toml(text, path, "sweep file")
    return parse(data, source=text, base_dir=path.parent)


def load_stored(directory: str | Path) -> Sweep:
    """The sweep a results directory holds (``sweep.toml``), its relative paths (``.npz``
    problems) resolved where the sweep file was when it ran (``manifest.json``'s ``base_dir``),
    else beside the copy."""
    directory = Path(directory)
    try:
        base = json.loads((directory / "manifest.json").read_text()).get("base_dir")
    except (OSError, ValueError, AttributeError):
        base = None
    if not (isinstance(base, str) and Path(base).is_dir()):
        return load(directory / "sweep.toml")
    text = (directory / "sweep.toml").read_text()
    return parse(tomllib.loads(text), source=text, base_dir=Path(base))


def _check_axes(axes) -> int:
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
            label = _short(value)
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


def parse(data: dict, *, source: str = "", base_dir: Path = Path(".")) -> Sweep:
    """Check a sweep file: every axis point and method is checked as a run file would be, run
    ids are unique, and the largest group's memory and the sweep's time are within the limits
    (``limits.Limits``) — all before anything runs."""
    if not isinstance(data, dict):
        raise UsageError("a sweep file must be a TOML table")
    data = copy.deepcopy(data)  # the caller's tables stay as they were
    if "seed" in data:
        raise UsageError("seed: a sweep takes seeds = [...] (or a count), not seed: rename it")
    seeds = data.pop("seeds", 1)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise UsageError(f"seeds must be ≥ 1 (or a list of seeds), got {seeds}")
        if seeds > MAX_SEEDS:
            raise UsageError(f"seeds must be at most {MAX_SEEDS} (or a list of seeds), got {seeds}")
        seeds = list(range(seeds))
    if not isinstance(seeds, list) or not seeds:
        raise UsageError("seeds must be a positive integer or a non-empty list of seeds")
    if len(seeds) > MAX_SEEDS:
        raise UsageError(f"seeds lists {len(seeds)} seeds, more than {MAX_SEEDS}: use fewer")
    seeds = tuple(configs.require_int(s, f"seeds[{i}]", 0, 2**32 - 1) for i, s in enumerate(seeds))
    first: dict[int, int] = {}
    for i, s in enumerate(seeds):
        if first.setdefault(s, i) != i:
            raise UsageError(
                f"seeds[{i}] repeats seeds[{first[s]}] (seed {s}): the same seed twice would be "
                "the same runs; remove one"
            )
    targets = data.pop("targets", [1e-10])
    if not isinstance(targets, list) or not targets:
        raise UsageError("targets must be a non-empty list, e.g. [1e-10]")
    targets = tuple(
        configs.require_number(t, f"targets[{i}]", 0, strict=True) for i, t in enumerate(targets)
    )
    recovery_targets = _recovery_targets(data.pop("recovery_targets", None))
    axes = data.pop("axes", {})
    count = _check_axes(axes)
    select = configs.require_choice(data.pop("select", "time_to_target"), "select", SELECT)
    extend = _require_bool(data.pop("extend_grids", False), "extend_grids")
    cap = data.pop("max_grid_extensions", None)
    if cap is not None and not extend:
        raise UsageError(
            "max_grid_extensions is set but extend_grids is not: add extend_grids = true"
        )
    cap = configs.require_int(
        MAX_GRID_EXTENSIONS if cap is None else cap, "max_grid_extensions", 1, 100
    )
    methods = data.get("methods")
    if not isinstance(methods, list) or not methods:
        raise UsageError("methods is missing or empty: add at least one [[methods]] table")
    if count * len(methods) > MAX_GROUPS:
        raise UsageError(
            f"the sweep has {count} axis points × {len(methods)} methods = "
            f"{count * len(methods)} groups, more than {MAX_GROUPS}: split it into several "
            "sweep files or use fewer axis values"
        )
    scalings, extending, only = [], [], []
    data["methods"] = methods = [dict(t) if isinstance(t, dict) else t for t in methods]
    for i, table in enumerate(methods):
        if not isinstance(table, dict):
            continue
        only.append(_only_at(table.pop("only_at", None), axes, f"methods[{i}].only_at"))
        if "learning_rates" in table:
            table["learning_rates"] = grid(table["learning_rates"], f"methods[{i}].learning_rates")
        scaling = table.pop("learning_rate_scaling", "none")
        path = f"methods[{i}].learning_rate_scaling"
        scalings.append(configs.require_choice(scaling, path, SCALINGS))
        own = _require_bool(table.pop("extend_grid", extend), f"methods[{i}].extend_grid")
        extending.append(cap if own else 0)
    data["seed"] = seeds[0]
    configs.parse(data, base_dir=base_dir, source=source)  # methods, shared sections
    points = [tuple(zip(axes, values)) for values in itertools.product(*axes.values())]
    groups, labels = [], set()
    for point in points:
        at = _with_point(data, point)
        label = point_label(point)
        try:  # each point as the run file it is (its own steps, sections, …)
            at_point = configs.parse(at, base_dir=base_dir, source=source)
        except UsageError as error:
            if not point or str(error).startswith("axes."):
                raise
            raise UsageError(f"at the axis point {label}: {error}") from None
        if label in labels:  # distinct values print distinctly (_short): a safeguard
            raise UsageError(f"two axis points print alike ({label}): their run ids would collide")
        labels.add(label)
        sections = {k: v for k, v in at.items() if k != "methods"}
        if any(s == "per_sample" for s in scalings) and sample_count(at.get("problem", {})) is None:
            kind = kind_of(at.get("problem", {}))
            if kind is not None and kind.measured:  # a population loss: left unscaled
                raise UsageError(
                    f"at the axis point {label}: learning_rate_scaling = 'per_sample' needs the "
                    "count in the run file (problem.observations, probability or measurements); "
                    "an .npz problem's rates are given unscaled"
                )
        for spec, scaling, extensions, where in zip(at_point.methods, scalings, extending, only):
            if not _matches(point, where):
                continue  # the method runs only at the points its only_at names
            identity = [sections, _method_table(spec), seeds, scaling]
            if extensions and len(spec.learning_rates) > 1:
                identity.append(
                    {"grid_extensions": extensions, "select": select, "target": targets[0]}
                )
            else:
                extensions = 0  # one rate: no spacing to continue
            digest = hashlib.sha256(
                json.dumps(identity, sort_keys=True, default=str).encode()
            ).hexdigest()[:10]
            groups.append(Group(point, spec, seeds, digest, scaling, extensions))
    if len({g.digest for g in groups}) != len(groups):
        raise UsageError("two groups of the sweep would share a group file: report this as a bug")
    sweep = Sweep(
        source, data, axes, seeds, targets, tuple(groups), Path(base_dir), select,
        recovery_targets,
    )  # fmt: skip
    _check_memory(sweep)
    return sweep


def _recovery_targets(value) -> tuple[float, ...]:
    """``recovery_targets``: relative recovery errors in (0, 1), or none given."""
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        raise UsageError("recovery_targets must be a non-empty list, e.g. [1e-14]")
    out = []
    for i, t in enumerate(value):
        t = configs.require_number(t, f"recovery_targets[{i}]", 0, strict=True)
        if t >= 1:
            raise UsageError(
                f"recovery_targets[{i}] must be < 1 (a relative error ‖W − M‖/‖M‖), got {t:g}"
            )
        out.append(t)
    return tuple(out)


def recovery_goals(sweep: Sweep) -> tuple[float, ...]:
    """The recovery errors a report counts steps to: the sweep's ``recovery_targets``, else
    √ of its last loss target (a loss fallen by t is an error fallen by about √t)."""
    return sweep.recovery_targets or (default_recovery_target(sweep.targets),)


def _only_at(value, axes: dict, path: str) -> dict[str, set[str]] | None:
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
                    f'{path}."{key}"[{j}] = {_short(v)} is not a value of axes."{key}": '
                    "name values the axis has"
                )
        out[key] = {_same(v) for v in values}
    return out


def _same(value) -> str:
    """An axis value as ``only_at`` compares it (1 and 1.0 alike, as TOML tells them apart)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return json.dumps(value, sort_keys=True, default=str)


def _matches(point, only: dict[str, set[str]] | None) -> bool:
    return only is None or all(_same(v) in only[k] for k, v in point if k in only)


def _require_bool(value, path: str) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"{path} must be true or false, got {value!r}")
    return value


def _point_config(sweep: Sweep, group: Group) -> configs.RunConfig:
    return sweep.run_config(group, group.seeds[0])


def _group_cost(sweep: Sweep, group: Group, config) -> tuple[float, float, tuple]:
    """(bytes, seconds without compiling, program key) of one group."""

    d = budget.dims(config)
    spec = config.methods[0]
    method = make_method(spec.name, **spec.hyperparameters)
    runs = len(group.seeds) * len(spec.learning_rates)
    work, records, seconds = budget.batch(method, d, runs, spec.steps, config.record_every)
    setup = len(group.seeds) * (budget._data_values(d) + budget._init_values(d)) * 8
    key = (spec.name, tuple(sorted(spec.hyperparameters.items())), d.widths, d.k, runs)
    return limits.RUNTIME_BYTES + setup + work + records, seconds, (key, method, d)


def estimate(sweep: Sweep):
    """A ``limits.Estimate`` of the sweep: the largest group's memory (groups run one at a time
    per process) and the time of every group, each shape compiled once."""

    worst, seconds, programs = 0.0, 0.0, {}
    for group in sweep.groups:
        need, secs, (key, method, d) = _group_cost(sweep, group, _point_config(sweep, group))
        worst, seconds = max(worst, need), seconds + secs
        programs.setdefault(key, budget.compile_seconds(method, d))  # compiled once per shape
    return limits.Estimate(
        worst,
        seconds + sum(programs.values()),
        "record less often (record_every), or use fewer seeds or learning rates per group",
        "use fewer axis points, seeds, learning rates or steps",
    )


def _check_memory(sweep: Sweep) -> None:
    """Refuse a sweep whose largest group would not fit in memory (``budget``: one line with
    the number, the limit and how to raise it). Its time is checked by ``deeplinear sweep``
    (``estimate``) before it starts: reading a finished sweep again does not depend on it."""

    need = estimate(sweep)
    limits.check(
        limits.Estimate(need.bytes, 0.0, need.memory_advice),
        limits.Limits.from_env(),
        "the sweep's largest group",
    )


def memory_estimate(sweep: Sweep, record_every: int) -> int:
    """Bytes the largest group holds before it is written (an upper estimate, ``budget``)."""
    return int(
        max(_group_cost(sweep, g, _point_config(sweep, g))[0] for g in sweep.groups)
        if sweep.groups
        else 0
    )


def point_label(point) -> str:
    """An axis point's (path, value) pairs as run ids show them: ``problem.samples=100``."""
    return ",".join(f"{k}={_short(v)}" for k, v in point) or "base"


def _short(value) -> str:
    """An axis value as it appears in run ids and axis columns: floats as short as ``:g``
    prints them where that is exact, else exactly, so distinct values never print alike."""
    if isinstance(value, float):
        return configs.format_number(value)
    return json.dumps(value, separators=(",", ":"), default=str)


def group_file(directory: Path, group: Group) -> Path:
    return directory / "groups" / group.file_name


def run_group(sweep: Sweep, group: Group, beat: Callable[[], None] | None = None) -> pa.Table:
    """All seeds and learning rates of one group, as one table (with axis and group columns),
    its grid extended past the edge where the group asks (``group.extensions``), and one run
    timed alone (column ``seconds_alone``). The table's schema metadata ``GROUP_KEY`` holds
    ``grid_extension`` and ``seconds_per_step_alone`` (``run`` moves them to the file's).

    In-loop methods run every seed × learning rate as one batch of one compiled program (each
    member with its own problem); out-of-loop peers (SciPy) run one seed at a time. ``beat`` is
    called whenever a chunk of steps or a seed is done (the watchdog's heartbeat).
    """

    beat = beat or (lambda: None)
    method = make_method(group.method.name, **group.method.hyperparameters)
    table = _rates_table(sweep, group, method, group.method.learning_rates, beat)
    extra, rates = {}, list(group.method.learning_rates)
    if group.extensions:
        table, extra["grid_extension"] = _extend(sweep, group, method, table, beat)
        rates += extra["grid_extension"]["added"]
    table, extra["seconds_per_step_alone"], extra["alone"] = _time_alone(
        sweep, group, method, table, rates, beat
    )
    metadata = {GROUP_KEY: json.dumps(extra).encode()}
    return table.replace_schema_metadata(metadata)


def _rates_table(sweep: Sweep, group: Group, method, rates, beat, seeds=None) -> pa.Table:
    """Every seed (or ``seeds``) × ``rates`` (the sweep file's units) of ``group``, conformed."""

    spec = dataclasses.replace(group.method, learning_rates=tuple(rates))
    at = dataclasses.replace(group, method=spec)
    configs_ = [sweep.run_config(at, seed) for seed in (seeds or group.seeds)]
    if not method.in_loop:
        tables = []
        for c in configs_:
            tables.append(execution.execute(c).table)
            beat()
        table = pa.concat_tables(tables)
    else:
        table = _batched_table(method, configs_, beat)
    # run ids are unique across axis points too
    ids = [f"{group.label}/{run_id}" for run_id in table.column("run_id").to_pylist()]
    table = table.set_column(0, "run_id", pa.array(ids))
    for key, value in group.point:
        table = table.append_column(f"axis:{key}", pa.array([_short(value)] * len(table)))
    table = table.append_column("group", pa.array([group.id] * len(table)))
    return conform(table, [key for key, _ in group.point])


@dataclass(frozen=True)
class Spacing:
    """How a grid continues past its edges: ``×factor`` (geometric) or ``+factor`` (linear).

    A grid with one ratio between neighbours (relative 1e-6) is geometric; else with one
    difference, linear; else (a hand-written list) geometric with the ratio of the two values
    at the edge being extended.
    """

    kind: str  # "log" | "linear" | "edges"
    factor: float

    @staticmethod
    def of(grid) -> Spacing | None:
        values = np.sort(np.asarray(grid, dtype=np.float64))
        if values.size < 2:
            return None
        if values[0] > 0:
            ratios = values[1:] / values[:-1]
            if np.allclose(ratios, ratios[0], rtol=1e-6, atol=0):
                return Spacing("log", float((values[-1] / values[0]) ** (1 / (values.size - 1))))
        steps = np.diff(values)
        if np.allclose(steps, steps[0], rtol=1e-6, atol=0):
            return Spacing("linear", float((values[-1] - values[0]) / (values.size - 1)))
        return Spacing("edges", 0.0)

    def beyond(self, grid, side: str, count: int) -> list[float]:
        """``count`` values past ``grid``'s ``side`` edge ("low" or "high"), nearest first;
        a linear grid's low side stops before zero (within round-off of a step)."""
        values = sorted(grid)
        if self.kind == "linear":
            sign = 1 if side == "high" else -1
            edge = values[-1] if side == "high" else values[0]
            out = [edge + sign * k * self.factor for k in range(1, count + 1)]
            return [v for v in out if v > 1e-9 * self.factor]  # not 0 in round-off
        factor = self.factor
        if self.kind == "edges":
            factor = values[-1] / values[-2] if side == "high" else values[1] / values[0]
        if side == "high":
            return [values[-1] * factor**k for k in range(1, count + 1)]
        return [values[0] / factor**k for k in range(1, count + 1)]


def _best(sweep: Sweep, table: pa.Table) -> tuning.Best:
    (best,) = tuning.best_settings(table, sweep.targets[0], sweep.select)
    return best


def _extend(sweep: Sweep, group: Group, method, table: pa.Table, beat) -> tuple[pa.Table, dict]:
    """``table`` with rates added past the edge its best sits on, and the extension's record."""
    spacing = Spacing.of(group.method.learning_rates)
    grid = list(group.method.learning_rates)
    record = {"added": [], "side": None, "extensions": 0, "max": group.extensions}
    while True:
        best = _best(sweep, table)
        if best.edge is None and best.limit is not None:
            record["stopped"] = "diverged"  # a rate beyond the best is the stability limit
            break
        if best.edge is None or spacing is None:
            record["stopped"] = "interior" if best.edge is None else "single"
            break
        if record["extensions"] == group.extensions:
            record["stopped"] = "cap reached"
            break
        record["side"] = best.edge
        added = spacing.beyond(grid, best.edge, EXTENSION_RATES)
        if not added:
            record["stopped"] = "non-positive"
            break
        part = _rates_table(sweep, group, method, added, beat)
        table = pa.concat_tables([table, part])
        grid += added
        record["added"] += added
        record["extensions"] += 1
    best = _best(sweep, table)  # over every rate run
    record["best_learning_rate"], record["edge"] = best.learning_rate, best.edge
    return table, record


def _time_alone(sweep: Sweep, group: Group, method, table: pa.Table, rates, beat):
    """``table`` with column ``seconds_alone`` (step × the seconds per step of the group's best
    run timed alone: a batch of one, same steps and program kind), that figure, and which run."""
    best = _best(sweep, table)
    run = best.runs[0]
    runs = table.num_rows and len({*table.column("run_id").to_pylist()})
    if not method.in_loop or runs == 1:  # it ran alone already: its own seconds
        seconds, steps = _last(table, run["run_id"])
        timed = {"run_id": run["run_id"], "separately": False}
    else:
        samples = sample_count(_with_point(sweep.base, group.point).get("problem", {}))
        file_rate = _file_rate(group, run["learning_rate"], rates, samples)
        alone = _rates_table(sweep, group, method, [file_rate], beat, seeds=(run["seed"],))
        seconds, steps = _last(alone, alone.column("run_id")[0].as_py())
        timed = {"run_id": run["run_id"], "separately": True}
    per_step = seconds / steps if steps > 0 else float("nan")
    timed.update(seconds=seconds, steps=steps)
    step = table.column("step").to_numpy().astype(np.float64)
    column = pa.array(
        step * per_step if np.isfinite(per_step) else [None] * len(step), pa.float64()
    )
    table = table.set_column(table.schema.get_field_index("seconds_alone"), "seconds_alone", column)
    return table, (per_step if np.isfinite(per_step) else None), timed


def _file_rate(group: Group, rate: float, rates, samples) -> float:
    """The sweep file's rate that gave the table's ``rate`` (÷ n for ``per_sample``)."""
    if group.scaling == "per_sample" and samples is not None:
        return min(rates, key=lambda r: abs(r / samples - rate))
    return rate


def _last(table: pa.Table, run_id: str) -> tuple[float, int]:
    """(seconds, step) of ``run_id``'s last row."""
    mask = pc.equal(table.column("run_id"), run_id)
    rows = table.filter(mask)
    return float(rows.column("seconds")[-1].as_py()), int(rows.column("step")[-1].as_py())


def _batched_table(method, configs_, beat: Callable[[], None]) -> pa.Table:
    """Every seed × learning rate of one method in one vmapped batch."""

    members = []  # (setup, seed, rate), seed-major
    for c in configs_:
        setup = execution.build(c)
        members += [(setup, c.seed, rate) for rate in c.methods[0].learning_rates]

    def stack(trees):
        return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)

    spec, first = configs_[0].methods[0], configs_[0]
    result = runner.run(
        method,
        stack([m[0].objective for m in members]),
        stack([m[0].weights for m in members]),
        [m[2] for m in members],
        spec.steps,
        record_every=first.record_every,
        probe=stack([m[0].probe for m in members]),
        shared=False,
        progress=lambda done, total: beat(),
    )
    infos = [
        execution.run_info(method, seed, rate, spec.hyperparameters) for _, seed, rate in members
    ]
    return batch_table(infos, result)


def group_columns() -> dict[str, pa.DataType]:
    """Every column a run may add to the results schema: the probes' (``diagnostics.Probe`` of
    a fully observed problem, ``diagnostics.RecoveryProbe`` of a measured one: recovery error,
    effective rank, singular values), the loop's (``runner.LOOP_COLUMNS``: flops) and every
    registered method's (``methods.recorded_columns``), so all group files share one schema and
    the groups/ folder reads as one Parquet dataset (pyarrow, pandas, polars, duckdb); the
    sharpness probe's (``[diagnostics] sharpness = true``) too."""

    return {
        **diagnostics.Probe.columns,
        **diagnostics.RecoveryProbe.columns,
        **SharpnessProbe.columns,
        **runner.LOOP_COLUMNS,
        **recorded_columns(),
    }


def conform(table: pa.Table, axes) -> pa.Table:
    """The sweep's schema: results columns, every recorded column (null where absent), the
    ``seconds_alone`` (``run_group``), the ``axis:<path>`` column of each path in ``axes``,
    ``group``."""

    columns = {name: table.column(name) for name in SCHEMA.names}
    for name, kind in group_columns().items():
        columns[name] = (
            table.column(name).cast(kind)
            if name in table.column_names
            else pa.nulls(table.num_rows, kind)
        )
    columns["seconds_alone"] = (
        table.column("seconds_alone").cast(pa.float64())
        if "seconds_alone" in table.column_names
        else pa.nulls(table.num_rows, pa.float64())
    )
    for key in axes:
        columns[f"axis:{key}"] = table.column(f"axis:{key}")
    columns["group"] = table.column("group")
    return pa.table(columns)


def _group_bytes(
    source: str, base_dir: str, index: int, stall_seconds: float | None, methods=()
) -> bytes:
    """A Ray task: register the driver's registered ``methods``, rebuild the sweep from its text
    (configs are data), run one group (under the watchdog, in a worker of its own, unless
    ``stall_seconds`` is None), Parquet."""

    for cls in methods:
        register(cls)
    plan = parse(tomllib.loads(source), source=source, base_dir=Path(base_dir))
    if stall_seconds is None:
        table = run_group(plan, plan.groups[index])
    else:
        with Worker(plan, stall_seconds, run_group, methods) as worker:
            table = worker.run(index)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def check_ray_address(address: str) -> None:
    """Fail fast, in one line, when a Ray head does not answer at ``host:port``."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray {address!r} must be 'local' or HOST:PORT of a Ray head node")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as error:
        raise UsageError(
            f"--ray {address}: no Ray head answers there ({error.strerror or error}); "
            "start one with 'ray start --head' or use --ray local"
        ) from None


def claim(directory: str | Path, sweep: Sweep, force: bool = False) -> Path:
    """Claim ``directory`` for ``sweep`` (``directories.claim``): a directory of another
    experiment (another sweep, a run, a reproduction) or with files not written by deeplinear is
    refused in one line; ``force`` replaces another sweep's directory (its groups that are not
    this sweep's are removed) and a folder deeplinear did not write, never another kind of
    experiment's (``deeplinear sweep --force`` alike)."""
    experiment = {"experiment": "sweep", "sweep_sha256": sweep.digest}
    if force and Path(directory).is_dir():
        held = directories.held(directory)
        if held is not None and held.get("experiment") != "sweep":
            raise UsageError(
                f"--out {directory} holds a {held.get('experiment')!r} experiment, not a sweep "
                "(force replaces only another sweep): choose another --out"
            )
    return directories.claim(directory, experiment, force)


def run(
    sweep: Sweep,
    directory: str | Path,
    *,
    force: bool = False,
    ray: str | None = None,
    progress: Callable[[int, int, Group], None] | None = None,
    notice: Callable[[str], None] | None = None,
    stall_seconds: float | None = None,
) -> list[Path]:
    """Run every group not yet on disk; return the group files (old and new).

    ``ray``: None runs here; "local" starts a local Ray cluster; "HOST:PORT" joins one (every
    worker needs deeplinear installed). Files are written here, by this process, atomically.
    ``stall_seconds``: run the groups in a worker process (``_watchdog``) and stop with
    ``GroupStalledError``, naming the group, when it makes no progress (no chunk of steps done)
    for that long; None runs them in this process, unwatched (so does a non-POSIX system). The
    ``deeplinear sweep`` command watches by default (``STALL_SECONDS``). ``directory`` is
    claimed as ``deeplinear sweep`` claims ``--out`` (``claim``): another experiment's is refused;
    ``force`` replaces another sweep's, never a run's or a reproduction's.
    A group whose file does not match its checksum is run again; ``notice`` (default: a line on
    stderr) says which. Methods given to ``register`` go to the worker and to Ray's tasks with
    the sweep (by reference); one that another process cannot import is refused before anything
    runs (one line).
    """

    directory = Path(directory)
    if os.name != "posix":  # the watchdog's worker needs POSIX pipes: unwatched elsewhere
        stall_seconds = None
    methods = ()
    if ray is not None or stall_seconds is not None:
        where = "a Ray task" if ray is not None else "the sweep's worker process"
        methods = METHODS.portable(where)
    say = notice or (lambda line: print(f"deeplinear: {line}", file=sys.stderr, flush=True))
    claim(directory, sweep, force)
    (directory / "groups").mkdir(parents=True, exist_ok=True)
    manifest = {
        "sweep_sha256": sweep.digest,
        "base_dir": str(Path(sweep.base_dir).resolve()),  # relative paths (report's .npz data)
        "groups": [
            {
                "id": g.id,
                "file": str(group_file(directory, g).relative_to(directory)),
                "point": dict(g.point),
                "method": g.method.name,
            }
            for g in sweep.groups
        ],
    }
    write_atomic(directory / "manifest.json", json.dumps(manifest, indent=2, default=str).encode())
    write_atomic(directory / "sweep.toml", sweep.source.encode())
    files = [group_file(directory, g) for g in sweep.groups]
    keep = set(files) | {checksum_file(f) for f in files}
    for stale in set((directory / "groups").glob("*.parquet")) - keep:
        stale.unlink()  # a replaced (--force) sweep's groups: not this sweep's rows
    for stale in set((directory / "groups").glob("_*.sha256")) - keep:
        stale.unlink()
    todo = []  # resume: skip the finished groups whose files match their checksums
    for index, path in enumerate(files):
        reason = verify_group(path)
        if reason is not None:
            todo.append(index)
        if reason not in (None, NOT_WRITTEN):
            say(f"{path} {reason}: running its group again")
    done = len(files) - len(todo)

    def finish(index: int, table: pa.Table) -> None:
        nonlocal done
        held = (table.schema.metadata or {}).get(GROUP_KEY)
        extra = json.loads(held) if held else {}
        metadata = provenance(sweep=sweep.digest, group=sweep.groups[index].id, **extra)
        write_group(files[index], table, metadata)
        done += 1
        if progress:
            progress(done, len(files), sweep.groups[index])

    if ray is None and stall_seconds is None:
        for index in todo:
            finish(index, run_group(sweep, sweep.groups[index]))
        return _recorded(directory, sweep, manifest, files)
    if ray is None:
        if todo:
            with Worker(sweep, stall_seconds, run_group, methods) as worker:
                for index in todo:
                    finish(index, worker.run(index))
        return _recorded(directory, sweep, manifest, files)
    import ray as ray_module

    if ray != "local":
        check_ray_address(ray)
    ray_module.init(
        address=None if ray == "local" else ray,
        include_dashboard=False,
        log_to_driver=False,
        ignore_reinit_error=True,
    )
    try:
        task = ray_module.remote(max_retries=0)(_group_bytes)
        args = (sweep.source, str(sweep.base_dir))
        pending = {task.remote(*args, i, stall_seconds, methods): i for i in todo}
        while pending:
            ready, _ = ray_module.wait(list(pending), num_returns=1)
            index = pending.pop(ready[0])
            try:
                table = pq.read_table(io.BytesIO(ray_module.get(ready[0])))
            except (GroupStalledError, WorkerDiedError) as error:  # Ray's wrapper keeps the class
                for ref in pending:
                    ray_module.cancel(ref, force=True)
                raise getattr(error, "cause", error) from None
            finish(index, table)
    finally:
        ray_module.shutdown()
    return _recorded(directory, sweep, manifest, files)


def _recorded(directory: Path, sweep: Sweep, manifest: dict, files: list[Path]) -> list[Path]:
    """The sweep's metadata after its groups ran: ``manifest.json``'s entry of each finished
    group whose grid could be extended gets its ``grid_extension`` (from the group file)."""
    if not any(g.extensions for g in sweep.groups):
        return files
    for entry, group, path in zip(manifest["groups"], sweep.groups, files):
        if group.extensions and verify_group(path) is None:
            held = json.loads((pq.read_schema(path).metadata or {}).get(METADATA, b"{}"))
            if isinstance(held.get("grid_extension"), dict):
                entry["grid_extension"] = held["grid_extension"]
    write_atomic(directory / "manifest.json", json.dumps(manifest, indent=2, default=str).encode())
    return files

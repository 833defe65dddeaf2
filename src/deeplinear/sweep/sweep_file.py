"""Sweep files: a product of problem axes × methods × learning-rate grids × seeds, checked
whole before anything runs (``parse``, ``load``; ``load_stored``: the sweep a results directory
holds) and planned as groups.

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

A **group** is one axis point and one method (with its hyperparameters): its runs are every seed
× every learning rate, one compiled program for all of them (the seeds reuse it: objectives and
weights are arguments, not constants). Each finished group is one Parquet file under
``groups/`` (``group_file``; ``running``).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from deeplinear.errors import UsageError
from deeplinear.experiment import config as configs
from deeplinear.problems.kinds import kind_of
from deeplinear.sweep import tuning
from deeplinear.sweep.axes import MAX_GROUPS, check_axes, matches, only_at, point_label, with_point
from deeplinear.sweep.cost import check_memory
from deeplinear.sweep.grids import grid
from deeplinear.verdict import default_recovery_target

SELECT = tuning.SELECT  # how each group's best learning rate is chosen
MAX_GRID_EXTENSIONS = 6  # default cap of ``extend_grids``
SCALINGS = ("none", "per_sample")  # per_sample: η / n for a sample loss (it grows with n)
MAX_SEEDS = 1_000_000


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
        data = with_point(self.base, group.point)
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


def group_file(directory: Path, group: Group) -> Path:
    return directory / "groups" / group.file_name


def load(path: str | Path) -> Sweep:
    """The sweep file at ``path``, checked (``parse``), and the data its problems read from
    files, each file once (``check_data``): all before any estimate."""
    path = Path(path)
    text = configs.read_text(path, "sweep file")
    data = configs.parse_toml(text, path, "sweep file")
    sweep = parse(data, source=text, base_dir=path.parent)
    check_data(sweep)
    return sweep


def check_data(sweep: Sweep) -> None:
    """Every distinct problem the sweep's groups read from a file, read and checked (a point
    that names a bad file is refused naming the point)."""
    seen = set()
    for group in sweep.groups:
        problem = with_point(sweep.base, group.point).get("problem", {})
        kind = kind_of(problem)
        key = (kind, json.dumps(problem, sort_keys=True, default=str))
        if kind is None or key in seen:
            continue
        seen.add(key)
        try:
            kind.check_data(kind.check(problem), sweep.base_dir)
        except UsageError as error:
            if not group.point or str(error).startswith("axes."):
                raise
            raise UsageError(f"at the axis point {group.label}: {error}") from None


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


def parse(data: dict, *, source: str = "", base_dir: Path = Path(".")) -> Sweep:
    """Check a sweep file: every axis point and method is checked as a run file would be, run
    ids are unique, and the largest group's memory and the sweep's time are within the limits
    (``limits.Limits``) — all before anything runs."""
    if not isinstance(data, dict):
        raise UsageError("a sweep file must be a TOML table")
    data = copy.deepcopy(data)  # the caller's tables stay as they were
    if "seed" in data:
        raise UsageError("seed: a sweep takes seeds = [...] (or a count), not seed: rename it")
    seeds = _seeds(data.pop("seeds", 1))
    targets = _targets(data.pop("targets", [1e-10]))
    recovery_targets = _recovery_targets(data.pop("recovery_targets", None))
    axes = data.pop("axes", {})
    count = check_axes(axes)
    select = configs.require_choice(data.pop("select", "time_to_target"), "select", SELECT)
    extend, cap = _extension_cap(data)
    options = _method_options(data, axes, count, extend, cap)
    data["seed"] = seeds[0]
    configs.parse(data, base_dir=base_dir, source=source)  # methods, shared sections
    chosen = {"select": select, "target": targets[0]}  # what an extended grid's best is by
    groups = _groups(data, axes, options, seeds, chosen, base_dir, source)
    if len({g.digest for g in groups}) != len(groups):
        raise UsageError("two groups of the sweep would share a group file: report this as a bug")
    sweep = Sweep(
        source, data, axes, seeds, targets, tuple(groups), Path(base_dir), select,
        recovery_targets,
    )  # fmt: skip
    check_memory(sweep)
    return sweep


def _seeds(seeds) -> tuple[int, ...]:
    """``seeds``: a count or a list of distinct seeds in [0, 2³² − 1]."""
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
    return seeds


def _targets(targets) -> tuple[float, ...]:
    """``targets``: a non-empty list of positive losses relative to the initial one."""
    if not isinstance(targets, list) or not targets:
        raise UsageError("targets must be a non-empty list, e.g. [1e-10]")
    return tuple(
        configs.require_number(t, f"targets[{i}]", 0, strict=True) for i, t in enumerate(targets)
    )


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


def _extension_cap(data: dict) -> tuple[bool, int]:
    """``extend_grids`` (popped from ``data``) and the cap of each extended grid."""
    extend = _require_bool(data.pop("extend_grids", False), "extend_grids")
    cap = data.pop("max_grid_extensions", None)
    if cap is not None and not extend:
        raise UsageError(
            "max_grid_extensions is set but extend_grids is not: add extend_grids = true"
        )
    cap = configs.require_int(
        MAX_GRID_EXTENSIONS if cap is None else cap, "max_grid_extensions", 1, 100
    )
    return extend, cap


class _Options(NamedTuple):
    """What a ``[[methods]]`` table says beyond a run file's method: popped before it is one."""

    scaling: str  # learning_rate_scaling
    extensions: int  # at most this many grid extensions (0: none)
    only: dict[str, set[str]] | None  # only_at


def _method_options(data: dict, axes: dict, count: int, extend: bool, cap: int) -> list[_Options]:
    """The ``[[methods]]`` tables checked (at least one; not too many groups), their grids made
    lists, and each table's sweep-only keys popped (in ``data``'s copies of the tables)."""
    methods = data.get("methods")
    if not isinstance(methods, list) or not methods:
        raise UsageError("methods is missing or empty: add at least one [[methods]] table")
    if count * len(methods) > MAX_GROUPS:
        raise UsageError(
            f"the sweep has {count} axis points × {len(methods)} methods = "
            f"{count * len(methods)} groups, more than {MAX_GROUPS}: split it into several "
            "sweep files or use fewer axis values"
        )
    options = []
    data["methods"] = methods = [dict(t) if isinstance(t, dict) else t for t in methods]
    for i, table in enumerate(methods):
        if not isinstance(table, dict):
            continue
        only = only_at(table.pop("only_at", None), axes, f"methods[{i}].only_at")
        if "learning_rates" in table:
            table["learning_rates"] = grid(table["learning_rates"], f"methods[{i}].learning_rates")
        scaling = table.pop("learning_rate_scaling", "none")
        path = f"methods[{i}].learning_rate_scaling"
        scaling = configs.require_choice(scaling, path, SCALINGS)
        own = _require_bool(table.pop("extend_grid", extend), f"methods[{i}].extend_grid")
        options.append(_Options(scaling, cap if own else 0, only))
    return options


def _groups(data, axes, options, seeds, chosen, base_dir, source) -> list[Group]:
    """Every axis point × method, each point checked as the run file it is; ``chosen``: the
    ``select`` and first target an extended grid's best is chosen by."""
    points = [tuple(zip(axes, values)) for values in itertools.product(*axes.values())]
    groups, labels = [], set()
    for point in points:
        at = with_point(data, point)
        label = point_label(point)
        at_point = _point_run_file(at, point, label, base_dir, source)
        if label in labels:  # distinct values print distinctly (value_text): a safeguard
            raise UsageError(f"two axis points print alike ({label}): their run ids would collide")
        labels.add(label)
        sections = {k: v for k, v in at.items() if k != "methods"}
        _check_per_sample(at, label, options)
        for spec, option in zip(at_point.methods, options):
            if matches(point, option.only):  # else it runs only at the points only_at names
                groups.append(_group(point, spec, sections, option, seeds, chosen))
    return groups


def _point_run_file(at: dict, point, label: str, base_dir, source) -> configs.RunConfig:
    """The run file at an axis point, checked (its own steps, sections, …); an error names the
    point."""
    try:
        return configs.parse(at, base_dir=base_dir, source=source)
    except UsageError as error:
        if not point or str(error).startswith("axes."):
            raise
        raise UsageError(f"at the axis point {label}: {error}") from None


def _check_per_sample(at: dict, label: str, options: list[_Options]) -> None:
    """``learning_rate_scaling = "per_sample"`` on a measured problem needs its count in the run
    file (a population loss is left unscaled)."""
    per_sample = any(o.scaling == "per_sample" for o in options)
    if per_sample and sample_count(at.get("problem", {})) is None:
        kind = kind_of(at.get("problem", {}))
        if kind is not None and kind.measured:  # a population loss: left unscaled
            raise UsageError(
                f"at the axis point {label}: learning_rate_scaling = 'per_sample' needs the "
                "count in the run file (problem.observations, probability or measurements); "
                "an .npz problem's rates are given unscaled"
            )


def _group(point, spec: configs.MethodSpec, sections: dict, option: _Options, seeds, chosen):
    """One group: its digest hashes the sections at its point, the method, seeds and scaling
    (and, where its grid is extended, the extension's cap and ``chosen``)."""
    extensions = option.extensions
    hashed = [sections, _method_table(spec), seeds, option.scaling]
    if extensions and len(spec.learning_rates) > 1:
        hashed.append({"grid_extensions": extensions, **chosen})
    else:
        extensions = 0  # one rate: no spacing to continue
    digest = hashlib.sha256(json.dumps(hashed, sort_keys=True, default=str).encode()).hexdigest()
    return Group(point, spec, seeds, digest[:10], option.scaling, extensions)


def _require_bool(value, path: str) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"{path} must be true or false, got {value!r}")
    return value

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
import io
import itertools
import json
import os
import socket
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

SELECT = ("time_to_target", "final_loss", "auc")  # how each group's best learning rate is chosen
SCALINGS = ("none", "per_sample")  # per_sample: η / n for a sample loss (it grows with n)
BYTES_PER_VALUE = 8


@dataclass(frozen=True)
class Group:
    """One axis point and one method: all its seeds and learning rates."""

    id: str
    point: dict  # TOML path → value
    method: configs.MethodSpec
    seeds: tuple[int, ...]
    scaling: str = "none"  # "per_sample": the learning rates are divided by n


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

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]

    def run_config(self, group: Group, seed: int) -> configs.RunConfig:
        """The run file of one seed of a group (checked like any run file)."""
        data = _with_point(self.base, group.point)
        data["seed"] = seed
        data.setdefault("checkpoints", 0)  # Gauss-Newton spectra are for single runs
        table = _method_table(group.method)
        samples = data.get("problem", {}).get("samples", 1000)
        if group.scaling == "per_sample" and isinstance(samples, int):
            table["learning_rates"] = [r / samples for r in table["learning_rates"]]
        data["methods"] = [table]
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
    select = configs.require_choice(data.pop("select", "time_to_target"), "select", SELECT)
    methods = data.get("methods")
    if not isinstance(methods, list) or not methods:
        raise UsageError("methods is missing or empty: add at least one [[methods]] table")
    scalings = []
    for i, table in enumerate(methods):
        if not isinstance(table, dict):
            continue
        if "learning_rates" in table:
            table["learning_rates"] = grid(table["learning_rates"], f"methods[{i}].learning_rates")
        scaling = table.pop("learning_rate_scaling", "none")
        path = f"methods[{i}].learning_rate_scaling"
        scalings.append(configs.require_choice(scaling, path, SCALINGS))
    data.setdefault("seed", seeds[0])
    checked = configs.parse(data, base_dir=base_dir, source=source)  # methods, shared sections
    points = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    groups = []
    for point in points:
        configs.parse(_with_point(data, point), base_dir=base_dir, source=source)  # each point
        label = ",".join(f"{k}={_short(v)}" for k, v in point.items()) or "base"
        for spec, scaling in zip(checked.methods, scalings):
            hyper = "".join(f",{k}={v}" for k, v in sorted(spec.hyperparameters.items()))
            # everything that decides the group's rows: a changed grid, length or section makes
            # a new group file instead of resuming the old one
            sections = {k: v for k, v in _with_point(data, point).items() if k != "methods"}
            identity = [sections, _method_table(spec), seeds, scaling]
            digest = hashlib.sha256(
                json.dumps(identity, sort_keys=True, default=str).encode()
            ).hexdigest()[:10]
            group_id = f"{label}|{spec.name}{hyper}|{digest}"
            groups.append(Group(group_id, point, spec, seeds, scaling))
    sweep = Sweep(source, data, axes, seeds, targets, tuple(groups), Path(base_dir), select)
    need, have = memory_estimate(sweep, checked.record_every), _machine_bytes()
    if need > have / 2:
        raise UsageError(
            f"the sweep's largest group would hold ~{need / 2**30:.1f} GiB of records in memory, "
            f"more than half of this machine's {have / 2**30:.1f} GiB: record less often "
            "(record_every), or use fewer seeds or learning rates per group"
        )
    return sweep


def memory_estimate(sweep: Sweep, record_every: int) -> int:
    """Bytes the largest group holds before it is written (an upper estimate).

    Per run and recorded row: the table's numbers plus per-mode and per-layer diagnostics (at
    most 4 × the widest layer), three copies (device, host, table), plus the final weights.
    """
    data = sweep.base
    problem, model = data.get("problem", {}), data.get("model", {})
    dims = [problem.get("input", 6), problem.get("output", 10), *model.get("hidden", [6])]
    for key, values in sweep.axes.items():  # an axis may widen the problem
        if key in ("problem.input", "problem.output"):
            dims += [int(v) for v in values]
        elif key == "model.hidden":
            dims += [int(h) for widths in values for h in widths]
    widest = max(int(d) for d in dims)
    worst = 0
    for group in sweep.groups:
        rows = group.method.steps // record_every + 1
        runs = len(group.seeds) * len(group.method.learning_rates)
        per_run = rows * (16 + 4 * widest) * 3 + 2 * widest * widest
        worst = max(worst, runs * per_run * BYTES_PER_VALUE)
    return worst


def _machine_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume the project's 24 GiB
        return 24 * 2**30


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value, separators=(",", ":"))


def group_file(directory: Path, group: Group) -> Path:
    return directory / "groups" / (group.id.rsplit("|", 1)[1] + ".parquet")


def run_group(sweep: Sweep, group: Group) -> pa.Table:
    """All seeds and learning rates of one group, as one table (with axis and group columns).

    In-loop methods run every seed × learning rate as one batch of one compiled program (each
    member with its own problem); out-of-loop peers (SciPy) run one seed at a time.
    """
    from . import runfile  # heavy: JAX
    from .methods import make_method

    configs_ = [sweep.run_config(group, seed) for seed in group.seeds]
    method = make_method(group.method.name, **group.method.hyperparameters)
    if getattr(method, "out_of_loop", False):
        table = pa.concat_tables([runfile.execute(c).table for c in configs_])
    else:
        table = _batched_table(method, configs_)
    point = group.id.split("|", 1)[0]  # run ids are unique across axis points too
    ids = [f"{point}/{run_id}" for run_id in table.column("run_id").to_pylist()]
    table = table.set_column(0, "run_id", pa.array(ids))
    for key, value in group.point.items():
        table = table.append_column(f"axis:{key}", pa.array([_short(value)] * len(table)))
    table = table.append_column("group", pa.array([group.id] * len(table)))
    return conform(table, group.point)


def _batched_table(method, configs_) -> pa.Table:
    """Every seed × learning rate of one method in one vmapped batch."""
    from . import runfile, runner
    from ._backend import jax
    from .results import RunInfo, curves_table

    members = []  # (setup, seed, rate), seed-major
    for c in configs_:
        setup = runfile.build(c)
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
    )
    runs = [
        (
            RunInfo(
                runfile.run_id(seed, spec.name, rate, spec.hyperparameters),
                f"{method.label} step={rate:g}",
                spec.name,
                rate,
                seed,
                "",
                result.compile_seconds,
                len(members),
            ),
            curve,
        )
        for (_, seed, rate), curve in zip(members, result.curves)
    ]
    return curves_table(runs)


# every column any method or the probe may add, so all group files share one schema and the
# groups/ folder reads as one Parquet dataset (pyarrow, pandas, polars, duckdb)
OPTIONAL_COLUMNS = {
    **{
        name: pa.list_(pa.float64())
        for name in ("imbalance", "layer_sigma_max", "layer_sigma_min", "mode_learned")
    },
    **{
        name: pa.float64()
        for name in (
            "flops",
            "damping",
            "rejected_steps",
            "failed_solves",
            "cg_steps",
            "optimistix_result",
        )
    },
}


def conform(table: pa.Table, point: dict) -> pa.Table:
    """The sweep's schema: results columns, every optional column (null where absent), axes."""
    from .results import SCHEMA

    columns = {name: table.column(name) for name in SCHEMA.names}
    for name, kind in OPTIONAL_COLUMNS.items():
        columns[name] = (
            table.column(name).cast(kind)
            if name in table.column_names
            else pa.nulls(table.num_rows, kind)
        )
    for key in point:
        columns[f"axis:{key}"] = table.column(f"axis:{key}")
    columns["group"] = table.column("group")
    return pa.table(columns)


def _group_bytes(source: str, base_dir: str, index: int) -> bytes:
    """A Ray task: rebuild the sweep from its text (configs are data), run one group, Parquet."""
    plan = parse(tomllib.loads(source), source=source, base_dir=Path(base_dir))
    buffer = io.BytesIO()
    pq.write_table(run_group(plan, plan.groups[index]), buffer)
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


def run(
    sweep: Sweep,
    directory: str | Path,
    *,
    ray: str | None = None,
    progress: Callable[[int, int, Group], None] | None = None,
) -> list[Path]:
    """Run every group not yet on disk; return the group files (old and new).

    ``ray``: None runs here; "local" starts a local Ray cluster; "HOST:PORT" joins one (every
    worker needs deeplinear installed). Files are written here, by this process, atomically.
    """
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
    files = [group_file(directory, g) for g in sweep.groups]
    for stale in set((directory / "groups").glob("*.parquet")) - set(files):
        stale.unlink()  # a replaced (--force) sweep's groups: not this sweep's rows
    todo = [i for i, path in enumerate(files) if not path.exists()]  # resume: skip finished
    done = len(files) - len(todo)

    def finish(index: int, table: pa.Table) -> None:
        nonlocal done
        metadata = provenance(sweep=sweep.digest, group=sweep.groups[index].id)
        write_table(table, files[index], metadata)
        done += 1
        if progress:
            progress(done, len(files), sweep.groups[index])

    if ray is None:
        for index in todo:
            finish(index, run_group(sweep, sweep.groups[index]))
        return files
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
        task = ray_module.remote(_group_bytes)
        pending = {task.remote(sweep.source, str(sweep.base_dir), i): i for i in todo}
        while pending:
            ready, _ = ray_module.wait(list(pending), num_returns=1)
            index = pending.pop(ready[0])
            finish(index, pq.read_table(io.BytesIO(ray_module.get(ready[0]))))
    finally:
        ray_module.shutdown()
    return files


def read(directory: str | Path) -> pa.Table:
    """Every finished group's rows, as one table (also readable as a Parquet dataset)."""
    files = sorted((Path(directory) / "groups").glob("*.parquet"))
    if not files:
        raise UsageError(f"{directory} holds no finished groups: run 'deeplinear sweep' first")
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")

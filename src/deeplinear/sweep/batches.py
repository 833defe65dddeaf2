"""A group's runs at some of its learning rates as one table (``rates_table``): in-loop methods
as one vmapped batch of one compiled program (each member with its own problem), out-of-loop
peers one seed at a time; run ids prefixed by the axis point, ``axis:<path>`` and ``group``
columns added, and every table conformed to the sweep's one schema (``group_columns``,
``conform``), so the groups/ folder reads as one Parquet dataset.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from deeplinear.core.backend import jax
from deeplinear.diagnostics import probes as diagnostics
from deeplinear.diagnostics.held_out import HeldOutProbe
from deeplinear.diagnostics.sharpness import SharpnessProbe
from deeplinear.experiment import execution
from deeplinear.loop import runner
from deeplinear.methods import recorded_columns
from deeplinear.store.results import SCHEMA, batch_table
from deeplinear.sweep.axes import value_text

if TYPE_CHECKING:
    from deeplinear.sweep.sweep_file import Group, Sweep


def rates_table(sweep: Sweep, group: Group, method, rates, beat, seeds=None) -> pa.Table:
    """Every seed (or ``seeds``) × ``rates`` (the sweep file's units) of ``group``, conformed."""

    spec = dataclasses.replace(group.method, learning_rates=tuple(rates))
    at = dataclasses.replace(group, method=spec)
    configs_ = [sweep.run_config(at, seed) for seed in (seeds or group.seeds)]
    if not method.in_loop:
        tables = []
        for c in configs_:
            done = execution.execute(c)
            labels = dict(
                zip(done.table.column("run").to_pylist(), done.table.column("run_id").to_pylist())
            )
            finals = {labels[run]: value for run, (value, _) in done.final_losses.items()}
            tables.append(with_final_loss(done.table, finals))
            beat()
        table = pa.concat_tables(tables)
    else:
        table = _batched_table(method, configs_, beat)
    # run ids are unique across axis points too
    ids = [f"{group.label}/{run_id}" for run_id in table.column("run_id").to_pylist()]
    table = table.set_column(0, "run_id", pa.array(ids))
    for key, value in group.point:
        table = table.append_column(f"axis:{key}", pa.array([value_text(value)] * len(table)))
    table = table.append_column("group", pa.array([group.id] * len(table)))
    return conform(table, [key for key, _ in group.point])


def check_supported(sweep: Sweep) -> None:
    """Refuse, in one line before any group runs, a method that cannot run on its axis point's
    problem (``execution.check_methods`` on the point's first seed: the problem alone, no
    initial weights drawn)."""
    for group in sweep.groups:
        execution.check_methods(sweep.run_config(group, group.seeds[0]))


def _batched_table(method, configs_, beat: Callable[..., None]) -> pa.Table:
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
        progress=beat,  # the steps done after every chunk: the watchdog's heartbeat
    )
    infos = [
        execution.run_info(method, seed, rate, spec.hyperparameters) for _, seed, rate in members
    ]
    table = batch_table(infos, result)
    finals = {}  # run id → its reported final loss, the floor of its problem asked if needed
    by_seed = {c.seed: c for c in configs_}
    for member, (info, (setup, seed, _)) in enumerate(zip(infos, members)):

        def floor(setup=setup, config=by_seed[seed]):
            return _floor_of(config, setup)

        weights = tuple(np.asarray(w)[member] for w in result.final_weights)
        curve = result.curves[member]
        reported = execution.reported_final(setup, curve.loss[-1], weights, floor, curve.loss[0])
        finals[info.run_id] = reported[0]
    return with_final_loss(table, finals)


_FLOORS: dict = {}  # a process's reachable minima, by problem: the groups of a sweep share them


def _floor_of(config, setup):
    """The reachable minimum of ``setup``'s problem, computed once per problem and widths in this
    process (every method of an axis point shares its seeds' problems)."""
    key = (
        json.dumps(config.problem, sort_keys=True, default=str),
        config.hidden, config.seed, config.generator, str(config.base_dir),
    )  # fmt: skip
    if key not in _FLOORS:
        _FLOORS[key] = setup.floor
    return _FLOORS[key]


def with_final_loss(table: pa.Table, finals: dict[str, float]) -> pa.Table:
    """``table`` with column ``final_loss``: each run's reported final loss on its every row
    (``execution.reported_final``), so the report, the selection by final loss and
    ``deeplinear.load`` read the one value ``deeplinear run`` prints."""
    values = [finals.get(run_id) for run_id in table.column("run_id").to_pylist()]
    return table.append_column("final_loss", pa.array(values, pa.float64()))


def group_columns() -> dict[str, pa.DataType]:
    """Every column a run may add to the results schema: the probes' (``diagnostics.Probe`` of
    a fully observed problem, ``diagnostics.RecoveryProbe`` of a measured one: recovery error,
    effective rank, singular values; ``diagnostics.HeldOutProbe`` of a ratings problem: the
    RMSE and MAE of each split), the loop's (``runner.LOOP_COLUMNS``: flops) and every
    registered method's (``methods.recorded_columns``), so all group files share one schema and
    the groups/ folder reads as one Parquet dataset (pyarrow, pandas, polars, duckdb); the
    sharpness probe's (``[diagnostics] sharpness = true``) too."""

    return {
        **diagnostics.Probe.columns,
        **diagnostics.RecoveryProbe.columns,
        **SharpnessProbe.columns,
        **HeldOutProbe.columns,
        **runner.LOOP_COLUMNS,
        **recorded_columns(),
        "final_loss": pa.float64(),  # each run's reported final loss (``with_final_loss``)
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

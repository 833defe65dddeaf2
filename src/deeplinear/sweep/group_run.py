"""One group run: all its seeds and learning rates as one table (``run_group``), its grid
extended past the edge where the group asks (``grid_extension``), and its best run timed alone.

**Time alone**: every group also times one run alone (its best rate, its first seed, the same
steps, a batch of one): column ``seconds_alone`` = step × ``seconds_per_step_alone`` (group
metadata, with ``alone``: the run timed), so the time a method is charged does not depend on how
many runs shared its batch. Out-of-loop methods run alone already: their own ``seconds``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from deeplinear.methods import make_method
from deeplinear.store.jsonfiles import dumps
from deeplinear.sweep.axes import with_point
from deeplinear.sweep.batches import rates_table
from deeplinear.sweep.grid_extension import best_setting, extend
from deeplinear.sweep.sweep_file import sample_count

if TYPE_CHECKING:
    from deeplinear.sweep.sweep_file import Group, Sweep

GROUP_KEY = b"deeplinear.group"  # run_group's table: its grid_extension and time alone (JSON)


def run_group(sweep: Sweep, group: Group, beat: Callable[..., None] | None = None) -> pa.Table:
    """All seeds and learning rates of one group, as one table (with axis and group columns),
    its grid extended past the edge where the group asks (``group.extensions``), and one run
    timed alone (column ``seconds_alone``). The table's schema metadata ``GROUP_KEY`` holds
    ``grid_extension`` and ``seconds_per_step_alone`` (``run`` moves them to the file's).

    In-loop methods run every seed × learning rate as one batch of one compiled program (each
    member with its own problem); out-of-loop peers (SciPy) run one seed at a time. ``beat`` is
    called whenever a chunk of steps (``beat(steps_done, steps)``: the batch's) or a seed
    (``beat()``) is done: the watchdog's heartbeat and the progress line's step counts.
    """

    beat = beat or (lambda *count: None)
    method = make_method(group.method.name, **group.method.hyperparameters)
    table = rates_table(sweep, group, method, group.method.learning_rates, beat)
    extra, rates = {}, list(group.method.learning_rates)
    if group.extensions:
        table, extra["grid_extension"] = extend(sweep, group, method, table, beat)
        rates += extra["grid_extension"]["added"]
    table, extra["seconds_per_step_alone"], extra["alone"] = _time_alone(
        sweep, group, method, table, rates, beat
    )
    metadata = {GROUP_KEY: dumps(extra).encode()}
    return table.replace_schema_metadata(metadata)


def _time_alone(sweep: Sweep, group: Group, method, table: pa.Table, rates, beat):
    """``table`` with column ``seconds_alone`` (step × the seconds per step of the group's best
    run timed alone: a batch of one, same steps and program kind), that figure, and which run."""
    best = best_setting(sweep, table)
    run = best.runs[0]
    runs = table.num_rows and len({*table.column("run_id").to_pylist()})
    if not method.in_loop or runs == 1:  # it ran alone already: its own seconds
        seconds, steps = _last(table, run["run_id"])
        timed = {"run_id": run["run_id"], "separately": False}
    else:
        samples = sample_count(with_point(sweep.base, group.point).get("problem", {}))
        file_rate = _file_rate(group, run["learning_rate"], rates, samples)
        alone = rates_table(sweep, group, method, [file_rate], beat, seeds=(run["seed"],))
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

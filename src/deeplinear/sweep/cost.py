"""What a sweep costs before it runs: each group's peak memory and time (``experiment.budget``'s
models), the sweep's ``limits.Estimate`` (``estimate``: the largest group's memory, every
group's time, each program shape compiled once) and the memory check ``parse`` makes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deeplinear.core import limits
from deeplinear.experiment import budget
from deeplinear.experiment import config as configs
from deeplinear.methods import make_method

if TYPE_CHECKING:
    from deeplinear.sweep.sweep_file import Group, Sweep


def _point_config(sweep: Sweep, group: Group) -> configs.RunConfig:
    return sweep.run_config(group, group.seeds[0])


STARTUP_SECONDS = 3.0  # the worker process: importing JAX and the lab (measured 1.5–3 s)
GROUP_SECONDS = 0.2  # each group's file: the table, Parquet, its checksum, the progress line


def _group_cost(sweep: Sweep, group: Group, config) -> tuple[float, float, list]:
    """(bytes, seconds without compiling, [(program key, method, dims)]) of one group: its batch
    and, where it ran more than one run in the loop, its best run timed alone (a batch of one,
    ``group_run``: another program, another compile)."""

    d = budget.dims(config)
    spec = config.methods[0]
    method = make_method(spec.name, **spec.hyperparameters)
    runs = len(group.seeds) * len(spec.learning_rates)
    work, records, seconds = budget.batch(method, d, runs, spec.steps, config.record_every)
    setup = len(group.seeds) * (budget._data_values(d) + budget._init_values(d)) * 8
    key = (spec.name, tuple(sorted(spec.hyperparameters.items())), d.widths, d.k)
    programs = [((*key, runs), method, d)]
    if method.in_loop and runs > 1:  # the time alone
        seconds += budget.batch(method, d, 1, spec.steps, config.record_every)[2]
        programs.append(((*key, 1), method, d))
    return limits.RUNTIME_BYTES + setup + work + records, seconds, programs


def estimate(sweep: Sweep):
    """A ``limits.Estimate`` of the sweep: the largest group's memory (groups run one at a time
    per process) and the time of every group (its batch, its run timed alone, its file), each
    program shape compiled once, and the worker's start."""

    worst, seconds, programs = 0.0, STARTUP_SECONDS, {}
    for group in sweep.groups:
        need, secs, shapes = _group_cost(sweep, group, _point_config(sweep, group))
        worst, seconds = max(worst, need), seconds + secs + GROUP_SECONDS
        for key, method, d in shapes:  # compiled once per shape
            programs.setdefault(key, budget.compile_seconds(method, d))
    return limits.Estimate(
        worst,
        seconds + sum(programs.values()),
        "record less often (record_every), or use fewer seeds or learning rates per group",
        "use fewer axis points, seeds, learning rates or steps",
    )


def check_memory(sweep: Sweep) -> None:
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

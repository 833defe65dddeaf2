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

"""Sweeps: sweep files and their groups (``sweep_file``; its ``axes``, learning-rate ``grids`` and
memory and time ``cost``), a group's runs as one table (``batches``), grid extension
(``grid_extension``), one group run and timed alone (``group_run``), the whole sweep here, under
the watchdog or on Ray, resumed (``running``), the fair choice of a learning rate (``tuning``)
and the worker process under a watchdog (``watchdog``).

The public API is re-exported lazily (``from deeplinear import sweep``; ``sweep.parse``,
``sweep.run``, …): importing the package loads no JAX.
"""

from importlib import import_module

_EXPORTS = {
    "Sweep": "sweep_file",
    "Group": "sweep_file",
    "parse": "sweep_file",
    "load": "sweep_file",
    "load_stored": "sweep_file",
    "sample_count": "sweep_file",
    "recovery_goals": "sweep_file",
    "group_file": "sweep_file",
    "SELECT": "sweep_file",
    "SCALINGS": "sweep_file",
    "MAX_SEEDS": "sweep_file",
    "MAX_GRID_EXTENSIONS": "sweep_file",
    "NOT_AXES": "axes",
    "MAX_GROUPS": "axes",
    "point_label": "axes",
    "value_text": "axes",
    "grid": "grids",
    "log_grid": "grids",
    "MAX_GRID": "grids",
    "estimate": "cost",
    "memory_estimate": "cost",
    "group_columns": "batches",
    "conform": "batches",
    "check_supported": "batches",
    "Spacing": "grid_extension",
    "EXTENSION_RATES": "grid_extension",
    "run_group": "group_run",
    "GROUP_KEY": "group_run",
    "run": "running",
    "claim": "running",
    "check_ray_address": "running",
    "STALL_SECONDS": "running",
    "METADATA": "running",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'deeplinear.sweep' has no attribute {name!r}")

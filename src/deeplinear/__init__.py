"""deeplinear: a lab for optimization on deep linear networks (matrix factorization).

The public API is re-exported lazily, so ``import deeplinear`` (and the CLI's argument checks)
stay fast; JAX is configured for float64 when the first numerical module loads.
"""

from importlib import import_module

_EXPORTS = {
    "UsageError": "errors",
    "Problem": "problems.dense",
    "NotebookDims": "problems.dense",
    "notebook_problem": "problems.dense",
    "Objective": "objectives.objective",
    "end_to_end": "core.model",
    "METHODS": "methods",
    "make_method": "methods",
    "register": "methods",
    "run": "experiment.python_api",
    "RunResult": "experiment.python_api",
    "Curve": "store.results",
    "load": "store.frames",
    "provenance": "store.frames",
    "reproduce": "notebook2017.reproduce",
    "Reproduction": "notebook2017.reproduce",
    "read_table": "store.results",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'deeplinear' has no attribute {name!r}")

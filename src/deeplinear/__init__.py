"""deeplinear: a lab for optimization on deep linear networks (matrix factorization).

The public API is re-exported lazily, so ``import deeplinear`` (and the CLI's argument checks)
stay fast; JAX is configured for float64 when the first numerical module loads.
"""

from importlib import import_module

_EXPORTS = {
    "UsageError": "errors",
    "Problem": "problem",
    "NotebookDims": "problem",
    "notebook_problem": "problem",
    "Objective": "objective",
    "end_to_end": "model",
    "METHODS": "methods",
    "make_method": "methods",
    "register": "methods",
    "run": "runs",
    "RunResult": "runs",
    "Curve": "results",
    "load": "frames",
    "provenance": "frames",
    "reproduce": "reproduce",
    "Reproduction": "reproduce",
    "read_table": "results",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'deeplinear' has no attribute {name!r}")

"""Whether a class can travel to another process by reference (what pickling a class does): a
sweep's worker or a Ray task imports it again by its module and qualified name."""

from __future__ import annotations

import importlib


def importable(cls) -> bool:
    """Whether ``cls`` is found again by its module and qualified name (what pickling a class
    by reference relies on), in a module that another interpreter can import."""
    module, qualname = getattr(cls, "__module__", None), getattr(cls, "__qualname__", "")
    if not module or module == "__main__" or "<locals>" in qualname:
        return False
    try:
        found = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except Exception:  # any failure to find it again: not importable
        return False
    return found is cls

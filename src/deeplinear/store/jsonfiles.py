"""The one JSON encoding of the project's files (``verdicts.json``, ``summary.json``): plain
Python values, NumPy scalars and arrays as numbers and lists, and every non-finite float (an
ETA that is infinite, a target never reached, a NaN) as ``null``, so each file is strict JSON
(RFC 8259) that any parser reads back; ``dumps`` refuses a stray non-finite value loudly."""

from __future__ import annotations

import json
import math

import numpy as np


def jsonable(value, *, private: bool = True):
    """``value`` as strict-JSON data: dicts (without keys starting with ``_`` unless
    ``private``), lists (from tuples and arrays), NumPy scalars as Python numbers, non-finite
    floats as None; anything else as it is."""
    if isinstance(value, dict):
        return {
            k: jsonable(v, private=private)
            for k, v in value.items()
            if private or not str(k).startswith("_")
        }
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return [jsonable(v, private=private) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value, **options) -> str:
    """``json.dumps(jsonable(value), allow_nan=False, **options)``."""
    return json.dumps(jsonable(value), allow_nan=False, **options)

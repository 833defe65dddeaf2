"""Comparing result tables in tests: every column but the timings, bit for bit."""

import numpy as np

from deeplinear.store.results import _to_numpy

TIMING = {"seconds", "compile_seconds", "seconds_alone"}


def rows(table):
    names = [n for n in table.column_names if n not in TIMING]
    return table.select(names).sort_by([("run_id", "ascending"), ("step", "ascending")])


def assert_same_rows(a, b):
    """Bit-identical values in every column but the timings (NaN equals NaN)."""
    a, b = rows(a), rows(b)
    assert a.column_names == b.column_names and a.num_rows == b.num_rows
    for name in a.column_names:
        np.testing.assert_array_equal(
            _to_numpy(a.column(name)), _to_numpy(b.column(name)), err_msg=name
        )

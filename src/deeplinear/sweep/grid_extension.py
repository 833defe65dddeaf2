"""Learning-rate grids extended past their edge (``extend_grids = true``, at most
``max_grid_extensions`` times, default 6): after a group's runs, while its best learning rate (by
``select`` and the first target, ``tuning``) is the grid's smallest or largest,
``EXTENSION_RATES`` more rates beyond that edge, continuing the grid's spacing (``Spacing``:
×ratio for a geometric grid, +step for an arithmetic one), run as one more batch for the same
seeds. The best is ``tuning``'s: a rate at which some seed diverged is not eligible while another
rate had none. It stops when the best is interior because a neighbouring rate is not eligible
(``diverged``: that rate is the stability limit), when it is interior otherwise (``interior``),
at the cap (``cap reached``), or when a linear grid would reach zero (``non-positive``). The group
file holds every rate's rows; its metadata and ``manifest.json``'s entry hold ``grid_extension``
(``added`` rates in the sweep file's units, ``side``, ``stopped``, ``extensions``, ``max``, and
``best_learning_rate`` and its ``edge`` over every rate run, as the rows give the rate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from deeplinear.sweep import tuning
from deeplinear.sweep.batches import rates_table

if TYPE_CHECKING:
    from deeplinear.sweep.sweep_file import Group, Sweep

EXTENSION_RATES = 2  # rates added beyond the edge by one extension


@dataclass(frozen=True)
class Spacing:
    """How a grid continues past its edges: ``×factor`` (geometric) or ``+factor`` (linear).

    A grid with one ratio between neighbours (relative 1e-6) is geometric; else with one
    difference, linear; else (a hand-written list) geometric with the ratio of the two values
    at the edge being extended.
    """

    kind: str  # "log" | "linear" | "edges"
    factor: float

    @staticmethod
    def of(grid) -> Spacing | None:
        values = np.sort(np.asarray(grid, dtype=np.float64))
        if values.size < 2:
            return None
        if values[0] > 0:
            ratios = values[1:] / values[:-1]
            if np.allclose(ratios, ratios[0], rtol=1e-6, atol=0):
                return Spacing("log", float((values[-1] / values[0]) ** (1 / (values.size - 1))))
        steps = np.diff(values)
        if np.allclose(steps, steps[0], rtol=1e-6, atol=0):
            return Spacing("linear", float((values[-1] - values[0]) / (values.size - 1)))
        return Spacing("edges", 0.0)

    def beyond(self, grid, side: str, count: int) -> list[float]:
        """``count`` values past ``grid``'s ``side`` edge ("low" or "high"), nearest first;
        a linear grid's low side stops before zero (within round-off of a step)."""
        values = sorted(grid)
        if self.kind == "linear":
            sign = 1 if side == "high" else -1
            edge = values[-1] if side == "high" else values[0]
            out = [edge + sign * k * self.factor for k in range(1, count + 1)]
            return [v for v in out if v > 1e-9 * self.factor]  # not 0 in round-off
        factor = self.factor
        if self.kind == "edges":
            factor = values[-1] / values[-2] if side == "high" else values[1] / values[0]
        if side == "high":
            return [values[-1] * factor**k for k in range(1, count + 1)]
        return [values[0] / factor**k for k in range(1, count + 1)]


def best_setting(sweep: Sweep, table: pa.Table) -> tuning.Best:
    """The best configuration of a group's rows by ``select`` and the first target (``tuning``)."""
    (best,) = tuning.best_settings(table, sweep.targets[0], sweep.select)
    return best


def extend(sweep: Sweep, group: Group, method, table: pa.Table, beat) -> tuple[pa.Table, dict]:
    """``table`` with rates added past the edge its best sits on, and the extension's record."""
    spacing = Spacing.of(group.method.learning_rates)
    grid = list(group.method.learning_rates)
    record = {"added": [], "side": None, "extensions": 0, "max": group.extensions}
    while True:
        best = best_setting(sweep, table)
        if best.edge is None and best.limit is not None:
            record["stopped"] = "diverged"  # a rate beyond the best is the stability limit
            break
        if best.edge is None or spacing is None:
            record["stopped"] = "interior" if best.edge is None else "single"
            break
        if record["extensions"] == group.extensions:
            record["stopped"] = "cap reached"
            break
        record["side"] = best.edge
        added = spacing.beyond(grid, best.edge, EXTENSION_RATES)
        if not added:
            record["stopped"] = "non-positive"
            break
        part = rates_table(sweep, group, method, added, beat)
        table = pa.concat_tables([table, part])
        grid += added
        record["added"] += added
        record["extensions"] += 1
    best = best_setting(sweep, table)  # over every rate run
    record["best_learning_rate"], record["edge"] = best.learning_rate, best.edge
    return table, record

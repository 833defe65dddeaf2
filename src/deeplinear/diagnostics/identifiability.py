"""Whether the observed entries can determine M at all, whatever the method (completion).

A rank-r n1 × n2 matrix has r (n1 + n2 − r) degrees of freedom, so m observed entries can
determine it only when the oversampling ρ = m / (r (n1 + n2 − r)) is at least 1; and row i of
M = L Rᵀ is L_i Rᵀ, r unknowns seen only through row i's entries, so a row (or a column) with
fewer than r observed entries leaves M's other entries in that row undetermined: any rank-r
matrix that agrees on Ω can move them. Both are necessary conditions (counts of Ω, exact),
not sufficient ones: passing them says nothing about how hard recovery is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHOWN = 8  # the row and column indices a line names at most


def degrees_of_freedom(shape: tuple[int, int], rank: int) -> int:
    """r (n1 + n2 − r): the dimension of the rank-r n1 × n2 matrices (ρ's denominator)."""
    return rank * (shape[0] + shape[1] - rank)


def line_counts(rows, cols, weights, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The observed entries (weight > 0) in each row and in each column."""
    keep = np.asarray(weights) > 0
    n1, n2 = shape
    per_row = np.bincount(np.asarray(rows)[keep], minlength=n1)
    return per_row, np.bincount(np.asarray(cols)[keep], minlength=n2)


@dataclass(frozen=True)
class Identifiability:
    """The counts behind the verdict: rank r judged at, m, ρ, and the rows and columns of Ω
    holding fewer than r entries."""

    rank: int
    count: int
    oversampling: float
    short_rows: np.ndarray
    short_cols: np.ndarray

    @property
    def identifiable(self) -> bool:
        """ρ ≥ 1 and every row and column with at least r entries (necessary, not sufficient)."""
        return self.oversampling >= 1 and self.short_rows.size == 0 and self.short_cols.size == 0

    def reasons(self) -> list[str]:
        """Why Ω cannot determine M (empty when identifiable): ρ below 1, the short lines."""
        why = []
        if self.oversampling < 1:
            why.append(
                f"ρ = {self.oversampling:.3g} < 1 ({self.count} entries for the "
                f"{round(self.count / self.oversampling)} degrees of freedom of rank {self.rank})"
            )
        for name, short in (("row", self.short_rows), ("column", self.short_cols)):
            if short.size:
                shown = ", ".join(str(int(i)) for i in short[:SHOWN])
                more = f", … ({short.size} in all)" if short.size > SHOWN else ""
                noun = name if short.size == 1 else name + "s"
                why.append(f"{noun} {shown}{more} with fewer than r = {self.rank} entries")
        return why

    def lines(self) -> list[str]:
        """What explain prints before judging any run: nothing when identifiable."""
        if self.identifiable:
            return []
        return [
            "not identifiable: " + "; ".join(self.reasons()) + ": no method can recover M from "
            "these entries (what the runs fit is one of many rank-r matrices that agree on them)"
        ]

    def record(self) -> dict:
        """The ``identifiability`` object of verdicts.json."""
        return {
            "identifiable": self.identifiable,
            "rank": self.rank,
            "measurements": self.count,
            "oversampling": self.oversampling,
            "short_rows": self.short_rows.tolist(),
            "short_cols": self.short_cols.tolist(),
        }


def identifiability(per_row, per_col, shape: tuple[int, int], rank: int) -> Identifiability:
    """The counts of Ω (``line_counts``) against rank ``rank`` (module docstring)."""
    per_row, per_col = np.asarray(per_row), np.asarray(per_col)
    m = int(per_row.sum())
    return Identifiability(
        rank,
        m,
        m / degrees_of_freedom(shape, rank),
        np.flatnonzero(per_row < rank),
        np.flatnonzero(per_col < rank),
    )

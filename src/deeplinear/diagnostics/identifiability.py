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

    def lines(self) -> list[str]:
        """What explain prints before judging any run: nothing when identifiable."""
        if self.identifiable:
            return []
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
        return [
            "not identifiable: " + "; ".join(why) + ": no method can recover M from these "
            "entries (what the runs fit is one of many rank-r matrices that agree on them)"
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


def identifiability(rows, cols, weights, shape: tuple[int, int], rank: int) -> Identifiability:
    """The counts of Ω (entries with weight > 0) against rank ``rank`` (module docstring)."""
    keep = np.asarray(weights) > 0
    rows, cols = np.asarray(rows)[keep], np.asarray(cols)[keep]
    n1, n2 = shape
    per_row = np.bincount(rows, minlength=n1)
    per_col = np.bincount(cols, minlength=n2)
    m = int(keep.sum())
    rho = m / (rank * (n1 + n2 - rank))
    return Identifiability(
        rank, m, rho, np.flatnonzero(per_row < rank), np.flatnonzero(per_col < rank)
    )

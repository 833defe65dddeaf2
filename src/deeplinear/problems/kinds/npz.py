"""``kind = "npz"``: a dense problem read from an .npz (a target A, or data X and Y)."""

from __future__ import annotations

from pathlib import Path
from typing import final

from deeplinear.errors import UsageError
from deeplinear.problems.dense import npz_problem, npz_problem_shapes, read_npz_problem
from deeplinear.problems.kinds._base import (
    REQUIRED,
    AbstractProblemKind,
    BuildContext,
    ProblemDims,
    declare,
    other,
)


@final
class Npz(AbstractProblemKind):
    name = "npz"
    description = "a target A (population loss), or data X, Y (sample loss), from an .npz"
    keys = declare({"path": other("the path of an .npz file with A, or X and Y", REQUIRED)})
    data_source = "problem.path's data"
    smaller_data = "give problem.path a smaller A (or fewer samples in X and Y)"

    @classmethod
    def _check(cls, problem: dict) -> None:
        if not isinstance(problem.get("path"), str):
            raise UsageError("problem.path is missing: give an .npz file with A, or X and Y")
        if not problem["path"]:
            raise UsageError("problem.path is empty: give an .npz file with A, or X and Y")

    @classmethod
    def dims(cls, problem: dict, base_dir: Path) -> ProblemDims:
        d_out, d_in, samples = npz_problem_shapes(Path(base_dir) / problem["path"], "problem.path")
        return ProblemDims(d_out, d_in, samples)

    @classmethod
    def check_data(cls, problem: dict, base_dir: Path) -> None:
        read_npz_problem(Path(base_dir) / problem["path"], "problem.path")

    @classmethod
    def build(cls, problem: dict, context: BuildContext):
        return npz_problem(Path(context.base_dir) / problem["path"], "problem.path"), None

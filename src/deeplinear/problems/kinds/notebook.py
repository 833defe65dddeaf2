"""``kind = "notebook"``: the 2017 notebook's problem (its generator, its initial weights)."""

from __future__ import annotations

from pathlib import Path
from typing import final

from deeplinear.problems.dense import NotebookDims, Problem, notebook_problem
from deeplinear.problems.kinds._base import (
    AbstractProblemKind,
    BuildContext,
    ProblemDims,
    declare,
    integer,
    number,
    other,
)


@final
class Notebook(AbstractProblemKind):
    name = "notebook"
    description = "the notebook's A (rows scaled down to row_scale_min) and Gaussian X"
    keys = declare(
        {
            "input": integer(6),
            "output": integer(10),
            "samples": other("an integer ≥ 1 or 'population'", 1000),
            "row_scale_min": number(1e-5, 0, strict=True, doc="≤ 1"),
        }
    )
    hidden = (6,)
    init = "notebook"
    samples = 1000
    draws_initial_weights = True  # the notebook draws its initial weights first

    @classmethod
    def shape(cls, problem: dict) -> tuple[int, int]:
        return cls.default(problem, "output"), cls.default(problem, "input")

    @classmethod
    def dims(cls, problem: dict, base_dir: Path) -> ProblemDims:
        samples = None if problem["samples"] == "population" else problem["samples"]
        return ProblemDims(*cls.shape(problem), samples)

    @classmethod
    def build(cls, problem: dict, context: BuildContext):
        population = problem["samples"] == "population"
        dims = NotebookDims(
            cls.default(problem, "input"),
            context.hidden[0],
            cls.default(problem, "output"),
            1 if population else problem["samples"],
        )
        built, drawn = notebook_problem(
            context.seed, dims, context.generator, cls.default(problem, "row_scale_min")
        )
        if population:
            built = Problem(built.name + "-population", built.A)
        return built, drawn

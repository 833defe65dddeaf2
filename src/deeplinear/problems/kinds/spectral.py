"""``kind = "spectral"``: a dense target with an exactly chosen spectrum (or a Gaussian A)."""

from __future__ import annotations

from pathlib import Path
from typing import final

import numpy as np

from deeplinear.core.checks import require_choice, require_number
from deeplinear.errors import UsageError
from deeplinear.problems.dense import singular_values, spectral_problem
from deeplinear.problems.kinds._base import (
    REQUIRED,
    AbstractProblemKind,
    BuildContext,
    ProblemDims,
    check_spectrum_numbers,
    choice,
    declare,
    flag,
    integer,
    number,
    other,
)

LAWS = ("geometric", "linear", "gaussian")


@final
class Spectral(AbstractProblemKind):
    name = "spectral"
    description = "A = U diag(s) Vᵀ with the singular values given or drawn by a law"
    keys = declare(
        {
            "input": integer(REQUIRED),
            "output": integer(REQUIRED),
            "samples": other("an integer ≥ 1 or 'population'", "population"),
            "whiten": flag(False),
            "rank": integer(None, doc="≤ min(input, output); default min(input, output)"),
            "condition_number": number(1.0, 1),
            "law": choice("geometric", *LAWS),
            "singular_values": other("a list of rank numbers > 0"),
            "largest_singular_value": number(1.0, 0, strict=True),
            "vectors": choice("random", "random", "identity"),
            "noise": number(0.0, 0),
        }
    )

    @classmethod
    def _check(cls, problem: dict) -> None:
        for key in ("input", "output"):
            if key not in problem:
                raise UsageError(f"problem.{key} is missing: a spectral problem needs its dims")
        smaller = min(problem["input"], problem["output"])
        rank = problem.get("rank", smaller)
        if rank > smaller:
            raise UsageError(f"problem.rank must be ≤ min(input, output) = {smaller}, got {rank}")
        problem["rank"] = rank
        check_spectrum_numbers(cls, problem)
        cls._check_given(problem, "whiten")
        if "singular_values" in problem:
            values = problem["singular_values"]
            if not isinstance(values, list) or len(values) != rank:
                raise UsageError(f"problem.singular_values must be a list of rank = {rank} numbers")
            for i, v in enumerate(values):
                require_number(v, f"problem.singular_values[{i}]", 0, strict=True)
        cls._check_given(problem, "law")
        if problem.get("law") == "gaussian":  # A = G, i.i.d. N(0, 1): its spectrum is drawn
            for key in ("singular_values", "condition_number", "largest_singular_value", "vectors"):
                if key in problem and (key != "vectors" or problem[key] != "random"):
                    raise UsageError(
                        f"problem.{key} does not apply to problem.law = 'gaussian' (A has "
                        "i.i.d. N(0, 1) entries, its spectrum is drawn): remove it"
                    )
            if rank != smaller:
                raise UsageError(
                    f"problem.rank must be min(input, output) = {smaller} with problem.law = "
                    f"'gaussian' (a Gaussian A has full rank), got {rank}: remove problem.rank"
                )
        if "vectors" in problem:
            require_choice(problem["vectors"], "problem.vectors", cls.keys["vectors"].choices)
        if problem.get("whiten") and problem["samples"] == "population":
            raise UsageError("problem.whiten needs problem.samples to be an integer")

    @classmethod
    def shape(cls, problem: dict) -> tuple[int, int]:
        return problem["output"], problem["input"]

    @classmethod
    def dims(cls, problem: dict, base_dir: Path) -> ProblemDims:
        samples = None if problem["samples"] == "population" else problem["samples"]
        return ProblemDims(*cls.shape(problem), samples)

    @classmethod
    def build(cls, problem: dict, context: BuildContext):
        rng = context.rng
        law = problem.get("singular_values", cls.default(problem, "law"))
        if law == "gaussian":  # σ of a Gaussian G with Haar U, V below: A is distributed as G
            draw = rng.standard_normal((problem["output"], problem["input"]))
            values = np.linalg.svd(draw, compute_uv=False)
        else:
            values = singular_values(
                problem["rank"],
                cls.default(problem, "condition_number"),
                law,
                cls.default(problem, "largest_singular_value"),
            )
        samples = None if problem["samples"] == "population" else problem["samples"]
        built = spectral_problem(
            problem["input"],
            problem["output"],
            values,
            rng=rng,
            vectors=cls.default(problem, "vectors"),
            samples=samples,
            whiten=cls.default(problem, "whiten"),
            noise=cls.default(problem, "noise"),
        )
        return built, None

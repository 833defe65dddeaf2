"""``kind = "completion"`` and ``kind = "sensing"``: a matrix seen through measurements, drawn
(shape, truth, sample) or read from an .npz (``path``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, final

from deeplinear.core.checks import require_choice, require_int, require_number
from deeplinear.diagnostics.identifiability import degrees_of_freedom
from deeplinear.errors import UsageError
from deeplinear.problems.dense import singular_values
from deeplinear.problems.kinds._base import (
    AbstractProblemKind,
    BuildContext,
    Key,
    ProblemDims,
    check_spectrum_numbers,
    choice,
    declare,
    integer,
    number,
    other,
)
from deeplinear.problems.measured import (
    TARGETS,
    VECTORS,
    capacity,
    completion_problem,
    dense_truth_values,
    measured_dims,
    npz_measured_problem,
    oversampled_count,
    read_measured_npz,
    sensing_problem,
    target_factors,
)

MEASURED_KEYS = {  # what completion and sensing share
    "rows": integer(None, doc="required unless path"),
    "cols": integer(None, doc="required unless path"),
    "target": choice("spectrum", *TARGETS),
    "rank": integer(1, doc="≤ min(rows, cols)"),
    "condition_number": number(1.0, 1),
    "law": choice("geometric", "geometric", "linear"),
    "singular_values": other("a list of rank numbers > 0, or a law", "geometric"),
    "largest_singular_value": number(1.0, 0, strict=True),
    "frobenius_norm": number(None, 0, strict=True),
    "vectors": choice("random", *VECTORS),
    "noise": number(0.0, 0),
    "path": other("the path of an .npz file with the measurements (then nothing else)"),
}
SPECTRUM_KEYS = ("condition_number", "law", "singular_values", "largest_singular_value")


class AbstractMeasuredKind(AbstractProblemKind):
    """A matrix completion or sensing problem; the kind declares its own measurement keys
    (``own_keys``), how many measurements a drawn problem has (``count``) and draws them
    (``sample``)."""

    measured = True
    own_keys: ClassVar[dict[str, Key]]

    @classmethod
    def _check(cls, problem: dict) -> None:
        kind = cls.name
        if "path" in problem:
            if not isinstance(problem["path"], str) or not problem["path"]:
                raise UsageError(
                    f"problem.path must be the path of an .npz file, got {problem['path']!r}"
                )
            extra = sorted(set(problem) - {"kind", "path", "samples"})
            if extra:
                raise UsageError(
                    f"problem.{extra[0]} does not apply with problem.path (the file holds the "
                    "measurements): remove it, or remove path to draw a problem"
                )
            return
        for key in ("rows", "cols"):
            if key not in problem:
                raise UsageError(f"problem.{key} is missing: a {kind} problem needs its shape")
            require_int(problem[key], f"problem.{key}", 1)
        target = cls.keys["target"].check(cls.default(problem, "target"), "problem.target")
        problem["target"] = target
        smaller = min(problem["rows"], problem["cols"])
        rank = require_int(cls.default(problem, "rank"), "problem.rank", 1, smaller)
        problem["rank"] = rank
        if target == "gaussian_product":
            for key in (*SPECTRUM_KEYS, "vectors"):
                if key in problem:
                    raise UsageError(
                        f"problem.{key} does not apply to problem.target = 'gaussian_product' "
                        "(its spectrum is drawn): remove it, or use target = 'spectrum'"
                    )
        check_spectrum_numbers(cls, problem)
        law = problem.get("law", cls.default(problem, "singular_values"))
        if isinstance(law, list):
            if len(law) != rank:
                raise UsageError(f"problem.singular_values must be a list of rank = {rank} numbers")
            for i, v in enumerate(law):
                require_number(v, f"problem.singular_values[{i}]", 0, strict=True)
        else:
            require_choice(law, "problem.singular_values", cls.keys["law"].choices)
        cls._check_given(problem, "vectors")
        cls._check_sample(problem)

    @classmethod
    def _check_sample(cls, problem: dict) -> None:
        """The kind's own keys (the sample's size)."""

    @classmethod
    def shape(cls, problem: dict) -> tuple[int, int] | None:
        return None if "path" in problem else (problem["rows"], problem["cols"])

    @classmethod
    def rank(cls, problem: dict) -> int | None:
        return None if "path" in problem else problem["rank"]

    @classmethod
    def count(cls, problem: dict) -> int:
        """The measurements a drawn problem holds (padded to its capacity)."""
        raise NotImplementedError

    @classmethod
    def dims(cls, problem: dict, base_dir: Path) -> ProblemDims:
        if "path" in problem:
            d_out, d_in, m = measured_dims(problem, base_dir)
        else:
            d_out, d_in, m = problem["rows"], problem["cols"], cls.count(problem)
        truth = dense_truth_values(problem, base_dir)
        return ProblemDims(d_out, d_in, None, m, cls.dense_operator, truth)

    dense_operator: ClassVar[bool] = False  # every measurement reads the whole W

    @classmethod
    def check_data(cls, problem: dict, base_dir: Path) -> None:
        if "path" in problem:
            read_measured_npz(Path(base_dir) / problem["path"], cls.name)

    @classmethod
    def build(cls, problem: dict, context: BuildContext):
        """Read from ``path``, or drawn: the truth, then the sample, then the noise, from the
        problem's random stream."""
        if "path" in problem:
            path = Path(context.base_dir) / problem["path"]
            return npz_measured_problem(path, cls.name), None
        shape = (problem["rows"], problem["cols"])
        if problem["target"] == "spectrum":
            values = singular_values(
                problem["rank"],
                cls.default(problem, "condition_number"),
                problem.get("law", cls.default(problem, "singular_values")),
                cls.default(problem, "largest_singular_value"),
            )
        else:
            values = None
        truth = target_factors(
            context.rng,
            shape,
            values,
            target=problem["target"],
            vectors=cls.default(problem, "vectors"),
            rank=problem["rank"],
            frobenius_norm=problem.get("frobenius_norm"),
        )
        noise = cls.default(problem, "noise")
        return cls.sample(context.rng, shape, truth, problem, noise), None

    @classmethod
    def sample(cls, rng, shape, truth, problem: dict, noise: float):
        """The measured problem of the drawn ``truth``."""
        raise NotImplementedError


@final
class Completion(AbstractMeasuredKind):
    name = "completion"
    description = "observed entries of M (each with a probability, or a fixed count)"
    smaller_data = (
        "use a smaller problem.rows and cols, or a smaller problem.probability or observations "
        "(from an .npz: fewer entries in problem.path)"
    )
    keys = declare(
        {
            **MEASURED_KEYS,
            "probability": number(None, 0, strict=True, doc="≤ 1"),
            "observations": integer(None, doc="≤ rows·cols"),
            "oversampling": number(
                None, 0, strict=True, doc="ρ: ρ · rank · (rows + cols − rank) entries"
            ),
            "min_per_line": integer(
                None, doc="resample until every row and column has this many entries"
            ),
        }
    )

    @classmethod
    def _check_sample(cls, problem: dict) -> None:
        given = [k for k in ("probability", "observations", "oversampling") if k in problem]
        if len(given) != 1:
            raise UsageError(
                "a completion problem needs exactly one of problem.probability (each entry "
                "observed with this probability), problem.observations (this many entries) "
                "and problem.oversampling (ρ times the rank's degrees of freedom)"
            )
        n1, n2 = problem["rows"], problem["cols"]
        if given == ["probability"]:
            p = require_number(problem["probability"], "problem.probability", 0, strict=True)
            if p > 1:
                raise UsageError(f"problem.probability must be in (0, 1], got {p!r}")
        elif given == ["oversampling"]:
            rho = require_number(problem["oversampling"], "problem.oversampling", 0, strict=True)
            dof = degrees_of_freedom((n1, n2), problem["rank"])
            if oversampled_count((n1, n2), problem["rank"], rho) > n1 * n2:
                raise UsageError(
                    f"problem.oversampling = {rho:g} asks for more than the rows·cols = "
                    f"{n1 * n2} entries (ρ ≤ {n1 * n2 / dof:.4g} for rank {problem['rank']})"
                )
        else:
            count = require_int(problem["observations"], "problem.observations", 1)
            if count > n1 * n2:
                raise UsageError(
                    f"problem.observations must be ≤ rows·cols = {n1 * n2}, got {count}"
                )
        cls._check_min_per_line(problem)

    @classmethod
    def _check_min_per_line(cls, problem: dict) -> None:
        """``min_per_line`` k needs k entries in each of max(rows, cols) lines: refused here,
        before any sampling, when the sample cannot hold that many."""
        if "min_per_line" not in problem:
            return
        n1, n2 = problem["rows"], problem["cols"]
        least = require_int(problem["min_per_line"], "problem.min_per_line", 1, min(n1, n2))
        expected = cls.sample_count(problem)
        if expected < least * max(n1, n2):
            raise UsageError(
                f"problem.min_per_line = {least} needs at least {least} · max(rows, cols) = "
                f"{least * max(n1, n2)} entries, and the sample has {expected:.6g}: observe "
                "more entries or lower min_per_line"
            )

    @classmethod
    def count(cls, problem: dict) -> int:
        if "observations" in problem:
            return problem["observations"]
        if "oversampling" in problem:
            shape = (problem["rows"], problem["cols"])
            return oversampled_count(shape, problem["rank"], problem["oversampling"])
        return capacity((problem["rows"], problem["cols"]), problem["probability"])

    @classmethod
    def sample_count(cls, problem: dict) -> float | None:
        """The observations, or their expected count p · rows · cols (None: an .npz)."""
        if "path" in problem:
            return None
        if "observations" in problem:
            return problem["observations"]
        if "oversampling" in problem:
            return cls.count(problem)
        return problem.get("probability", 0) * problem.get("rows", 0) * problem.get("cols", 0)

    @classmethod
    def sample(cls, rng, shape, truth, problem: dict, noise: float):
        observations = problem.get("observations")
        if "oversampling" in problem:
            observations = cls.count(problem)
        return completion_problem(
            rng,
            shape,
            truth,
            probability=problem.get("probability"),
            observations=observations,
            noise=noise,
            min_per_line=problem.get("min_per_line", 0),
        )


@final
class Sensing(AbstractMeasuredKind):
    name = "sensing"
    description = "Gaussian linear measurements ⟨A_k, M⟩ (i.i.d. N(0, 1/m) operators)"
    smaller_data = (
        "use fewer problem.measurements or a smaller problem.rows and cols (each operator is "
        "rows × cols; from an .npz: fewer operators in problem.path)"
    )
    keys = declare({**MEASURED_KEYS, "measurements": integer(None, doc="required unless path")})
    dense_operator = True

    @classmethod
    def _check_sample(cls, problem: dict) -> None:
        if "measurements" not in problem:
            raise UsageError("problem.measurements is missing: how many Gaussian measurements")
        require_int(problem["measurements"], "problem.measurements", 1)

    @classmethod
    def count(cls, problem: dict) -> int:
        return problem["measurements"]

    @classmethod
    def sample_count(cls, problem: dict) -> float | None:
        """The measurements (None: an .npz)."""
        return None if "path" in problem else problem.get("measurements")

    @classmethod
    def sample(cls, rng, shape, truth, problem: dict, noise: float):
        return sensing_problem(rng, shape, truth, measurements=problem["measurements"], noise=noise)

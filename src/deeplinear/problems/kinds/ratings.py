"""``kind = "ratings"``: users × items ratings read from a file (or drawn by the lab), split into
training, validation and test ratings; the training ratings are the completion problem, the
others are held out and scored at every record (``problems.ratings``)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import final

from deeplinear.core.checks import check_keys
from deeplinear.errors import UsageError
from deeplinear.problems import ratings_data, ratings_split, ratings_synthetic
from deeplinear.problems.kinds._base import (
    AbstractProblemKind,
    BuildContext,
    ProblemDims,
    choice,
    declare,
    flag,
    integer,
    number,
    other,
)
from deeplinear.problems.ratings import ratings_problem

SYNTHETIC_KEYS = {"users", "items", "ratings", "rank", "noise", "seed", "popularity"}
SYNTHETIC_DEFAULTS = {"noise": 0.5, "seed": 0, "popularity": 1.0}  # where the table omits them


@final
class Ratings(AbstractProblemKind):
    name = "ratings"
    description = (
        "a users × items ratings file (or a synthetic one), split into train/validation/test"
    )
    measured = True
    hidden = (10,)
    init = "spectral_estimate"
    data_source = "the ratings"
    smaller_data = "use a smaller ratings file (or fewer synthetic ratings)"
    keys = declare(
        {
            "path": other(
                "a ratings file: .tsv/.data (user item rating [timestamp], no header), "
                ".csv (with a header) or .parquet"
            ),
            "columns": other("a table naming the file's user, item, rating, timestamp columns"),
            "scale": other("[lowest, highest] rating (default: the file's own range)"),
            "drop_invalid": flag(False, "drop duplicates, NaN and out-of-scale rows (counted)"),
            "synthetic": other("a table: users, items, ratings, rank, noise, seed[, popularity]"),
            "test_fraction": number(0.1, 0),
            "validation_fraction": number(0.1, 0),
            "split": choice("random", "random", "time"),
            "split_seed": integer(None, 0, doc="default: the run's seed (another split each)"),
            "biases": flag(True, "the global mean and user/item biases (baseline predictors)"),
            "regularization": number(0.0, 0),
            "bias_regularization": number(0.0, 0),
        }
    )

    @classmethod
    def _check(cls, problem: dict) -> None:
        given = [k for k in ("path", "synthetic") if k in problem]
        if len(given) != 1:
            raise UsageError(
                "a ratings problem needs exactly one of problem.path (a ratings file) and "
                "problem.synthetic (a table: users, items, ratings, rank, noise, seed)"
            )
        if "path" in problem and (not isinstance(problem["path"], str) or not problem["path"]):
            raise UsageError(f"problem.path must be a ratings file's path, got {problem['path']!r}")
        # the data layer's own checks, named as this table's keys, before anything is read
        ratings_data.check_columns(problem.get("columns"), "problem.")
        ratings_data.check_scale(problem.get("scale"), "problem.")
        if "synthetic" in problem:
            _check_synthetic(problem["synthetic"], problem.get("scale"))
        problem["test_fraction"], problem["validation_fraction"] = ratings_split.check_fractions(
            cls.default(problem, "test_fraction"), cls.default(problem, "validation_fraction"),
            "problem.",
        )  # fmt: skip
        cls._check_given(problem, "split", "split_seed", "biases", "drop_invalid")
        cls._check_given(problem, "regularization", "bias_regularization")

    @classmethod
    def dims(cls, problem: dict, base_dir: Path) -> ProblemDims:
        table, split = loaded(problem, base_dir)
        shape = (len(table.user_ids), len(table.item_ids))
        return ProblemDims(shape[0], shape[1], None, len(split.train))

    @classmethod
    def sample_count(cls, problem: dict) -> float | None:
        """The training ratings (known once the file is read: None before)."""
        return None

    @classmethod
    def check_data(cls, problem: dict, base_dir: Path) -> None:
        loaded(problem, base_dir)

    @classmethod
    def build(cls, problem: dict, context: BuildContext):
        table, split = loaded(problem, context.base_dir, context.seed)
        name = Path(problem["path"]).name if "path" in problem else "synthetic ratings"
        built = ratings_problem(
            table, split, biases=cls.default(problem, "biases"),
            regularization=cls.default(problem, "regularization"),
            bias_regularization=cls.default(problem, "bias_regularization"), name=name,
        )  # fmt: skip
        return built, None


def _check_synthetic(table, scale) -> None:
    """``problem.synthetic``: its keys, then ``synthetic_ratings``' own checks of the values
    (with the defaults it will be drawn with)."""
    if not isinstance(table, dict):
        raise UsageError("problem.synthetic must be a table: users, items, ratings, rank, noise")
    check_keys(table, SYNTHETIC_KEYS, "problem.synthetic")
    for key in ("users", "items", "ratings", "rank"):
        if key not in table:
            raise UsageError(f"problem.synthetic.{key} is missing (users, items, ratings, rank)")
    given = {k: table.get(k, v) for k, v in SYNTHETIC_DEFAULTS.items()}
    ratings_synthetic.check_synthetic(
        **{k: table[k] for k in ("users", "items", "ratings", "rank")}, **given,
        scale=tuple(scale or (1, 5)), field="problem.synthetic",
    )  # fmt: skip


def loaded(problem: dict, base_dir: Path, seed: int = 0):
    """(table, split) of a checked ratings table: read (or drawn) and split once per process
    for the same file, contents and options; the split drawn with ``split_seed``, else with the
    run's ``seed`` (each seed of a sweep holds out other ratings; the sizes do not change)."""
    if "path" in problem:
        path = (Path(base_dir) / problem["path"]).resolve()
        try:
            stat = path.stat()
        except OSError:
            raise UsageError(
                f"problem.path: no ratings file at {path}: give the path of a .tsv, .csv or "
                ".parquet file (relative to the run file)"
            ) from None
        source = (str(path), stat.st_mtime_ns, stat.st_size)
    else:
        source = ("synthetic", json.dumps(problem["synthetic"], sort_keys=True))
    keys = ("columns", "scale", "drop_invalid", "test_fraction", "validation_fraction", "split")
    options = {k: problem.get(k) for k in keys}
    options["split_seed"] = problem.get("split_seed", seed)
    options = json.dumps(options, sort_keys=True)
    return _load(source, options)


@lru_cache(maxsize=4)
def _load(source: tuple, options: str):
    given = json.loads(options)
    if source[0] == "synthetic":
        spec = json.loads(source[1])
        table = ratings_synthetic.synthetic_ratings(
            users=spec["users"], items=spec["items"], ratings=spec["ratings"],
            rank=spec["rank"], **{k: spec.get(k, v) for k, v in SYNTHETIC_DEFAULTS.items()},
            scale=tuple(given["scale"] or (1, 5)),
        )  # fmt: skip
    else:
        table = ratings_data.read_ratings(
            source[0], columns=given["columns"], drop_invalid=bool(given["drop_invalid"]),
            scale=None if given["scale"] is None else tuple(given["scale"]),
            field="problem.path",
        )  # fmt: skip
    split = ratings_split.split(
        table, test_fraction=given["test_fraction"] if given["test_fraction"] is not None else 0.1,
        validation_fraction=(given["validation_fraction"]
                             if given["validation_fraction"] is not None else 0.1),
        seed=given["split_seed"] or 0, how=given["split"] or "random",
    )  # fmt: skip
    return table, split

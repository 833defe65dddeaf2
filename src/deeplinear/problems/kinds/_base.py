"""The problem-kind interface: a kind declares its keys, checks its table, says what the run
file takes from it by default, and builds its problem.

A kind is a final class with class attributes and class methods (no instances: the checked
``[problem]`` table is the data). Everything the rest of the package needs to know about a kind
is declared here, on its class, never looked up by its name: the keys it takes (``keys``: type,
range, default), ``check`` (the table checked, defaults filled in), the run file's defaults
(``hidden``, ``init``), whether it is seen through measurements (``measured``), whether it draws
its own initial weights (``draws_initial_weights``: ``init.kind = 'notebook'``), its dimensions
for the budget (``dims``), the count ``learning_rate_scaling = "per_sample"`` divides by
(``sample_count``) and the problem itself (``build``).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from deeplinear.core.checks import (
    check_keys,
    require_choice,
    require_flag,
    require_int,
    require_number,
)
from deeplinear.errors import UsageError

REQUIRED = object()  # a key's default when the kind needs it given
UNSCALED_SAMPLES = 1000  # sample_count where problem.samples is not given


@dataclass(frozen=True)
class Key:
    """What one key of a ``[problem]`` table accepts, declared once on its kind (see
    ``integer``, ``number``, ``choice``, ``flag``, ``other``)."""

    kind: str  # "integer" | "number" | "choice" | "flag" | "other"
    default: Any = None  # None: absent means "not used" (or derived); REQUIRED: must be given
    low: float | None = None
    high: float | None = None
    strict: bool = False  # low itself excluded
    choices: tuple = ()
    doc: str = ""

    def check(self, value, path: str):
        """``value`` checked by the shared checks (their one-line messages), returned."""
        if self.kind == "integer":
            return require_int(value, path, self.low, self.high)
        if self.kind == "number":
            return require_number(value, path, self.low, strict=self.strict)
        if self.kind == "choice":
            return require_choice(value, path, self.choices)
        if self.kind == "flag":
            return require_flag(value, path)
        return value  # "other": checked by the kind's own ``_check``

    def describe(self) -> str:
        if self.kind == "choice":
            text = "one of " + ", ".join(map(repr, self.choices))
        elif self.kind == "flag":
            text = "true or false"
        elif self.kind in ("integer", "number"):
            text = "an integer" if self.kind == "integer" else "a finite number"
            if self.low is not None:
                text += f" {'>' if self.strict else '≥'} {self.low:g}"
            if self.high is not None:
                text += f" ≤ {self.high:g}"
        else:
            text = self.doc
        if self.default is REQUIRED:
            return text + " (required)"
        return text + ("" if self.default is None else f" (default {self.default!r})")


def declare(keys: dict[str, Key]) -> Mapping[str, Key]:
    """A kind's ``keys``, read-only."""
    return MappingProxyType(dict(keys))


def integer(default=None, low=1, high=None, doc=""):
    return Key("integer", default, low, high, doc=doc)


def number(default=None, low=None, *, strict=False, doc=""):
    return Key("number", default, low, strict=strict, doc=doc)


def choice(default, *choices, doc=""):
    return Key("choice", default, choices=choices, doc=doc)


def flag(default=False, doc=""):
    return Key("flag", default, doc=doc)


def other(doc, default=None):
    return Key("other", default, doc=doc)


@dataclass(frozen=True)
class ProblemDims:
    """A problem's size without building it (``budget`` adds the widths and the method):
    ``d_out × d_in``, ``samples`` (None: population loss, or measured), ``measurements``
    (completion, sensing) and whether each measurement reads all of W (sensing)."""

    d_out: int
    d_in: int
    samples: int | None = None
    measurements: int | None = None
    dense_operator: bool = False
    dense_truth: int = 0  # entries of a dense truth read from a file (its SVD's working set)


@dataclass(frozen=True)
class BuildContext:
    """What a kind's ``build`` may use beyond its table: the run file's seed and generator,
    the problem's random stream (``standard_normal``/``rand``), the hidden widths, and the
    folder relative paths are read from."""

    seed: int
    generator: str
    rng: Any
    hidden: tuple[int, ...]
    base_dir: Path


class AbstractProblemKind(abc.ABC):
    """A kind of problem, as ``[problem] kind = NAME`` names it."""

    name: ClassVar[str]
    description: ClassVar[str]
    keys: ClassVar[Mapping[str, Key]]  # beyond "kind"
    hidden: ClassVar[tuple[int, ...] | None] = None  # default model.hidden (None: required)
    init: ClassVar[str] = "gaussian"  # default init.kind when the run file has no [init]
    samples: ClassVar[int | str] = "population"  # default problem.samples
    measured: ClassVar[bool] = False  # seen through measurements (completion, sensing)
    draws_initial_weights: ClassVar[bool] = False  # build returns initial weights too
    data_source: ClassVar[str] = "the problem"  # the memory refusal's words for its data
    # the memory refusal's advice for its data, in the kind's own keys
    smaller_data: ClassVar[str] = "use fewer problem.samples or a smaller problem.input and output"

    @classmethod
    def key_names(cls) -> set[str]:
        return {"kind", *cls.keys}

    @classmethod
    def default(cls, problem: dict, key: str):
        """``problem[key]``, or its declared default."""
        return problem.get(key, cls.keys[key].default)

    @classmethod
    def check(cls, table: dict) -> dict:
        """The ``[problem]`` table checked (one-line UsageError naming ``problem.KEY``), as a
        new dict with ``kind`` and ``samples`` filled in (and what the kind fills in)."""
        check_keys(table, cls.key_names(), "problem")
        problem = dict(table)
        problem["kind"] = cls.name
        cls._check_given(problem, "input", "output", "rank")
        if "row_scale_min" in problem:
            value = require_number(
                problem["row_scale_min"], "problem.row_scale_min", 0, strict=True
            )
            if value > 1:
                raise UsageError(
                    f"problem.row_scale_min must be ≤ 1 (A's rows are scaled from 1 down to "
                    f"it), got {value!r}"
                )
        samples = problem.get("samples", cls.samples)
        if samples != "population":
            require_int(samples, "problem.samples", 1)
        problem["samples"] = samples
        cls._check(problem)
        return problem

    @classmethod
    def _check(cls, problem: dict) -> None:
        """The kind's own checks, after the shared ones (``problem`` may be filled in)."""
        return None

    @classmethod
    def _check_given(cls, problem: dict, *names: str) -> None:
        """Each of ``names`` given in ``problem`` against its declaration."""
        for name in names:
            if name in problem:
                cls.keys[name].check(problem[name], f"problem.{name}")

    @classmethod
    def shape(cls, problem: dict) -> tuple[int, int] | None:
        """(d_out, d_in) from the checked table alone, or None (read from a file)."""
        return None

    @classmethod
    def rank(cls, problem: dict) -> int | None:
        """The target's rank from the checked table alone, or None (its shape bounds it)."""
        return problem.get("rank")

    @classmethod
    @abc.abstractmethod
    def dims(cls, problem: dict, base_dir: Path) -> ProblemDims:
        """The problem's size (reading only the headers of its files)."""

    @classmethod
    def sample_count(cls, problem: dict) -> float | None:
        """What ``learning_rate_scaling = "per_sample"`` divides a rate by: the terms the loss
        sums (``problem.samples``); None where the loss is no such sum (``"population"``) or
        the count is not in the run file. ``problem`` is the table as written (unchecked)."""
        # 1000 where not given, whatever the kind's own default (as before kinds declared
        # themselves: a spectral problem's population loss and an .npz's samples count 1000)
        samples = problem.get("samples", UNSCALED_SAMPLES)
        return samples if isinstance(samples, int) and not isinstance(samples, bool) else None

    @classmethod
    def check_data(cls, problem: dict, base_dir: Path) -> None:
        """Read and check what the problem reads from files (one-line UsageError), before any
        estimate or work; nothing for a drawn problem. Cheaper than ``build`` (no
        factorization)."""
        return None

    @classmethod
    @abc.abstractmethod
    def build(cls, problem: dict, context: BuildContext):
        """``(problem, initial weights or None)``: the ``Problem`` or ``MeasuredProblem`` the
        checked table describes, drawn from ``context.rng`` (the initial weights only where
        ``draws_initial_weights``)."""


def check_spectrum_numbers(cls, problem: dict) -> None:
    """The numbers that set a drawn target's spectrum and noise, where given."""
    cls._check_given(problem, "condition_number", "largest_singular_value", "frobenius_norm")
    cls._check_given(problem, "noise")

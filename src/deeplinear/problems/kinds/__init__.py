"""Problem kinds: **a kind declares itself in one final class**, as a method does.

``[problem] kind = NAME`` names a class in ``PROBLEM_KINDS``; everything the run file, the
budget, the execution and sweeps need to know about a kind is declared on it (``_base.py``,
``AbstractProblemKind``): its keys with their types, ranges and defaults, ``check``, the run
file's defaults (``hidden``, ``init``), ``dims``, ``sample_count`` and ``build``. Adding a kind
is one file and one line here (or ``register(cls)`` from outside the package).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from deeplinear.core.checks import require_choice
from deeplinear.core.importable import importable
from deeplinear.errors import UsageError
from deeplinear.problems.kinds._base import (
    REQUIRED,
    AbstractProblemKind,
    BuildContext,
    Key,
    ProblemDims,
)
from deeplinear.problems.kinds.measured import AbstractMeasuredKind, Completion, Sensing
from deeplinear.problems.kinds.notebook import Notebook
from deeplinear.problems.kinds.npz import Npz
from deeplinear.problems.kinds.ratings import Ratings
from deeplinear.problems.kinds.spectral import Spectral

BUILT_IN = (Notebook, Spectral, Npz, Completion, Sensing, Ratings)
PROBLEM_KINDS: dict[str, type[AbstractProblemKind]] = {cls.name: cls for cls in BUILT_IN}
DEFAULT_KIND = Notebook.name  # a run file without [problem], or without problem.kind


def problem_kind(name, path: str = "problem.kind") -> type[AbstractProblemKind]:
    """The kind called ``name``, or a one-line UsageError listing the kinds."""
    return PROBLEM_KINDS[require_choice(name, path, tuple(PROBLEM_KINDS))]


def kind_of(problem: dict) -> type[AbstractProblemKind] | None:
    """The kind of a ``[problem]`` table as written (None: not a known kind)."""
    return PROBLEM_KINDS.get(problem.get("kind", DEFAULT_KIND))


def register(cls: type[AbstractProblemKind]) -> type[AbstractProblemKind]:
    """Add a kind (a final subclass of ``AbstractProblemKind``) to the registry."""
    if not (isinstance(cls, type) and issubclass(cls, AbstractProblemKind)):
        raise TypeError(f"{cls!r} is not a subclass of AbstractProblemKind")
    PROBLEM_KINDS[cls.name] = cls
    return cls


def registered() -> tuple[type[AbstractProblemKind], ...]:
    """The kinds added beyond the built-in ones (``register``)."""
    return tuple(cls for cls in PROBLEM_KINDS.values() if cls not in BUILT_IN)


def portable(where: str) -> tuple[type[AbstractProblemKind], ...]:
    """The registered kinds, for another process (a sweep's worker, a Ray task) to register:
    each must be importable there by its module and qualified name, else a one-line refusal
    naming it and the fix; ``where`` names what needs them."""
    for cls in registered():
        if not importable(cls):
            raise UsageError(
                f"problem kind {cls.name!r} (class {cls.__qualname__} in {cls.__module__}) was "
                f"registered but {where} cannot import it: define it at the top level of an "
                "importable module (not in __main__ or inside a function)"
            )
    return registered()


class _KeysByKind(Mapping):
    """kind name → the keys its ``[problem]`` table takes (``kind`` included), live."""

    def __getitem__(self, name: str) -> set[str]:
        return PROBLEM_KINDS[name].key_names()

    def __iter__(self) -> Iterator[str]:
        return iter(PROBLEM_KINDS)

    def __len__(self) -> int:
        return len(PROBLEM_KINDS)


PROBLEM_KEYS: Mapping[str, set[str]] = _KeysByKind()

__all__ = [
    "DEFAULT_KIND",
    "PROBLEM_KEYS",
    "PROBLEM_KINDS",
    "REQUIRED",
    "AbstractMeasuredKind",
    "AbstractProblemKind",
    "BuildContext",
    "Key",
    "ProblemDims",
    "kind_of",
    "problem_kind",
    "register",
]

"""Counted nouns in what the lab prints: ``counted(1, "run")`` is "1 run", ``counted(2, "run")``
"2 runs" (the plural is the noun + s unless given)."""

from __future__ import annotations


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` and ``noun``, in the plural unless ``count`` is 1 (``1 run``, ``0 runs``)."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"

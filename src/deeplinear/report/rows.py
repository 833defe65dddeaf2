"""How the report's summary rows read: axis values as text, and the recovery targets the rows
were counted to (the terminal table, the CSV and the page use these)."""

from __future__ import annotations

import json


def shown(value: str) -> str:
    """An axis column's text as a reader wants it: ``population``, not ``"population"``."""
    try:
        decoded = json.loads(value)
    except (TypeError, ValueError):
        return str(value)
    return decoded if isinstance(decoded, str) else str(value)


def point_text(point) -> str:
    return ", ".join(f"{k.split('.')[-1]}={shown(v)}" for k, v in point.items()) or "base"


def counted_recovery_targets(rows) -> list[float]:
    """The recovery targets the rows were counted to (the first row that has them)."""
    for row in rows:
        if row.get("recovery_targets"):
            return [c["target"] for c in row["recovery_targets"]]
    return []

"""One colour per method in every figure of a report: a method's colour is the palette entry at
its position in the sweep's method list (the order of ``[[methods]]``), so GD is the same blue
in the curves, the axis figures and the profiles, static or interactive."""

from __future__ import annotations

# Tableau 10, then its lighter partners: 20 distinct colours before any repeats
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
    "#1f3b5a", "#8c4a0f", "#7a1f20", "#2f6b66", "#2a5a22",
    "#8a7314", "#5d3d55", "#b3475a", "#54382a", "#5f5a56",
)  # fmt: skip


def method_colours(methods) -> dict[str, str]:
    """``{method: colour}`` for ``methods`` in their given order (repeats after 20)."""
    order = list(dict.fromkeys(methods))
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(order)}

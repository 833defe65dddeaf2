"""One colour per method in every figure of every report: a method's colour is derived from its
name, not from its position in a sweep, so GD is the same blue in the curves, the axis figures
and the profiles, static or interactive, in this report and the next.

The lab's own methods have fixed entries of the palette (``KNOWN``, the most used on the
saturated colours); any other name starts at the entry its SHA-256 picks and, where a method of
the same report already holds that entry, takes the next free one (names in sorted order: the
choice depends on which methods a report holds, never on their order). Beyond 20 methods
colours repeat.
"""

from __future__ import annotations

import hashlib

# Tableau 10, then darker partners: 20 distinct colours before any repeats
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1",
    "#9c755f", "#76b7b2", "#edc948", "#ff9da7", "#bab0ac",
    "#1f3b5a", "#8c4a0f", "#7a1f20", "#2a5a22", "#5d3d55",
    "#54382a", "#2f6b66", "#8a7314", "#b3475a", "#5f5a56",
)  # fmt: skip

KNOWN = (  # palette entry i for KNOWN[i]
    "gd", "adam", "lm", "als", "scaled-gd",
    "gn-cg", "momentum", "lbfgs", "rmsprop", "nesterov",
    "seed-lm", "adagrad", "precgd", "adamw", "muon",
    "natural-gradient", "nuclear-norm", "scipy-lm", "scipy-trf", "optimistix-gn",
)  # fmt: skip


def _start(name: str) -> int:
    if name in KNOWN:
        return KNOWN.index(name)
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % len(PALETTE)


def method_colours(methods) -> dict[str, str]:
    """``{method: colour}`` for ``methods`` (in their given order; the colours do not depend on
    it): the lab's methods their fixed colour, others their name's, moved to the next free
    entry where another method of ``methods`` holds it."""
    names = list(dict.fromkeys(methods))
    slots: dict[str, int] = {}
    taken: set[int] = set()
    for name in sorted(names, key=lambda n: (n not in KNOWN, n)):  # fixed entries first
        slot = _start(name)
        while slot in taken and len(taken) < len(PALETTE):
            slot = (slot + 1) % len(PALETTE)
        slots[name] = slot
        taken.add(slot)
    return {name: PALETTE[slots[name]] for name in names}

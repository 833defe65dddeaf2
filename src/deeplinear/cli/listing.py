"""``deeplinear methods``: every method with its hyperparameters, from their declarations.

A plugin that cannot be used (``Registry.refusals``: it fails to import, is not a method, or
takes a built-in's or another method's name) is one line on stderr naming it, the error and the
fix; the rest of the list is printed as usual and the listing exits 0 (it listed what there is).
"""

from __future__ import annotations

import sys


def methods_command(args) -> int:
    from deeplinear.methods import METHODS, declarations

    usable = METHODS.usable()
    width = max(map(len, usable), default=0)  # the longest name sets the column
    pad = " " * (width + 1)
    for name, cls in usable.items():
        print(f"{name:<{width}} {cls.description}")
        print(f"{pad}learning_rates: a list of finite numbers > 0")
        for field, (default, spec) in declarations(cls).items():
            print(f"{pad}{field} = {default!r}: {spec.describe()}")
        columns = ", ".join(f"{column} ({kind})" for column, kind in cls.columns.items())
        print(f"{pad}records: {columns or 'no columns of its own'}")
        loop = "yes" if cls.in_loop else "no (from Python, one run after another)"
        print(f"{pad}in the compiled loop: {loop}")
        print(f"{pad}Gauss-Newton rate predicts it: {'yes' if cls.gauss_newton_rate else 'no'}")
        print(f"{pad}reference: {cls.reference}")
    for line in METHODS.refusals().values():
        print(line, file=sys.stderr)
    return 0

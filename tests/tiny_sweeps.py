"""Small sweep files for tests: one spectral problem (5 → 3 → 6, population loss), an axis of
condition numbers, GD on a 3-point log grid and optionally LM."""

LM = """[[methods]]
name = "lm"
learning_rates = [1.0]
steps = 20
"""


def spectral_sweep(
    *, seeds: int, targets: str, steps: int, conditions: str = "10.0, 100.0", lm=True, name=None
) -> str:
    """The sweep file's text (``targets`` and ``conditions`` as TOML list bodies)."""
    head = f'name = "{name}"\n' if name else ""
    return f"""
{head}seeds = {seeds}
targets = [{targets}]
steps = {steps}
record_every = 10
[problem]
kind = "spectral"
input = 5
output = 6
rank = 3
samples = "population"
[model]
hidden = [3]
[init]
kind = "scaled_gaussian"
[axes]
"problem.condition_number" = [{conditions}]
[[methods]]
name = "gd"
learning_rates = {{min = 0.01, max = 0.1, num = 3, scaling = "log"}}
""" + (LM if lm else "")

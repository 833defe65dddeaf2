"""What ``explain`` prints on the edge-of-stability example (examples/edge_of_stability.toml:
GD on 20 layers of width 50, its loss falling non-monotonically at the edge): the modes still
missing in one phrase, not a list of 38 numbers, and no ETA where the fitted rates disagree by
orders of magnitude (it read "3e+05–1.8e+47")."""

import json
import re
from pathlib import Path

import numpy as np

from deeplinear.experiment import config as configs
from deeplinear.experiment import execution
from deeplinear.explain import explain
from deeplinear.verdict import mode_evidence
from deeplinear.verdict._eta import reaches, reliable

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "edge_of_stability.toml"


def test_many_missing_modes_read_as_one_phrase():
    learned = np.r_[np.ones(12), np.linspace(0.98, 0.0, 37), -0.3]  # modes 13–50 missing
    (line,) = mode_evidence(learned)
    assert line.startswith("38 of 50 target modes still missing")
    assert "modes 13–50" in line and "0.02 (mode 13) to 1.3 (mode 50)" in line
    assert line.count(":") == 1  # no "i: value" list
    few = mode_evidence(np.r_[np.ones(8), 0.5, 0.2])  # a few: listed as before
    assert few == ["modes still missing (1 − fraction learned, as in modes.png): 9: 0.5, 10: 0.8"]
    gaps = mode_evidence(np.r_[0.5, 1.0, 0.5, 0.5, 1.0, np.zeros(5), np.nan])
    assert "modes 1, 3–4, 6–10" in gaps[0] and "modes 11 not measured" in gaps[0]


def test_an_interval_over_two_orders_of_magnitude_is_no_eta():
    assert reliable(4.3e4, 7.8e4) and reliable(6.3e4, 3e5)
    assert not reliable(3e5, 1.8e47) and not reliable(3e5, 3.1e7) and not reliable(3e7, np.inf)
    assert (
        reaches("T", 4.3e4, 7.8e4, " (1 s here)")
        == "reaches T in 4.3e+04–7.8e+04 more steps (1 s here)"
    )
    assert reaches("T", 3e5, 1.8e47, " (1 s here)") == (
        "no reliable ETA to T: between 3e+05 and ≫1e+10 more steps"
    )
    assert reaches("T", 3e7, np.inf) == "no reliable ETA to T: between 3e+07 and ∞ more steps"


def test_explain_on_the_edge_of_stability_example(tmp_path):
    """The example's smallest step (η = 7e-7, 2/η = 2.9e6 below the sharpness it reaches), its
    sharpness not recorded (it is not what is judged): 4000 steps, judged from the record."""
    text = EXAMPLE.read_text()
    text = re.sub(r"learning_rates = \[.*\]", "learning_rates = [7e-7]", text)
    text = re.sub(r"\[diagnostics\][^\[]*", "", text)
    path = tmp_path / "eos.toml"
    path.write_text(text)
    out = tmp_path / "eos"
    execution.execute(configs.load(path), out)
    lines = explain(out, budget_steps=0, figures=False).lines()
    printed = "\n".join(lines)
    (verdict,) = json.loads((out / "verdicts.json").read_text())["verdicts"]
    low, high = verdict["eta_steps"]
    assert high > 100 * low  # the fitted rates (and power law) disagree
    assert "no reliable ETA to 1e-10 of the initial loss: between" in verdict["headline"]
    assert "≫1e+10 more steps" in verdict["headline"]
    assert max(int(e) for e in re.findall(r"e\+(\d+)", printed)) <= 10  # no 1.8e+47
    (modes,) = [line for line in verdict["evidence"] if "modes" in line and "missing" in line]
    assert re.match(r"\d+ of 50 target modes still missing", modes), modes
    assert len(re.findall(r"\d: \d", modes)) == 0 and len(modes) < 200
    assert modes in printed

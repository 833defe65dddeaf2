"""The edge-of-stability benchmark's stable phase (benchmarks/edge_of_stability.py) on records
whose answer is known: an entry overshoot after t₁, then a level inside the ±10 % band."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from edge_of_stability import phase_summary

RATE = 1e-3  # 2/η = 2000


def _records():
    steps = np.arange(0, 4001, 25)
    ratio = np.where(steps < 400, steps / 400 * 0.99, 1.0)  # sharpening, reaches 2/η at t₁
    ratio[steps == 400] = 1.0
    ratio[(steps > 400) & (steps <= 700)] = 1.3  # the entry overshoot
    ratio[steps == 3000] = 1.08  # inside the band, the phase's max
    loss = np.linspace(10.0, 1.0, steps.size)
    loss[steps == 3500] = 5.0  # one rise and its fall
    return steps, ratio * 2 / RATE, loss


def test_later_half_phase_excludes_the_entry_transient():
    steps, sharpness, loss = _records()
    out = phase_summary(steps, sharpness, loss, RATE)
    assert out["t1"] == 400 and abs(out["peak"] - 1.3) < 1e-12
    assert out["start"] == 2200  # t₁ + (4000 − 400)/2
    assert out["within"] and out["fraction"] == 1.0
    assert abs(out["max"] / out["edge"] - 1.08) < 1e-12 and out["argmax"] == 3000
    assert out["increases"] == 1


def test_a_fixed_settle_that_keeps_the_transient_fails_the_band():
    steps, sharpness, loss = _records()
    out = phase_summary(steps, sharpness, loss, RATE, settle=250)
    assert out["start"] == 650 and not out["within"]
    assert abs(out["max"] / out["edge"] - 1.3) < 1e-12


def test_never_reaching_the_edge_gives_no_phase():
    steps, sharpness, loss = _records()
    out = phase_summary(steps, 0.5 * sharpness / sharpness.max() * 2 / RATE, loss, RATE)
    assert out["t1"] is None

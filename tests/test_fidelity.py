"""``reproduce`` gives the notebook's curves: against the TF reference (seed 0) and against our
plain-NumPy port of the notebook (other seeds)."""

import numpy as np
import pytest

from deeplinear.diagnostics.floors import reachable_minimum, widths_of
from deeplinear.notebook2017.experiment import ADAM_RATES, GD_RATES, LM_RATES
from deeplinear.notebook2017.reproduce import reproduce


def by_label(reproduction):
    return {series["run"][0]: series for series in reproduction.runs.values()}


@pytest.mark.parametrize(
    "label", [f"GD step={r:g}" for r in GD_RATES] + [f"ADAM step={r:g}" for r in ADAM_RATES]
)
def test_first_order_matches_tf_reference(seed0, reference, label):
    ours = by_label(seed0)[label]
    loss, grad = reference[f"{label}|loss"], reference[f"{label}|grad_norm"]
    steps = reference[f"{label}|step"]
    # the reference records steps 0..2999 (or up to divergence); we also record step 3000
    np.testing.assert_array_equal(ours["step"][: len(steps)], steps)
    finite = np.isfinite(loss)
    if not finite.all():  # diverged: at the same step, and our rows end there
        assert len(ours["loss"]) == len(loss)
        assert not np.isfinite(ours["loss"][-1])
    else:
        assert len(ours["loss"]) == len(loss) + 1
    n = len(loss)
    np.testing.assert_allclose(ours["loss"][:n][finite], loss[finite], rtol=1e-9, atol=0)
    grad_finite = finite & np.isfinite(grad)
    np.testing.assert_allclose(ours["grad_norm"][:n][grad_finite], grad[grad_finite], rtol=1e-9)


def test_diverging_runs_stop_where_the_notebook_stopped(seed0):
    runs = by_label(seed0)
    assert runs["GD step=0.0001"]["step"][-1] == 7
    assert runs["GD step=0.001"]["step"][-1] == 5


@pytest.mark.parametrize("rate", LM_RATES)
def test_lm_matches_tf_reference(seed0, reference, rate):
    label = f"LM step={rate:g}"
    ours = by_label(seed0)[label]
    loss, printed = reference[f"{label}|loss"], reference[f"{label}|loss_notebook"]
    assert ours["step"][-1] == 200 and ours["step"][0] == 0
    keep = loss > 1e-12 * ours["loss"][0]
    assert keep.sum() > 50
    # the notebook recorded LM after each update: reference step k is our row k
    np.testing.assert_allclose(ours["loss"][1:][keep], loss[keep], rtol=1e-6)
    np.testing.assert_allclose(ours["loss_notebook"][1:][keep], printed[keep], rtol=1e-6)


@pytest.mark.parametrize("seed", [1, 3])
def test_other_seeds_match_the_numpy_port(seed):
    deviations = reproduce(seed, write=False, check=True).check
    assert len(deviations) == len(GD_RATES) + len(ADAM_RATES) + len(LM_RATES)
    for label, deviation in deviations.items():
        tolerance = 1e-6 if label.startswith("LM") else 1e-9
        assert deviation <= tolerance, (label, deviation)


def test_modern_lm_reaches_the_exact_minimum(seed0):
    """Within the loop's round-off of the exact minimum; its reported final loss is exact."""
    lm = by_label(seed0)["LM step=0.2"]
    assert lm["loss"].min() < 1e-25 * lm["loss"][0]
    floor = reachable_minimum(seed0.problem, widths_of(seed0.weights))
    assert floor.reached(lm["loss"][-1])
    value, bound = seed0.final_losses["LM step=0.2"]
    assert bound <= 1e-28 and floor.value < value < floor.value + floor.resolution

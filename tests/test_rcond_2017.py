"""The 2017 lstsq setting (rcond=-1) stalls; the modern one reaches round-off (seeds 0–4)."""

import pytest

from deeplinear.loop import runner
from deeplinear.methods import make_method
from deeplinear.notebook2017 import notebook
from deeplinear.problems.dense import notebook_problem


@pytest.mark.parametrize("seed", range(5))
def test_2017_setting_stalls_where_modern_converges(seed):
    problem, weights = notebook_problem(seed)
    legacy = notebook.levenberg_marquardt(problem.X, problem.Y, *weights, 0.2, 200, "2017")
    modern = runner.run(make_method("seed-lm"), problem.objective(), weights, [0.2], 200)
    initial = legacy.loss[0]
    assert modern.curves[0].loss[0] == pytest.approx(initial, rel=1e-12)
    assert legacy.loss.min() > 1e-18 * initial
    assert modern.curves[0].loss.min() < 1e-25 * initial

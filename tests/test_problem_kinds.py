"""Problem kinds declare themselves (``deeplinear.problems.kinds``): adding one is one class and
one registry entry, and the run file, the budget, the execution and sweeps take it from there."""

from __future__ import annotations

import inspect
from typing import final

import numpy as np
import pyarrow.parquet as pq
import pytest

from deeplinear import sweep
from deeplinear.errors import UsageError
from deeplinear.experiment import budget, config, execution
from deeplinear.problems import kinds
from deeplinear.problems.dense import Problem
from deeplinear.problems.kinds import (
    REQUIRED,
    AbstractProblemKind,
    BuildContext,
    ProblemDims,
)
from deeplinear.problems.kinds._base import declare, integer, number


@final
class Diagonal(AbstractProblemKind):
    """A toy kind: the population loss of A = diag(scale, scale/2, …, scale/size)."""

    name = "diagonal"
    description = "A = diag(scale / i), i = 1 … size (population loss)"
    keys = declare({"size": integer(REQUIRED), "scale": number(1.0, 0, strict=True)})
    hidden = (3,)

    @classmethod
    def _check(cls, problem: dict) -> None:
        if "size" not in problem:
            raise UsageError("problem.size is missing: a diagonal problem needs its size")
        cls._check_given(problem, "size", "scale")

    @classmethod
    def shape(cls, problem: dict) -> tuple[int, int]:
        return problem["size"], problem["size"]

    @classmethod
    def dims(cls, problem: dict, base_dir) -> ProblemDims:
        return ProblemDims(*cls.shape(problem))

    @classmethod
    def build(cls, problem: dict, context: BuildContext):
        n = problem["size"]
        s = cls.default(problem, "scale") / np.arange(1.0, n + 1)
        eye = np.eye(n)
        return Problem(f"diagonal{n}", np.diag(s), U=eye, V=eye, s=s), None


RUN_FILE = """
seed = 3
steps = 200
record_every = 50
checkpoints = 0

[problem]
kind = "diagonal"
size = 4
scale = 2.0

[[methods]]
name = "gd"
learning_rates = [0.05, 0.1]
"""


@pytest.fixture
def diagonal(monkeypatch):
    """The toy kind, registered for one test only."""
    monkeypatch.setitem(kinds.PROBLEM_KINDS, Diagonal.name, Diagonal)
    return Diagonal


def test_a_kind_registered_in_a_test_runs_a_run_file(diagonal, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(RUN_FILE)
    c = config.load(path)
    assert c.problem == {"kind": "diagonal", "size": 4, "scale": 2.0, "samples": "population"}
    assert c.hidden == (3,) and c.init["kind"] == "gaussian"  # the kind's defaults
    d = budget.dims(c)
    assert d.widths == (4, 3, 4) and d.samples is None and d.measurements is None

    result = execution.execute(c, tmp_path / "out")
    assert result.setup.problem.name == "diagonal4"
    table = pq.read_table(tmp_path / "out" / "curves.parquet").to_pandas()
    assert sorted(table["learning_rate"].unique()) == [0.05, 0.1]
    assert sorted(table["step"].unique()) == [0, 50, 100, 150, 200]
    for _, run in table.groupby("run_id"):
        loss = run.sort_values("step")["loss"].to_numpy()
        assert np.all(np.isfinite(loss)) and loss[-1] < 0.5 * loss[0]
    # the rank-3 net cannot fit the smallest mode: the loss stays above its σ² = (2/4)²
    assert table["loss"].min() > 0.25 * (1 - 1e-6)
    assert sweep.sample_count(c.problem) is None  # a population loss: rates left unscaled


def test_the_toy_kind_checks_its_own_keys(diagonal):
    methods = [{"name": "gd", "learning_rates": [0.1]}]
    with pytest.raises(UsageError, match=r"problem\.size is missing"):
        config.parse({"problem": {"kind": "diagonal"}, "methods": methods})
    with pytest.raises(UsageError, match=r"problem.scale must be > 0, got -1"):
        config.parse({"problem": {"kind": "diagonal", "size": 2, "scale": -1}, "methods": methods})
    with pytest.raises(UsageError, match=r"unknown key problem\.input"):
        config.parse({"problem": {"kind": "diagonal", "size": 2, "input": 3}, "methods": methods})


def test_an_unknown_kind_is_refused_with_the_list_of_kinds():
    methods = [{"name": "gd", "learning_rates": [0.1]}]
    with pytest.raises(UsageError) as error:
        config.parse({"problem": {"kind": "galaxy"}, "model": {"hidden": [2]}, "methods": methods})
    assert str(error.value) == (
        "problem.kind must be one of 'notebook', 'spectral', 'npz', 'completion', 'sensing', "
        "'ratings', got 'galaxy'"
    )
    assert "diagonal" not in kinds.PROBLEM_KINDS  # the toy kind stayed in its tests


def test_an_unknown_kind_lists_a_registered_one_too(diagonal):
    with pytest.raises(UsageError, match="'sensing', 'ratings', 'diagonal', got 'galaxy'"):
        kinds.problem_kind("galaxy")


def test_every_built_in_kind_is_final_and_declares_its_keys():
    for name, cls in kinds.PROBLEM_KINDS.items():
        assert cls.name == name and not inspect.isabstract(cls), name
        assert getattr(cls, "__final__", False), f"{cls.__name__} is not marked @final"
        assert cls.description and cls.key_names() == config.PROBLEM_KEYS[name]
        for key, spec in cls.keys.items():
            assert spec.describe(), (name, key)
    assert kinds.problem_kind("completion").measured and kinds.problem_kind("sensing").measured
    assert not kinds.problem_kind("spectral").measured


SWEEP_FILE = """
seeds = 2
targets = [1e-2]
steps = 200
record_every = 50
[problem]
kind = "diagonal"
size = 4
[axes]
"problem.scale" = [1.0, 2.0]
[[methods]]
name = "gd"
learning_rates = [0.05, 0.1]
"""


def test_a_kind_registered_in_a_test_runs_through_explain_a_sweep_and_the_report(
    diagonal, tmp_path
):
    """The toy kind everywhere a built-in goes: explain of its run (the rank-3 net cannot fit
    the fourth mode: the floor is (scale/4)², a rank floor), a sweep over its own key, explain of
    the sweep and the report."""
    import tomllib

    from deeplinear.explain import explain
    from deeplinear.report.sweep_report import write_report
    from deeplinear.store import groups as group_files

    path = tmp_path / "run.toml"
    path.write_text(RUN_FILE)
    execution.execute(config.load(path), tmp_path / "run")
    verdicts = explain(tmp_path / "run", budget_steps=0, figures=False).verdicts
    assert len(verdicts) == 2
    for verdict in verdicts:
        assert verdict.floor.value == pytest.approx((2.0 / 4) ** 2, rel=1e-9)
        assert "rank" in verdict.floor.kinds

    plan = sweep.parse(tomllib.loads(SWEEP_FILE), source=SWEEP_FILE, base_dir=tmp_path)
    sweep.run(plan, tmp_path / "sweep", stall_seconds=None)  # in this process
    table = group_files.read(tmp_path / "sweep")
    assert sorted(set(table.column("axis:problem.scale").to_pylist())) == ["1", "2"]
    explained = explain(tmp_path / "sweep", budget_steps=0)
    assert len(explained.verdicts) == 2 * 2  # 2 axis points × 2 seeds of the best rate
    floors = sorted({round(v.floor.value, 12) for v in explained.verdicts})
    assert floors == pytest.approx([(1.0 / 4) ** 2, (2.0 / 4) ** 2], rel=1e-9)
    page = write_report(tmp_path / "sweep").read_text()
    assert "<td>gd</td>" in page and "<td>scale=1</td>" in page and "<td>scale=2</td>" in page

"""Methods given to ``dl.register`` reach the processes a sweep runs its groups in (the
watchdog's worker, Ray's tasks); one those processes cannot import is refused up front."""

import dataclasses
import os
import sys
import textwrap
import tomllib

import numpy as np
import pytest

from deeplinear import sweep
from deeplinear.errors import UsageError
from deeplinear.methods import METHODS, AbstractMethod, register
from deeplinear.store.groups import read
from tiny_sweeps import spectral_sweep

MODULE = '''
import dataclasses

from deeplinear.methods import AbstractMethod, number
from deeplinear.methods.cost import loss_flops


@dataclasses.dataclass(frozen=True)
class HalfGD(AbstractMethod):
    """W <- W - (eta * scale) grad f."""

    scale: float = number(0.5, 0, low_open=True)

    name = "test-worker-half-gd"
    label = "HALF"
    description = "gradient descent at a fraction of the rate (a test's plugin)"
    reference = "tests/test_registered_methods.py"

    def init(self, weights, objective, learning_rate):
        return learning_rate * self.scale

    def step(self, weights, state, objective, loss, grads):
        return tuple(w - state * g for w, g in zip(weights, grads)), state

    def flops(self, shapes, k):
        return 3 * loss_flops(shapes, k) + 2 * sum(a * b for a, b in shapes), 0.0
'''

SWEEP = spectral_sweep(seeds=1, targets="0.5", steps=20, conditions="10.0", lm=False) + (
    '[[methods]]\nname = "test-worker-half-gd"\nlearning_rates = [0.02, 0.2]\n'
)


@pytest.fixture
def half_gd(tmp_path, monkeypatch):
    """The class from a module in tmp_path, on sys.path (the watchdog's worker gets the parent's
    sys.path) and on PYTHONPATH (for Ray's workers), registered for the test."""
    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / "worker_half_gd.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(folder))
    paths = [str(folder), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    monkeypatch.delitem(sys.modules, "worker_half_gd", raising=False)
    import worker_half_gd

    register(worker_half_gd.HalfGD)
    try:
        yield worker_half_gd.HalfGD
    finally:
        METHODS.unregister(worker_half_gd.HalfGD.name)


@pytest.mark.parametrize(
    "backend",
    [{"stall_seconds": 120}, {"ray": "local"}],
    ids=["worker", "ray"],
)
def test_a_registered_method_runs_where_the_groups_run(half_gd, tmp_path, backend):
    plan = sweep.parse(tomllib.loads(SWEEP), source=SWEEP)
    sweep.run(plan, tmp_path / "out", **backend)  # in a worker process, a Ray task, or both
    table = read(tmp_path / "out")
    methods = np.asarray(table.column("method").to_pylist())
    rates = np.asarray(table.column("learning_rate").to_pylist())
    losses = np.asarray(table.column("loss").to_pylist())
    steps = np.asarray(table.column("step").to_pylist())
    half = (methods == half_gd.name) & (rates == 0.2)
    gd = (methods == "gd") & np.isclose(rates, 0.1)
    assert half.any() and gd.any()
    np.testing.assert_allclose(losses[half], losses[gd], rtol=1e-12)  # η/2 at 0.2 = GD at 0.1
    assert set(steps[half]) == set(steps[gd])


@dataclasses.dataclass(frozen=True)
class _Local(AbstractMethod):
    """A placeholder, never run."""

    name = "test-unimportable"
    label = "X"
    description = "a class the worker cannot import"
    reference = "tests"

    def init(self, weights, objective, learning_rate):
        return learning_rate

    def step(self, weights, state, objective, loss, grads):
        return weights, state

    def flops(self, shapes, k):
        return 0.0, 0.0


@pytest.mark.parametrize(
    "backend", [{"stall_seconds": 120}, {"ray": "local"}], ids=["worker", "ray"]
)
def test_a_registered_method_the_worker_cannot_import_is_refused_up_front(tmp_path, backend):
    unimportable = type(
        "Unimportable", (_Local,), {"__module__": "__main__", "__qualname__": "Unimportable"}
    )
    unimportable = dataclasses.dataclass(frozen=True)(unimportable)
    register(unimportable)
    try:
        text = SWEEP.split('[[methods]]\nname = "test-worker')[0]  # GD only
        plan = sweep.parse(tomllib.loads(text), source=text)
        with pytest.raises(UsageError) as error:
            sweep.run(plan, tmp_path / "out", **backend)
    finally:
        METHODS.unregister("test-unimportable")
    message = str(error.value)
    assert len(message.splitlines()) == 1
    assert "'test-unimportable'" in message and "top level of an importable module" in message
    assert not (tmp_path / "out").exists()  # before anything was claimed or run


KIND_MODULE = '''
from typing import final

import numpy as np

from deeplinear.problems.dense import Problem
from deeplinear.problems.kinds import REQUIRED, AbstractProblemKind, ProblemDims
from deeplinear.problems.kinds._base import declare, integer


@final
class Diagonal(AbstractProblemKind):
    """A = diag(1, 1/2, ..., 1/size), population loss (a test's kind)."""

    name = "test-worker-diagonal"
    description = "a diagonal target (a test's kind)"
    keys = declare({"size": integer(REQUIRED)})
    hidden = (2,)

    @classmethod
    def _check(cls, problem):
        cls._check_given(problem, "size")

    @classmethod
    def shape(cls, problem):
        return problem["size"], problem["size"]

    @classmethod
    def dims(cls, problem, base_dir):
        return ProblemDims(*cls.shape(problem))

    @classmethod
    def build(cls, problem, context):
        n = problem["size"]
        s = 1.0 / np.arange(1.0, n + 1)
        eye = np.eye(n)
        return Problem(f"diagonal{n}", np.diag(s), U=eye, V=eye, s=s), None
'''

KIND_SWEEP = """
seeds = 1
targets = [0.5]
steps = 20
record_every = 10
[problem]
kind = "test-worker-diagonal"
size = 3
[axes]
"model.hidden" = [[2], [3]]
[[methods]]
name = "gd"
learning_rates = [0.1]
"""


def test_a_registered_problem_kind_reaches_the_worker(tmp_path, monkeypatch):
    """A kind registered in this process only (``kinds.register``) runs in the watchdog's worker;
    the rank-2 net leaves the third mode (σ = 1/3) unfitted at every seed."""
    from deeplinear.problems import kinds

    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / "worker_diagonal.py").write_text(textwrap.dedent(KIND_MODULE))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "worker_diagonal", raising=False)
    import worker_diagonal

    monkeypatch.setitem(
        kinds.PROBLEM_KINDS, worker_diagonal.Diagonal.name, worker_diagonal.Diagonal
    )
    plan = sweep.parse(tomllib.loads(KIND_SWEEP), source=KIND_SWEEP)
    sweep.run(plan, tmp_path / "out", stall_seconds=120)  # in the worker process
    table = read(tmp_path / "out")
    assert len(set(table.column("run_id").to_pylist())) == 2
    loss = table.column("loss").to_numpy()
    narrow = np.asarray(table.column("axis:model.hidden").to_pylist()) == "[2]"
    assert np.all(np.isfinite(loss)) and narrow.any()
    assert loss[narrow].min() >= (1 / 3) ** 2 * (1 - 1e-9)  # the rank-2 net misses σ₃ = 1/3

    class Local(worker_diagonal.Diagonal):  # defined here: no other process can import it
        name = "test-local-diagonal"

    monkeypatch.setitem(kinds.PROBLEM_KINDS, Local.name, Local)
    with pytest.raises(UsageError) as caught:
        sweep.run(plan, tmp_path / "other", stall_seconds=120)
    message = str(caught.value)
    assert "'test-local-diagonal'" in message and "top level of an importable module" in message
    assert not (tmp_path / "other").exists()  # refused before anything was written

"""Bring your own optimizer: optax transformations and factories, optimistix solvers and
registered classes through ``deeplinear.run``, checked against the built-ins and NumPy."""

import dataclasses

import numpy as np
import optax
import pytest

import deeplinear as dl
from deeplinear.errors import UsageError
from deeplinear.loop import programs
from deeplinear.methods import METHODS, AbstractMethod, number, recorded_columns
from deeplinear.methods._foreign import measured_update_flops, method_class
from deeplinear.methods.cost import loss_flops

NUMERIC = ("step", "loss", "grad_norm", "loss_notebook")


def same_rows(a, b, rtol=1e-12, columns=NUMERIC):
    assert a.num_rows == b.num_rows
    for name in columns:
        x, y = np.asarray(a[name], dtype=float), np.asarray(b[name], dtype=float)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=0, err_msg=name)


def test_optax_transformation_equals_builtin_adam_row_for_row():
    adam = optax.adam(1e-2)
    mine = dl.run(adam, steps=60)
    builtin = dl.run("adam", steps=60, learning_rates=[1e-2])
    same_rows(mine.table, builtin.table)
    compiled = len(programs._PROGRAMS)
    again = dl.run(adam, steps=60)  # the wrapper hashes stably: its programs are reused
    assert len(programs._PROGRAMS) == compiled
    same_rows(again.table, mine.table, rtol=0)
    assert mine.table.column_names == builtin.table.column_names  # the same columns as `run`
    assert set(np.asarray(mine.table["learning_rate"])) == {1.0}  # fixed inside: recorded as 1
    assert mine.final_loss[0] < 0.9 * np.asarray(mine.table["loss"])[0]
    with pytest.raises(UsageError, match="learning_rates"):
        dl.run(optax.adam(1e-2), steps=5, learning_rates=[1e-3])


def test_clipped_sgd_equals_numpy():
    problem, (W1, W2) = dl.notebook_problem(0)
    steps, eta = 4, 1e-4
    result = dl.run(optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(eta)), steps=steps)
    X, Y = problem.X, problem.Y
    losses = []
    for _ in range(steps):
        R = W1 @ W2 @ X - Y
        losses.append(np.sum(R**2))
        g1, g2 = 2 * R @ (W2 @ X).T, 2 * W1.T @ R @ X.T
        norm = np.sqrt(np.sum(g1**2) + np.sum(g2**2))
        assert norm > 1  # the clip acts
        W1, W2 = W1 - eta * g1 / norm, W2 - eta * g2 / norm
    losses.append(np.sum((W1 @ W2 @ X - Y) ** 2))
    np.testing.assert_allclose(np.asarray(result.table["loss"]), losses, rtol=1e-12)
    final = result.final_weights[0]
    np.testing.assert_allclose(final[0], W1, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(final[1], W2, rtol=1e-12, atol=1e-14)


def test_optimistix_solver_instance_equals_builtin_peer():
    import lineax
    import optimistix as optx

    solver = optx.GaussNewton(rtol=0.0, atol=0.0, linear_solver=lineax.SVD())
    mine = dl.run(solver, steps=4, probe=False)
    builtin = dl.run("optimistix-gn", steps=4, learning_rates=[1.0], probe=False)
    same_rows(mine.table, builtin.table, columns=(*NUMERIC, "optimistix_result"))
    assert mine.final_loss[0] < 0.1 * np.asarray(mine.table["loss"])[0]  # GN steps descend


def test_optax_factory_takes_the_learning_rate_grid_and_typed_hyperparameters():
    def heavy_ball(learning_rate, momentum=0.9, nesterov=False):
        return optax.sgd(learning_rate, momentum=momentum, nesterov=nesterov)

    rates = [1e-4, 3e-4]
    mine = dl.run(
        heavy_ball, steps=30, learning_rates=rates, hyperparameters={"momentum": 0.5}, probe=False
    )
    builtin = dl.run(
        "momentum", steps=30, learning_rates=rates, hyperparameters={"momentum": 0.5}, probe=False
    )
    same_rows(mine.table, builtin.table)
    assert mine.method.name.endswith(".heavy_ball")  # named after the factory
    ids = set(np.asarray(mine.table["run_id"]).tolist())
    assert any("momentum=0.5" in i for i in ids)
    with pytest.raises(UsageError, match=r"momentum must be a finite number"):
        dl.run(heavy_ball, steps=5, learning_rates=[1e-4], hyperparameters={"momentum": "x"})
    with pytest.raises(UsageError, match=r"nesterov must be true or false"):
        dl.run(heavy_ball, steps=5, learning_rates=[1e-4], hyperparameters={"nesterov": 1})
    with pytest.raises(UsageError, match="learning_rates is missing"):
        dl.run(heavy_ball, steps=5)


def test_measured_flops_of_a_foreign_update():
    """XLA's count of ``W + (−η)·g`` per parameter (2) plus inject_hyperparams' scalar work,
    and the ``flops`` column is steps × (3F + that)."""
    cls = method_class(optax.sgd, "sgd-factory", "test")
    shapes, k = ((10, 6), (6, 6)), 6
    p = 10 * 6 + 6 * 6
    update = measured_update_flops(cls(), shapes, k)
    assert 2 * p <= update <= 2 * p + 16
    result = dl.run(optax.sgd, steps=3, learning_rates=[1e-4], name="sgd-factory")
    per_step = 3 * loss_flops(list(shapes), k) + update
    np.testing.assert_allclose(np.asarray(result.table["flops"]), per_step * np.arange(4))


def test_registered_class_runs_and_is_refused_twice():
    @dataclasses.dataclass(frozen=True)
    class HalfGD(AbstractMethod):
        """W ← W − (η·scale)·∇f."""

        scale: float = number(0.5, 0, low_open=True)

        name = "test-half-gd"
        label = "HALF"
        description = "gradient descent at a fraction of η"
        reference = "tests"

        def init(self, weights, objective, learning_rate):
            return learning_rate * self.scale

        def step(self, weights, state, objective, loss, grads):
            return tuple(w - state * g for w, g in zip(weights, grads)), state

        def flops(self, shapes, k):
            return 3 * loss_flops(shapes, k) + 2 * sum(a * b for a, b in shapes), 0.0

    dl.register(HalfGD)
    try:
        assert dl.register(HalfGD) is HalfGD  # the same class again: nothing happens
        half = dl.run("test-half-gd", steps=20, learning_rates=[2e-4])
        gd = dl.run("gd", steps=20, learning_rates=[1e-4])
        same_rows(half.table, gd.table)
        clash = dataclasses.make_dataclass("Other", [], bases=(HalfGD,), frozen=True)
        with pytest.raises(UsageError, match="already called 'test-half-gd'"):
            dl.register(clash)
        with pytest.raises(UsageError, match="not a method class"):
            dl.register(optax.adam)
        assert "test-half-gd" in METHODS
    finally:
        METHODS.unregister("test-half-gd")
    assert "test-half-gd" not in METHODS


def test_run_inputs_are_checked_in_one_line():
    problem, weights = dl.notebook_problem(1)
    cases = [
        (dict(method="gd", steps=5), "learning_rates is missing"),
        (dict(method="gd", learning_rates=[1e-4]), "steps is missing"),
        (dict(method="gd", steps=5, learning_rates=[1e-4, 1e-4]), "repeats"),
        (dict(method="gd", steps=5, learning_rates=[-1.0]), r"learning_rates\[0\]"),
        (dict(method="gd", problem=problem, steps=5, learning_rates=[1e-4]), "weights is missing"),
        (
            dict(method="gd", problem=problem, weights=weights[::-1], steps=5, learning_rates=1e-4),
            "do not chain",
        ),
        (dict(method=3, steps=5, learning_rates=[1e-4]), "not a method"),
        (dict(method=optax.adam, name="adam", steps=5, learning_rates=[1e-4]), "another name"),
        (dict(method="gd", problem="seed", steps=5, learning_rates=[1e-4]), "problem must be"),
    ]
    for kwargs, words in cases:
        with pytest.raises(UsageError, match=words) as error:
            dl.run(**kwargs)
        assert "\n" not in str(error.value)


def test_problem_forms_and_the_legacy_positional_call():
    problem, weights = dl.notebook_problem(2)
    by_pair = dl.run("gd", (problem, weights), steps=10, learning_rates=[1e-4], seed=2)
    by_default = dl.run("gd", steps=10, learning_rates=[1e-4], seed=2)
    same_rows(by_pair.table, by_default.table)
    legacy = dl.run(dl.make_method("gd"), problem.objective(), weights, [1e-4], 10)
    same_rows(legacy.table, by_pair.table)
    assert "mode_learned" not in legacy.table.column_names  # an objective: no diagnostics
    assert len(legacy.curves) == 1 and legacy.final_weights[0][0].shape == (10, 6)
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(UsageError, match="needs pandas"):
            by_pair.to_frame()
    else:
        assert len(by_pair.to_frame()) == by_pair.table.num_rows
    assert by_pair.to_frame("arrow") is by_pair.table
    with pytest.raises(UsageError, match="frame must be one of"):
        by_pair.to_frame("excel")


def test_recorded_columns_are_the_union_of_method_columns():
    columns = recorded_columns()
    for cls in METHODS.values():
        for name, kind in cls.columns.items():
            assert columns[name] == kind
    assert "optimistix_result" in columns


def test_optax_transformations_are_named_from_optax_and_unique():
    from deeplinear.methods._optax_names import readable_name

    chained = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    named = optax.named_chain(("clip", optax.clip_by_global_norm(1.0)), ("opt", optax.sgd(1e-3)))
    assert readable_name(optax.adam(1e-2)) == "optax.adam"
    assert readable_name(optax.adam(optax.exponential_decay(1e-2, 10, 0.5))) == "optax.adam"
    assert readable_name(optax.nadam(1e-2)) == "optax.nadam"  # adam's components, its defaults
    assert readable_name(optax.lion(1e-3)) == "optax.lion"
    assert readable_name(optax.sgd(0.1, momentum=0.9)) == "optax.sgd"
    assert readable_name(chained) == "chain(clip_by_global_norm, adam)"
    assert readable_name(named) == "named_chain(clip=clip_by_global_norm, opt=sgd)"
    assert readable_name(optax.clip_by_global_norm(1.0)) == "optax.clip_by_global_norm"

    lion, clipped = dl.run(optax.lion(3e-5), steps=2), dl.run(chained, steps=2)
    assert lion.method.name == "optax.lion" and clipped.method.name == readable_name(chained)
    assert set(np.asarray(lion.table["method"])) == {"optax.lion"}
    # the same name with other settings: a suffix; the same settings again: the same name
    first = dl.run(optax.rmsprop(1e-4), steps=2).method.name
    other = dl.run(optax.rmsprop(2e-4), steps=2).method.name
    again = dl.run(optax.rmsprop(1e-4), steps=2).method.name
    assert first == "optax.rmsprop" and other == "optax.rmsprop#2" and again == first

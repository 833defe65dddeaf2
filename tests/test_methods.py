"""Each method against an independent plain-NumPy update, and the registry's errors."""

import inspect

import numpy as np
import pytest

from deeplinear.core.backend import jax, jnp
from deeplinear.errors import UsageError
from deeplinear.loop import runner
from deeplinear.methods import METHODS, AbstractGD, AbstractMethod, cost, make_method
from deeplinear.methods._levenberg_marquardt import NielsenDamping
from deeplinear.methods._peers import RESULT_NAMES, result_code
from deeplinear.problems.dense import NotebookDims, notebook_problem

DIMS = NotebookDims(4, 3, 5, 30)


def numpy_losses(problem, weights, steps, update):
    """Losses before each update of ``update(t, weights, grads)`` on the sample loss."""
    X, Y = problem.X, problem.Y
    W1, W2 = (w.copy() for w in weights)
    losses = []
    for t in range(steps + 1):
        E = W1 @ W2 @ X - Y
        losses.append(np.sum(E**2))
        grads = (2 * E @ (W2 @ X).T, 2 * W1.T @ E @ X.T)
        W1, W2 = update(t, (W1, W2), grads)
    return np.array(losses)


def adam_update(lr, b1=0.9, b2=0.999, eps=1e-8):
    m, v = [0, 0], [0, 0]

    def update(t, ws, gs):
        out = []
        for i, (w, g) in enumerate(zip(ws, gs)):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat, v_hat = m[i] / (1 - b1 ** (t + 1)), v[i] / (1 - b2 ** (t + 1))
            out.append(w - lr * m_hat / (np.sqrt(v_hat) + eps))
        return out

    return update


@pytest.mark.parametrize(
    "name, rate, update",
    [
        ("gd", 1e-3, lambda t, ws, gs: [w - 1e-3 * g for w, g in zip(ws, gs)]),
        ("adam", 1e-2, adam_update(1e-2)),
    ],
)
def test_optax_methods_match_numpy(name, rate, update):
    problem, weights = notebook_problem(0, DIMS)
    expected = numpy_losses(problem, weights, 20, update)
    curve = runner.run(make_method(name), problem.objective(), weights, [rate], 20).curves[0]
    np.testing.assert_allclose(curve.loss, expected, rtol=1e-11)


def test_tf1_gd_rounds_the_learning_rate_through_float32():
    problem, weights = notebook_problem(0, DIMS)
    rate = 1e-3
    lr32 = float(np.float32(rate))
    expected = numpy_losses(
        problem, weights, 20, lambda t, ws, gs: [w - lr32 * g for w, g in zip(ws, gs)]
    )
    curve = runner.run(make_method("tf1-gd"), problem.objective(), weights, [rate], 20).curves[0]
    np.testing.assert_allclose(curve.loss, expected, rtol=1e-12)
    plain = runner.run(make_method("gd"), problem.objective(), weights, [rate], 20).curves[0]
    assert not np.allclose(plain.loss[1:], curve.loss[1:], rtol=1e-12, atol=0)


def test_registry_lists_every_method_with_its_description():
    for name, cls in METHODS.items():
        assert cls.name == name and cls.description and cls.reference


def test_unknown_method_suggests_the_closest():
    with pytest.raises(UsageError, match="did you mean 'adam'"):
        make_method("adma")


@pytest.mark.parametrize(
    "name, hyper, field",
    [
        ("adam", {"b1": 1.0}, "adam.b1"),
        ("adam", {"eps": -1.0}, "adam.eps"),
        ("tf1-adam", {"b2": "x"}, "tf1-adam.b2"),
        ("seed-lm", {"solver": "cholesky"}, "seed-lm.solver"),
        ("gd", {"momentum": 0.9}, "momentum"),
    ],
)
def test_bad_hyperparameters_name_the_field(name, hyper, field):
    with pytest.raises(UsageError, match=field):
        make_method(name, **hyper)


# (FLOPs per step, per CG iteration) of every built-in method with default hyperparameters, as
# the name-keyed if-chain of ``cost.step_flops`` gave them before each class declared its own
# model (evaluated at commit 8cfdd4a), on the layer shapes and residual rows of ``FLOP_CASES``
FLOP_CASES = [
    ([(10, 4), (4, 6)], 6),
    ([(10, 4), (4, 6)], None),
    ([(10, 4), (4, 6)], 3),
    ([(9, 4), (4, 5), (5, 6)], 6),
    ([(9, 4), (4, 5), (5, 6)], None),
]
FIRST_ORDER = [4268.0, 2108.0, 2918.0, 5302.0, 3358.0]  # 3F + 2p: plain GD
PREVIOUS_FLOPS = {
    "gd": [(f, 0.0) for f in FIRST_ORDER],
    "tf1-gd": [(f, 0.0) for f in FIRST_ORDER],
    "momentum": [(4396.0, 0.0), (2236.0, 0.0), (3046.0, 0.0), (5474.0, 0.0), (3530.0, 0.0)],
    "nesterov": [(4460.0, 0.0), (2300.0, 0.0), (3110.0, 0.0), (5560.0, 0.0), (3616.0, 0.0)],
    "adam": [(4908.0, 0.0), (2748.0, 0.0), (3558.0, 0.0), (6162.0, 0.0), (4218.0, 0.0)],
    "tf1-adam": [(4908.0, 0.0), (2748.0, 0.0), (3558.0, 0.0), (6162.0, 0.0), (4218.0, 0.0)],
    "adamw": [(5036.0, 0.0), (2876.0, 0.0), (3686.0, 0.0), (6334.0, 0.0), (4390.0, 0.0)],
    "rmsprop": [(4524.0, 0.0), (2364.0, 0.0), (3174.0, 0.0), (5646.0, 0.0), (3702.0, 0.0)],
    "adagrad": [(4460.0, 0.0), (2300.0, 0.0), (3110.0, 0.0), (5560.0, 0.0), (3616.0, 0.0)],
    "lbfgs": [(11480.0, 0.0), (7160.0, 0.0), (8780.0, 0.0), (14560.0, 0.0), (10672.0, 0.0)],
    "muon": [(11308.0, 0.0), (9148.0, 0.0), (9958.0, 0.0), (16172.0, 0.0), (14228.0, 0.0)],
    "seed-lm": [
        (813100.0, 0.0), (718780.0, 0.0), (398566.0, 0.0), (1720830.0, 0.0), (1607430.0, 0.0)
    ],
    "scaled-gd": [(9040.0, 0.0), (6160.0, 0.0), (7240.0, 0.0), (11174.0, 0.0), (8582.0, 0.0)],
    "precgd": [(9040.0, 0.0), (6160.0, 0.0), (7240.0, 0.0), (11174.0, 0.0), (8582.0, 0.0)],
    "natural-gradient": [
        (9040.0, 0.0), (6160.0, 0.0), (7240.0, 0.0), (11174.0, 0.0), (8582.0, 0.0)
    ],
    "als": [(11708.0, 0.0), (6668.0, 0.0), (8558.0, 0.0), (18910.0, 0.0), (13078.0, 0.0)],
    "lm": [
        (19384.0, 0.0), (11896.0, 0.0), (12596.0, 0.0), (20634.0, 9000.0), (16746.0, 6408.0)
    ],
    "gn-cg": [
        (14296.0, 7440.0), (9976.0, 4560.0), (11060.0, 4680.0), (20634.0, 9000.0),
        (16746.0, 6408.0),
    ],
    **{
        name: [
            (2830380.0, 0.0), (2736060.0, 0.0), (568230.0, 0.0), (2562066.0, 0.0),
            (2448666.0, 0.0),
        ]
        for name in (
            "optimistix-lm", "optimistix-gn", "optimistix-dogleg", "scipy-lm", "scipy-trf"
        )
    },
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(PREVIOUS_FLOPS))
def test_each_class_declares_the_flops_the_name_table_gave(name):
    method = make_method(name)
    for (shapes, k), expected in zip(FLOP_CASES, PREVIOUS_FLOPS[name], strict=True):
        assert cost.step_flops(method, shapes, k) == expected, (shapes, k)


def test_flops_follow_the_hyperparameters():
    """Muon's Newton-Schulz iterations and L-BFGS's memory enter its model (old values)."""
    shapes, k = FLOP_CASES[3]
    assert make_method("muon", ns_steps=2).flops(shapes, k) == (10166.0, 0.0)
    assert make_method("lbfgs", memory_size=3).flops(shapes, k) == (12152.0, 0.0)
    # independently: 3F + elementwise·p for the first-order methods
    F, p = cost.loss_flops(shapes, k), cost.parameters(shapes)
    assert make_method("adamw").flops(shapes, k) == (3 * F + 14 * p, 0.0)


def test_every_builtin_method_has_a_flop_model():
    assert set(PREVIOUS_FLOPS) <= set(METHODS)
    for cls in METHODS.values():
        assert "flops" not in getattr(cls, "__abstractmethods__", ())


def test_every_class_is_abstract_or_final():
    """No registered class subclasses another; every class between one and AbstractMethod is
    named Abstract… (and is not registered)."""
    for name, cls in METHODS.items():
        others = [o for o in METHODS.values() if o is not cls and issubclass(o, cls)]
        assert not others, f"{name} is subclassed by {others}"
        between = cls.__mro__[1 : cls.__mro__.index(AbstractMethod)]
        for base in between:
            assert base.__name__.startswith("Abstract"), (name, base)
            assert inspect.isabstract(base), f"{base.__name__} can be built: make it abstract"
        assert not inspect.isabstract(cls), name


def test_abstract_bases_cannot_be_built():
    for base in (AbstractGD, AbstractMethod):
        with pytest.raises(TypeError, match="abstract"):
            base()


@pytest.mark.parametrize("name", ["gd", "tf1-gd"])
def test_gd_classes_declare_the_plain_gd_step(name):
    """What batched kernels rely on: AbstractGD, constant schedule ⇒ W − lr_used·∇f exactly."""
    problem, weights = notebook_problem(0, DIMS)
    method = make_method(name)
    assert isinstance(method, AbstractGD) and method.schedule == "constant"
    assert method.gauss_newton_rate and method.in_loop
    objective = problem.objective()
    weights = tuple(jnp.asarray(w) for w in weights)
    rate = 1e-3
    state = method.init(weights, objective, rate)
    loss, grads = jax.value_and_grad(objective.loss)(weights)
    new, _ = method.step(weights, state, objective, loss, grads)
    used = float(method.learning_rate_used(rate))
    assert used == (float(np.float32(rate)) if name == "tf1-gd" else rate)
    for w, g, n in zip(weights, grads, new):
        np.testing.assert_array_equal(np.asarray(n), np.asarray(w) - used * np.asarray(g))


def test_recorded_columns_are_the_declared_ones():
    problem, weights = notebook_problem(0, DIMS)
    for name, cls in METHODS.items():
        if not cls.in_loop:
            continue
        method = cls()
        state = method.init(tuple(jnp.asarray(w) for w in weights), problem.objective(), 1.0)
        assert set(method.record(state)) == set(cls.columns), name


def test_optimistix_result_codes_keep_optimistix_order():
    import optimistix as optx

    assert len(RESULT_NAMES) == len(optx.RESULTS)  # every member has a code
    for index, name in enumerate(RESULT_NAMES):
        member = getattr(optx.RESULTS, name)
        assert float(result_code(member)) == index
        # the codes recorded before: optimistix's internal index (read here only, to pin them)
        assert int(member._value) == index


def test_nielsen_damping_accepts_and_rejects_by_the_gain_ratio():
    search = NielsenDamping()
    state = search.init(jnp.asarray(8.0))
    # ρ = 1 (actual = predicted): accepted, λ·max(1/3, 1 − 1) = λ/3, ν back to 2
    accept, new = search.step(state._replace(nu=jnp.asarray(4.0)), 10.0, 7.0, 3.0, True)
    assert bool(accept) and float(new.damping) == 8.0 / 3 and float(new.nu) == 2.0
    # ρ = 0.25: λ·(1 − (−0.5)³) = 1.125 λ
    accept, new = search.step(state, 10.0, 9.5, 2.0, True)
    assert bool(accept) and float(new.damping) == 8.0 * 1.125
    # the loss rose: rejected, λ·ν and ν doubled
    accept, new = search.step(state, 10.0, 11.0, 3.0, True)
    assert not bool(accept) and float(new.damping) == 16.0 and float(new.nu) == 4.0
    # a non-finite trial is rejected whatever the numbers
    accept, _ = search.step(state, 10.0, 7.0, 3.0, False)
    assert not bool(accept)


def test_methods_listing_prints_the_declarations(capsys):
    from deeplinear import cli

    assert cli.main(["methods"]) == 0
    out = capsys.readouterr().out
    blocks = {}
    for line in out.splitlines():
        if not line.startswith(" "):
            name = line.split()[0]
            blocks[name] = []
        blocks[name].append(line.strip())
    assert set(blocks) == set(METHODS)
    for name, cls in METHODS.items():
        text = "\n".join(blocks[name])
        for column, kind in cls.columns.items():
            assert f"{column} ({kind})" in text
        if not cls.columns:
            assert "records: no columns of its own" in text
        loop = "in the compiled loop: yes" if cls.in_loop else "in the compiled loop: no"
        assert loop in text
        rate = "yes" if cls.gauss_newton_rate else "no"
        assert f"Gauss-Newton rate predicts it: {rate}" in text
    assert "Gauss-Newton rate predicts it: yes" in "\n".join(blocks["tf1-gd"])
    assert "in the compiled loop: no" in "\n".join(blocks["scipy-trf"])
    assert "damping (double)" in "\n".join(blocks["lm"])


def test_notebook_figures_style_runs_by_what_the_classes_declare():
    """Figure 1 draws the first-order runs (not the notebook's LM); Adam's family dashed."""
    from deeplinear.report import plots

    def series(name, label="X step=0.1"):
        return {"method": np.array([name]), "run": np.array([label])}

    assert "ls" not in plots._style(series("tf1-gd"), 0)
    assert plots._style(series("tf1-adam"), 0)["ls"] == "--"
    assert plots._style(series("adamw"), 0)["ls"] == "--"
    assert plots._style(series("seed-lm", "LM step=0.05"), 0) == {
        "lw": 5,
        "color": "k",
        "alpha": 0.8,
    }
    assert METHODS["tf1-gd"].first_order and METHODS["tf1-adam"].first_order
    assert not METHODS["seed-lm"].first_order

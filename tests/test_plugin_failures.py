"""Plugins fail alone: a plugin that fails to load, takes a taken name, raises in its update,
returns wrongly shaped updates or NaN is reported for that method only (one line, its name, the
fix); the listing, the other methods and the sweeps that do not use it go on. Real packages
installed in the test (``test_plugins.install``)."""

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import deeplinear as dl
from deeplinear.core.backend import jax, jnp
from deeplinear.errors import UsageError
from deeplinear.methods import GD, METHODS, choice, integer, make_method, recorded_columns, register
from deeplinear.store.frames import load
from test_plugins import (  # the fixture and helpers of the plugin tests
    GOOD,
    GOOD_ENTRIES,
    RUN_FILE,
    assert_one_line,
    cli,
    install,
    methods_toml,
    plugins,  # noqa: F401  (a fixture)
)

ODD = """
import dataclasses

import optax
import pyarrow as pa

from deeplinear.methods import GD


def thing(learning_rate):
    return optax.sgd(learning_rate)


@dataclasses.dataclass(frozen=True)
class Clash(GD):
    name = "clash"
    columns = {"optimistix_result": pa.string()}  # a built-in records it as float64
"""
ODD_ENTRIES = {
    "gd": "oddpkg:thing",  # a built-in's name
    "dup": "oddpkg:thing",  # also in duppkg
    "noattr": "oddpkg:absent",
    "missing": "nosuchmodule_for_deeplinear:thing",
    "clash": "oddpkg:Clash",
    "registered-one": "oddpkg:thing",
}
DUP = "import optax\n\ndef other(learning_rate):\n    return optax.sgd(learning_rate)\n"
BROKEN = "raise ImportError('no module named secret_dependency')\n"
REFUSED = {  # name → words its one line holds
    "broken": ["failed to load", "ImportError: no module named secret_dependency",
               "uninstall brokenpkg"],
    "missing": ["failed to load", "ModuleNotFoundError", "uninstall oddpkg"],
    "noattr": ["failed to load", "AttributeError", "absent"],
    "gd": ["built-in names cannot be shadowed", "the built-in gd is used", "rename the entry"],
    "dup": ["oddpkg:thing", "duppkg:other", "rename one of the entry points"],
    "clash": ["'optimistix_result'", "another column name"],
    "registered-one": ["registered class Registered", "rename the entry point"],
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Registered(GD):
    name = "registered-one"


def install_odd(root):
    """Every kind of unusable plugin beside the good ones, under ``root`` (one site folder)."""
    install(root, "mypkg", GOOD, GOOD_ENTRIES)
    install(root, "brokenpkg", BROKEN, {"broken": "brokenpkg:thing"})
    install(root, "oddpkg", ODD, ODD_ENTRIES)
    install(root, "duppkg", DUP, {"dup": "duppkg:other"})
    return root


@pytest.fixture
def odd_plugins(plugins, tmp_path):  # noqa: F811
    register(Registered)  # before the plugins are found: its name is taken
    try:
        plugins("mypkg", GOOD, GOOD_ENTRIES)
        plugins("brokenpkg", BROKEN, {"broken": "brokenpkg:thing"})
        plugins("oddpkg", ODD, ODD_ENTRIES)
        plugins("duppkg", DUP, {"dup": "duppkg:other"})
        yield
    finally:
        METHODS.unregister("registered-one")


def test_unusable_plugins_are_refused_alone(odd_plugins):
    assert make_method("mypkg-half", scale=0.25).scale == 0.25  # good plugins work
    assert type(make_method("gd")) is GD  # the built-in, never the plugin of its name
    assert type(make_method("registered-one")) is Registered
    columns = recorded_columns()  # every sweep's schema: no unusable plugin in it
    assert str(columns["optimistix_result"]) == "double"
    usable = METHODS.usable()
    assert usable["gd"] is GD and "mypkg-momentum" in usable and "adam" in usable
    refusals = METHODS.refusals()
    assert set(refusals) == set(REFUSED)
    for name, words in REFUSED.items():
        line = refusals[name]
        assert "\n" not in line and f"method plugin {name!r}" in line, line
        for word in words:
            assert word in line, line
        assert name not in usable or usable[name] is not None
        if name not in ("gd", "registered-one"):  # refused names: looking one up says why
            assert name in METHODS and name not in usable
            with pytest.raises(UsageError) as error:
                make_method(name)
            assert str(error.value) == line


def test_the_listing_and_runs_go_on_without_unusable_plugins(tmp_path):
    """``deeplinear methods``: the whole list on stdout, one line per refused plugin on stderr,
    exit 0; a run of other methods runs; one of a refused plugin is one line, exit 2."""
    root = install_odd(tmp_path / "site")
    listing = cli("methods", path=root)
    assert listing.returncode == 0, listing.stderr
    assert "Traceback" not in listing.stderr
    names = [line.split()[0] for line in listing.stdout.splitlines() if not line.startswith(" ")]
    assert names[: len(METHODS._builtin)] == list(METHODS._builtin)
    # and nothing else; "registered-one" is registered in the test's process only
    assert names[len(METHODS._builtin) :] == [*GOOD_ENTRIES, "registered-one"]
    lines = listing.stderr.strip().splitlines()
    refused = set(REFUSED) - {"registered-one"}
    assert len(lines) == len(refused)
    for name in refused:
        assert sum(line.startswith(f"method plugin {name!r}") for line in lines) == 1, lines

    good = methods_toml(
        {"name": "mypkg-half", "learning_rates": [2e-4]}, {"name": "gd", "learning_rates": [1e-4]}
    )
    run_file = tmp_path / "good.toml"
    run_file.write_text(RUN_FILE.format(steps=4, methods=good))
    result = cli("run", str(run_file), "--out", str(tmp_path / "out"), path=root)
    assert result.returncode == 0, result.stderr
    assert sorted(set(load(tmp_path / "out")["method"])) == ["gd", "mypkg-half"]
    bad = tmp_path / "bad.toml"
    dup = methods_toml({"name": "dup", "learning_rates": [1.0]})
    bad.write_text(RUN_FILE.format(steps=4, methods=dup))
    assert_one_line(cli("run", str(bad), "--out", str(tmp_path / "bad"), path=root),
                    "methods[0]", *REFUSED["dup"])  # fmt: skip


EVIL = """
import dataclasses

import jax
import jax.numpy as jnp
import optax

from deeplinear.methods import AbstractMethod


@dataclasses.dataclass(frozen=True)
class Base(AbstractMethod):
    label = "EVIL"
    description = "a method that misbehaves"
    reference = "evilpkg"

    def init(self, weights, objective, learning_rate):
        return learning_rate

    def step(self, weights, state, objective, loss, grads):
        return tuple(w - state * g for w, g in zip(weights, grads)), state

    def flops(self, shapes, k):
        return 1.0, 0.0


@dataclasses.dataclass(frozen=True)
class Raises(Base):
    name = "raises"

    def step(self, weights, state, objective, loss, grads):
        raise ValueError("my update is broken")


@dataclasses.dataclass(frozen=True)
class Transposed(Base):
    name = "transposed"

    def step(self, weights, state, objective, loss, grads):
        return tuple((w - state * g).T for w, g in zip(weights, grads)), state


@dataclasses.dataclass(frozen=True)
class Float32(Base):
    name = "float32"

    def init(self, weights, objective, learning_rate):
        return learning_rate.astype(jnp.float32)

    def step(self, weights, state, objective, loss, grads):
        return weights, state.astype(jnp.float64)


@dataclasses.dataclass(frozen=True)
class Nan(Base):
    name = "nan"

    def step(self, weights, state, objective, loss, grads):
        return tuple(w - state * g * jnp.nan for w, g in zip(weights, grads)), state


def _refuse(x):
    raise RuntimeError("the callback says no")


@dataclasses.dataclass(frozen=True)
class AtRunTime(Base):
    name = "at-run-time"

    def step(self, weights, state, objective, loss, grads):
        spec = jax.ShapeDtypeStruct((), jnp.float64)
        return weights, jax.pure_callback(_refuse, spec, state, vmap_method="sequential")


def scalar_updates(learning_rate):
    def init(params):
        return optax.EmptyState()

    def update(updates, state, params=None):
        return jax.tree.map(lambda g: -learning_rate * jnp.sum(g, keepdims=True)[0], updates), state

    return optax.GradientTransformation(init, update)


def raising_updates(learning_rate):
    def update(updates, state, params=None):
        raise KeyError("momentum")

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)
"""
EVIL_ENTRIES = {
    "raises": "evilpkg:Raises",
    "transposed": "evilpkg:Transposed",
    "float32": "evilpkg:Float32",
    "nan": "evilpkg:Nan",
    "at-run-time": "evilpkg:AtRunTime",
    "scalar-updates": "evilpkg:scalar_updates",
    "raising-updates": "evilpkg:raising_updates",
}
WHO = "method plugin {!r} ({} = evilpkg:{}, from evilpkg 0.1)"
MISBEHAVING = {  # name → words of its one line (the notebook's layers: (10, 6), (6, 6))
    "raises": ["failed in its step (ValueError: my update is broken)", "fix its step"],
    "raising-updates": ["failed in its update (KeyError: 'momentum')", "fix its update"],
    "transposed": ["its step returned weights[0] of shape (6, 10), expected (10, 6)",
                   "shaped like the weights (nothing is broadcast)"],
    "scalar-updates": ["its update returned updates[0] of shape (1,), expected (10, 6)",
                       "shaped like the weights (nothing is broadcast)"],
    "float32": ["its step returned state as float64, expected float32",
                "of the dtypes of the state it was given"],
    "at-run-time": ["failed while running (RuntimeError: the callback says no)", "fix it"],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MISBEHAVING))
def test_a_misbehaving_update_is_one_line_naming_the_method(plugins, name, capfd):  # noqa: F811
    """Raised while traced, wrong shapes (also those optax would broadcast), wrong dtypes, an
    error at run time: one UsageError naming the plugin, what went wrong and the fix."""
    plugins("evilpkg", EVIL, EVIL_ENTRIES)
    with pytest.raises(UsageError) as error:
        dl.run(name, steps=3, learning_rates=[1e-4])
    message = str(error.value)
    target = EVIL_ENTRIES[name].split(":")[1]
    assert "\n" not in message and message.startswith(WHO.format(name, name, target)), message
    for word in [*MISBEHAVING[name], "or uninstall evilpkg"]:
        assert word in message, message
    assert "Traceback" not in capfd.readouterr().err  # JAX logs none for the callback either


def test_a_plugin_that_diverges_is_a_result_for_it_alone(plugins):  # noqa: F811
    plugins("evilpkg", EVIL, EVIL_ENTRIES)
    nan = dl.run("nan", steps=4, learning_rates=[1e-4, 2e-4]).table
    assert np.asarray(nan["step"]).tolist() == [0, 1, 0, 1]  # each run ends where it diverged
    assert np.isnan(np.asarray(nan["loss"])[1])


def test_a_step_that_fails_to_trace_is_refused_before_any_method_runs(tmp_path):
    root = install(tmp_path / "site", "evilpkg", EVIL, EVIL_ENTRIES)
    methods = methods_toml(
        {"name": "gd", "learning_rates": [1e-4]}, {"name": "transposed", "learning_rates": [1e-4]}
    )
    run_file = tmp_path / "evil.toml"
    run_file.write_text(RUN_FILE.format(steps=4, methods=methods))
    out = tmp_path / "out"
    result = cli("run", str(run_file), "--out", str(out), path=root)
    assert_one_line(result, "'transposed'", *MISBEHAVING["transposed"])  # no progress line
    assert not out.exists()


SWEEP = """
seeds = 2
targets = [1e-2]
steps = 20
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
[[methods]]
name = "gd"
learning_rates = [0.02, 0.05]
[[methods]]
name = "mypkg-half"
learning_rates = [0.05]
[[methods]]
name = "nan"
learning_rates = [0.05]
"""


def test_a_sweep_runs_beside_unusable_plugins_and_one_that_diverges(tmp_path):
    """The sweep's worker process finds the same plugins: the unusable ones stay out of its
    schema, the one that diverges is ineligible for itself and leaves the others' best alone."""
    root = install_odd(tmp_path / "site")
    install(root, "evilpkg", EVIL, EVIL_ENTRIES)
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP)
    out = tmp_path / "out"
    result = cli("sweep", str(path), "--out", str(out), path=root)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    frame = load(out)
    assert sorted(set(frame["method"])) == ["gd", "mypkg-half", "nan"]
    finite = frame[frame["method"] != "nan"]
    assert np.isfinite(finite["loss"].to_numpy(dtype=float)).all()
    assert (frame[frame["method"] == "nan"]["step"] <= 10).all()  # diverged at its first record
    report = cli("report", str(out), path=root)
    assert report.returncode == 0, report.stderr
    rows = {row["method"]: row for row in json.loads((out / "summary.json").read_text())["rows"]}
    assert rows["gd"]["learning_rate"] == 0.05 and "diverged" not in rows["gd"]["verdicts"]
    for name in ("gd", "mypkg-half"):
        assert np.isfinite(rows[name]["final_loss"]["median"]), rows[name]
    assert rows["nan"]["final_loss"]["median"] is None  # not finite: diverged, for it alone


# Generated misbehaviour: a step that changes one leaf (or the pair's structure) in one way;
# whether the contract is kept is decided here from the fault alone, not by the lab's check.
LEAF_FAULTS = {  # fault → (what it does to a (d_out, d_in) leaf, breaks the contract?)
    "identity": (lambda w: w, lambda shape: False),
    "nan": (lambda w: w * jnp.nan, lambda shape: False),  # diverges: a result, not an error
    "transpose": (lambda w: w.T, lambda shape: shape[0] != shape[1]),  # square: undetectable
    "add-axis": (lambda w: w[None], lambda shape: True),
    "first-row": (lambda w: w[0], lambda shape: True),
    "float32": (lambda w: w.astype(jnp.float32), lambda shape: True),
    "int32": (lambda w: w.astype(jnp.int32), lambda shape: True),
    "scalar": (lambda w: jnp.sum(w), lambda shape: True),
}
PAIR_FAULTS = ["drop-a-layer", "extra-layer", "list-of-weights", "weights-only", "raises",
               "state-float32", "state-vector", "state-dropped"]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Generated(GD):
    name = "generated"
    fault: str = choice("identity", *LEAF_FAULTS, *PAIR_FAULTS)
    leaf: int = integer(0, low=0)

    def step(self, weights, state, objective, loss, grads):
        new, state = super().step(weights, state, objective, loss, grads)
        if self.fault in LEAF_FAULTS:
            change = LEAF_FAULTS[self.fault][0]
            return tuple(change(w) if i == self.leaf else w for i, w in enumerate(new)), state
        if self.fault == "raises":
            raise ZeroDivisionError("generated")
        changed = {
            "drop-a-layer": lambda: (new[:-1], state),
            "extra-layer": lambda: ((*new, new[-1]), state),
            "list-of-weights": lambda: (list(new), state),
            "weights-only": lambda: new,
            "state-float32": lambda: (new, jax.tree.map(lambda s: s.astype(jnp.float32), state)),
            "state-vector": lambda: (new, jax.tree.map(lambda s: jnp.stack([s, s]), state)),
            "state-dropped": lambda: (new, None),
        }
        return changed[self.fault]()


@settings(max_examples=60, deadline=None)
@given(
    dims=st.lists(st.integers(1, 7), min_size=2, max_size=4),
    fault=st.sampled_from([*LEAF_FAULTS, *PAIR_FAULTS]),
    leaf=st.integers(0, 2),
)
def test_a_generated_misbehaving_step_is_refused_exactly_when_it_breaks_the_contract(
    dims, fault, leaf
):
    from deeplinear.methods._contract import check_step

    shapes = tuple((dims[i], dims[i + 1]) for i in range(len(dims) - 1))
    leaf = min(leaf, len(shapes) - 1)
    method = Generated(fault=fault, leaf=leaf)
    # a leaf fault breaks it by its own rule; the pair's structure, its state's dtype or shape,
    # or an exception always
    breaks = LEAF_FAULTS[fault][1](shapes[leaf]) if fault in LEAF_FAULTS else True
    who = "method 'generated'"
    if not breaks:
        check_step(method, shapes, None, who, "")
        return
    with pytest.raises(UsageError) as error:
        check_step(method, shapes, None, who, "")
    message = str(error.value)
    assert "\n" not in message and message.startswith(who), message
    assert "step" in message, message

"""Methods from entry points (group ``deeplinear.methods``): a tiny package installed in the test
(a package directory and its ``.dist-info`` on the path), one plugin per kind, through the CLI
and in process; bad plugins refused in one line (exit 2)."""

import importlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deeplinear.errors import UsageError
from deeplinear.methods import METHODS, make_method
from deeplinear.methods.cost import loss_flops
from deeplinear.store.results import read_table

CLI = [sys.executable, "-m", "deeplinear.cli"]

GOOD = '''
import dataclasses

import lineax
import optax
import optimistix as optx

from deeplinear.methods.cost import loss_flops
from deeplinear.methods import AbstractMethod, number


@dataclasses.dataclass(frozen=True)
class HalfGD(AbstractMethod):
    """(a) W <- W - (eta * scale) grad f."""

    scale: float = number(0.5, 0, low_open=True)

    name = "mypkg-half"
    label = "HALF"
    description = "gradient descent at a fraction of the learning rate"
    reference = "mypkg"

    def init(self, weights, objective, learning_rate):
        return learning_rate * self.scale

    def step(self, weights, state, objective, loss, grads):
        return tuple(w - state * g for w, g in zip(weights, grads)), state

    def flops(self, shapes, k):
        return 3 * loss_flops(shapes, k) + 2 * sum(a * b for a, b in shapes), 0.0


def heavy_ball(learning_rate, momentum=0.9, nesterov=False, depth=2, note="any"):
    """(b) a factory of the learning rate."""
    return optax.sgd(learning_rate, momentum=momentum, nesterov=nesterov)


gauss_newton = optx.GaussNewton(rtol=0.0, atol=0.0, linear_solver=lineax.SVD())  # (c)
'''
GOOD_ENTRIES = {
    "mypkg-half": "mypkg:HalfGD",
    "mypkg-momentum": "mypkg:heavy_ball",
    "mypkg-gn": "mypkg:gauss_newton",
}


def install(root, dist, source, entries):
    """Write package ``dist`` (module ``dist``) and its dist-info under ``root``."""
    (root / dist).mkdir(parents=True)
    (root / dist / "__init__.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entries.items())
    (info / "entry_points.txt").write_text(f"[deeplinear.methods]\n{lines}")
    return root


@pytest.fixture
def plugins(tmp_path):
    """``installed(dist, source, entries)``: on sys.path for this test, then removed."""
    added, modules = [], []

    def installed(dist, source, entries):
        root = install(tmp_path / dist, dist, source, entries)
        sys.path.insert(0, str(root))
        added.append(str(root))
        modules.append(dist)
        importlib.invalidate_caches()
        METHODS.refresh()
        return root

    yield installed
    for path in added:
        sys.path.remove(path)
    for module in modules:
        sys.modules.pop(module, None)
    importlib.invalidate_caches()
    METHODS.refresh()


def cli(*args, path, cwd=None):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(path), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def assert_one_line(result, *words):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


RUN_FILE = """
name = "plugins"
seed = 0
steps = {steps}
record_every = 1
checkpoints = 0

[problem]
kind = "notebook"
input = 6
output = 10
samples = 1000

[model]
hidden = [6]

[init]
kind = "notebook"

{methods}
"""


def methods_toml(*tables):
    out = []
    for table in tables:
        out.append("[[methods]]")
        out += [f"{k} = {v!r}".replace("'", '"') for k, v in table.items()]
    return "\n".join(out)


def test_plugins_of_each_kind_run_from_a_run_file_like_the_builtins(tmp_path):
    """(a) equals GD row for row in the same table; (b) and (c) run with their own FLOPs and
    columns (their numbers against the built-ins: test_byo, which wraps the same way)."""
    root = install(tmp_path / "site", "mypkg", GOOD, GOOD_ENTRIES)
    methods = methods_toml(
        {"name": "mypkg-half", "learning_rates": [2e-4]},
        {"name": "gd", "learning_rates": [1e-4]},
        {"name": "mypkg-momentum", "learning_rates": [1e-5, 3e-5], "momentum": 0.5},
        {"name": "mypkg-gn", "learning_rates": [1.0], "steps": 2},
    )
    run_file = tmp_path / "plugins.toml"
    run_file.write_text(RUN_FILE.format(steps=6, methods=methods))
    out = tmp_path / "out"
    result = cli("run", str(run_file), "--out", str(out), path=root)
    assert result.returncode == 0, result.stderr
    table, _ = read_table(out / "curves.parquet")
    method = np.asarray(table["method"])
    column = lambda name, which: np.asarray(table[name])[method == which]
    for name in ("step", "loss", "grad_norm", "mode_learned"):
        half, gd = column(name, "mypkg-half"), column(name, "gd")
        assert len(half) == 7
        np.testing.assert_allclose(np.stack(half), np.stack(gd), rtol=1e-12, err_msg=name)
    flops, steps = column("flops", "mypkg-momentum"), column("step", "mypkg-momentum")
    per_step = flops[1]  # the gradient's model plus the update measured by XLA
    assert per_step > 3 * loss_flops([(10, 6), (6, 6)], 6)
    np.testing.assert_array_equal(flops, steps * per_step)
    loss = column("loss", "mypkg-momentum")
    assert len(loss) == 14 and np.all(np.isfinite(loss)) and loss[6] < loss[0]
    gn = column("loss", "mypkg-gn")
    assert len(gn) == 3 and gn[-1] < 0.5 * gn[0]
    np.testing.assert_array_equal(column("optimistix_result", "mypkg-gn"), 0.0)  # successful
    assert np.all(np.isnan(column("optimistix_result", "gd")))

    listing = cli("methods", path=root)
    assert listing.returncode == 0, listing.stderr
    text = listing.stdout
    for name in GOOD_ENTRIES:
        assert name in text
    assert "momentum = 0.9: a finite number" in text
    assert "depth = 2: an integer" in text
    assert "nesterov = False: true or false" in text
    assert "note = 'any': any string" in text


def test_plugins_in_process(plugins):
    plugins("mypkg", GOOD, GOOD_ENTRIES)
    assert "mypkg-momentum" in METHODS
    half = make_method("mypkg-half", scale=0.25)
    assert type(half).__name__ == "HalfGD" and half.scale == 0.25
    momentum = make_method("mypkg-momentum", momentum=0.5, depth=3, note="hello")
    assert momentum.transformation(1e-3) is not None
    assert make_method("mypkg-momentum") == make_method("mypkg-momentum")  # hashes stably
    assert hash(make_method("mypkg-gn")) == hash(make_method("mypkg-gn"))
    with pytest.raises(UsageError, match="unknown hyperparameter 'speed'"):
        make_method("mypkg-momentum", speed=1.0)


BAD_VALUES = {  # a value of every other type, for each declared type of the factory's keywords
    "momentum": st.one_of(
        st.text(max_size=3), st.booleans(), st.sampled_from([float("nan"), float("inf")])
    ),
    "depth": st.one_of(st.floats(allow_nan=True), st.text(max_size=3), st.booleans()),
    "nesterov": st.one_of(st.integers(), st.floats(), st.text(max_size=3)),
    "note": st.one_of(st.integers(), st.floats(), st.booleans()),
}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_bad_plugin_hyperparameters_are_refused_in_one_line(plugins, data):
    if "mypkg-momentum" not in METHODS:
        plugins("mypkg", GOOD, GOOD_ENTRIES)
    field = data.draw(st.sampled_from(sorted(BAD_VALUES)))
    value = data.draw(BAD_VALUES[field])
    with pytest.raises(UsageError) as error:
        make_method("mypkg-momentum", **{field: value})
    message = str(error.value)
    assert "\n" not in message and f"mypkg-momentum.{field} must be" in message


BAD = {
    "failing import": (
        "raise ImportError('no module named secret_dependency')\n",
        {"broken": "badpkg:thing"},
        "broken",
        ["'broken'", "failed to load", "secret_dependency", "fix the package", "uninstall badpkg"],
    ),
    "wrong kind": (
        "thing = 3\n",
        {"number": "badpkg:thing"},
        "number",
        ["'number'", "not a method"],
    ),
    "transformation instance": (
        "import optax\nthing = optax.adam(1e-2)\n",
        {"fixed": "badpkg:thing"},
        "fixed",
        ["'fixed'", "factory f(learning_rate"],
    ),
    "solver class": (
        "import optimistix\nthing = optimistix.GaussNewton\n",
        {"gn-class": "badpkg:thing"},
        "gn-class",
        ["'gn-class'", "point it to an instance"],
    ),
    "factory without defaults": (
        "import optax\ndef thing(learning_rate, momentum):\n    return optax.sgd(learning_rate)\n",
        {"nodefault": "badpkg:thing"},
        "nodefault",
        ["'nodefault'", "'momentum' has no default"],
    ),
    "factory returning something else": (
        "def thing(learning_rate, momentum=0.9):\n    return learning_rate\n",
        {"notoptax": "badpkg:thing"},
        "notoptax",
        ["'notoptax'", "not an optax.GradientTransformation"],
    ),
    "class named otherwise": (
        "from deeplinear.methods import GD as thing\n",
        {"renamed": "badpkg:thing"},
        "renamed",
        ["'renamed'", "GD.name is 'gd'"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_plugins_are_refused_in_one_line(plugins, case):
    source, entries, lookup, words = BAD[case]
    plugins("badpkg", source, entries)
    with pytest.raises(UsageError) as error:
        make_method(lookup)
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    assert make_method("gd").name == "gd"  # built-ins still work (their lookup loads no plugin)


def test_bad_plugins_exit_2_from_the_cli(tmp_path):
    source, entries, _, words = BAD["failing import"]
    root = install(tmp_path / "site", "badpkg", source, entries)
    run_file = tmp_path / "bad.toml"
    run_file.write_text(
        RUN_FILE.format(steps=5, methods=methods_toml({"name": "broken", "learning_rates": [1.0]}))
    )
    assert_one_line(cli("run", str(run_file), "--out", str(tmp_path / "out"), path=root),
                    "methods[0]", *words)  # fmt: skip

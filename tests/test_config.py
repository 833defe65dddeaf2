"""Run files: every bad input is one UsageError that names the TOML field."""

import tomllib
from pathlib import Path

import numpy as np
import pytest

from deeplinear.errors import UsageError
from deeplinear.experiment import config, execution

SPECTRAL = """
seed = 1
steps = 10
[problem]
kind = "spectral"
input = 5
output = 6
rank = 3
condition_number = 100.0
[model]
hidden = [3]
[init]
kind = "gaussian"
scale = 0.1
[[methods]]
name = "gd"
learning_rates = [0.01]
"""


def parse(text: str, base_dir="."):
    return config.parse(tomllib.loads(text), base_dir=base_dir, source=text)


def edit(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


def test_the_example_parses():
    c = config.load("examples/seed.toml")
    assert c.problem["kind"] == "notebook" and c.hidden == (6,)
    assert [m.name for m in c.methods] == ["tf1-gd", "tf1-adam", "seed-lm"]


@pytest.mark.parametrize(
    "old, new, field",
    [
        ("condition_number = 100.0", "condition_number = 0.5", "problem.condition_number"),
        ("condition_number = 100.0", 'condition_number = "big"', "problem.condition_number"),
        ("rank = 3", "rank = 7", "problem.rank"),
        ("hidden = [3]", "hidden = [0]", "model.hidden[0]"),
        ("hidden = [3]", "hidden = []", "model.hidden"),
        ("input = 5", "input = 0", "problem.input"),
        ("seed = 1", "seed = -1", "seed"),
        ("seed = 1", 'seed = "one"', "seed"),
        ("steps = 10", "steps = 0", "steps"),
        ('kind = "spectral"', 'kind = "galaxy"', "problem.kind"),
        ('kind = "gaussian"', 'kind = "zeros"', "init.kind"),
        ("scale = 0.1", "scale = -1.0", "init.scale"),
        ("condition_number = 100.0", "condition_number = 100.0\nwobble = 1", "problem.wobble"),
        ("seed = 1", "seed = 1\ncolour = 'red'", "colour"),
        ('name = "gd"', 'name = "gdd"', "methods[0].name"),
        ("learning_rates = [0.01]", "learning_rates = []", "methods[0].learning_rates"),
        ("learning_rates = [0.01]", "learning_rates = [-0.01]", "methods[0].learning_rates[0]"),
        ("learning_rates = [0.01]", "learning_rates = [0.01]\nmomentum = 0.9", "methods[0]"),
        ("[init]", '[init]\npath = "x"', "init.kind"),
    ],
)
def test_bad_fields_are_named(old, new, field):
    text = edit(SPECTRAL, old, new)
    if new.startswith("[init]"):  # path without kind = npz is fine to parse; npz kind w/o path not
        text = edit(text, 'kind = "gaussian"', 'kind = "npz"').replace('path = "x"\n', "")
    with pytest.raises(UsageError) as error:
        parse(text)
    message = str(error.value)
    assert field in message, message
    assert "\n" not in message


def test_depth_below_two_is_refused():
    with pytest.raises(UsageError, match=r"model\.hidden"):
        parse(edit(SPECTRAL, "hidden = [3]", "hidden = 3"))


def test_malformed_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = = 1")
    with pytest.raises(UsageError, match="not valid TOML"):
        config.load(bad)
    with pytest.raises(UsageError, match="does not exist"):
        config.load(tmp_path / "missing.toml")


NPZ = """
steps = 10
[problem]
kind = "npz"
path = "target.npz"
[model]
hidden = [2]
[init]
kind = "npz"
path = "init.npz"
[[methods]]
name = "gd"
learning_rates = [0.01]
"""


def build(tmp_path, arrays: dict, init: dict):
    np.savez(tmp_path / "target.npz", **arrays)
    np.savez(tmp_path / "init.npz", **init)
    return execution.build(parse(NPZ, base_dir=tmp_path))


def test_npz_problem_and_init_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4, 3))
    init = {"W1": rng.standard_normal((4, 2)), "W2": rng.standard_normal((2, 3))}
    setup = build(tmp_path, {"A": A}, init)
    np.testing.assert_array_equal(setup.problem.A, A)
    np.testing.assert_array_equal(setup.weights[0], init["W1"])
    X = rng.standard_normal((3, 20))
    setup = build(tmp_path, {"X": X, "Y": A @ X}, init)
    np.testing.assert_allclose(setup.problem.A, A, rtol=1e-12)


@pytest.mark.parametrize(
    "arrays, init, words",
    [
        ({"B": np.ones((4, 3))}, None, ["problem.path", "neither A nor X and Y"]),
        ({"X": np.ones((3, 5))}, None, ["only one of X and Y"]),
        ({"X": np.ones((3, 5)), "Y": np.ones((4, 6))}, None, ["5 samples", "Y has 6"]),
        ({"A": np.full((4, 3), np.nan)}, None, ["non-finite"]),
        ({"A": np.ones((4, 3))}, {"W1": np.ones((4, 2))}, ["init.path", "W2"]),
        ({"A": np.ones((4, 3))}, {"W1": np.ones((4, 5)), "W2": np.ones((2, 3))}, ["W1", "(4, 2)"]),
        ({"A": np.ones((4, 3))}, {"W1": np.ones((4, 2)), "W2": np.full((2, 3), np.inf)}, ["W2"]),
    ],
)
def test_bad_npz_files(tmp_path, arrays, init, words):
    init = init or {"W1": np.ones((4, 2)), "W2": np.ones((2, 3))}
    with pytest.raises(UsageError) as error:
        build(tmp_path, arrays, init)
    for word in words:
        assert word in str(error.value), str(error.value)


def test_missing_npz_file(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        execution.build(parse(NPZ, base_dir=tmp_path))


@pytest.mark.parametrize("path", sorted(Path("examples").glob("**/*.toml")), ids=str)
def test_every_example_parses(path):
    text = path.read_text()
    if "seeds" in tomllib.loads(text):  # a sweep file
        from deeplinear import sweep

        assert sweep.load(path).groups
    else:
        assert config.load(path).methods

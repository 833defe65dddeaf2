"""Plugins fail alone: a plugin that fails to load or takes a taken name is reported for that
method only (one line, its name, the fix); the listing, the other methods and the runs that do not
use it go on. Real packages
installed in the test (``test_plugins.install``)."""

import dataclasses

import pytest

from deeplinear.errors import UsageError
from deeplinear.methods import GD, METHODS, make_method, recorded_columns, register
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

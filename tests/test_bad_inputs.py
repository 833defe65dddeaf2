"""Bad input, generated and by hand: every corrupted run file, sweep file and .npz is refused up
front with one UsageError line that names the field, never a traceback, a hang or a silent run.

The corpus is property-based (Hypothesis): strategies corrupt valid examples (wrong types,
NaN/inf/negative/huge numbers, unknown keys, colliding runs, bad dtypes and shapes, truncated or
forged files). A representative sample runs by default; ``DEEPLINEAR_FUZZ=1`` runs ≥ 500 distinct
bad inputs and prints how many (``DEEPLINEAR_FUZZ=1 pytest -q tests/test_bad_inputs.py``).
Cases are checked in-process (``config.parse``, ``sweep.parse``, ``execution.build``, ``cli.main``);
a few go through a real ``deeplinear`` process for the exit status, the one line and no traceback.
"""

import copy
import datetime
import hashlib
import io
import json
import math
import os
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deeplinear import cli, sweep
from deeplinear.core import limits
from deeplinear.errors import UsageError
from deeplinear.experiment import budget, config, execution
from deeplinear.methods import METHODS, declarations, make_method
from deeplinear.problems.kinds import problem_kind

FUZZ = os.environ.get("DEEPLINEAR_FUZZ") == "1"
FUZZ_TARGET = 500  # distinct bad inputs the full corpus must reach
SETTINGS = settings(
    max_examples=1000 if FUZZ else 60,
    deadline=None,
    database=None,  # no .hypothesis folder in the working tree
    derandomize=not FUZZ,  # the default sample is the same on every run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
CORPUS: dict[str, set] = {"run file": set(), "sweep file": set(), "npz": set(), "cli": set()}
NAN, INF = math.nan, math.inf


@pytest.fixture(autouse=True, scope="module")
def fixed_limits():
    """The same limits on every machine (8 GiB, 1 hour): the corpus does not depend on RAM."""
    saved = {k: os.environ.get(k) for k in (limits.MEMORY_ENV, limits.TIME_ENV)}
    os.environ[limits.MEMORY_ENV], os.environ[limits.TIME_ENV] = "8", "1"
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def key_of(value) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def refused(kind: str, key: str, call, *words: str) -> str:
    """``call()`` raises one UsageError line containing ``words``; ``key`` joins the corpus."""
    with pytest.raises(UsageError) as error:
        call()
    message = str(error.value)
    assert message and "\n" not in message, message
    for word in words:
        assert word in message, (word, message)
    CORPUS[kind].add(key)
    return message


# ---------------------------------------------------------------------------------- run files

SPECTRAL = {
    "seed": 1,
    "steps": 10,
    "problem": {
        "kind": "spectral",
        "input": 5,
        "output": 6,
        "rank": 3,
        "condition_number": 100.0,
    },
    "model": {"hidden": [3]},
    "init": {"kind": "gaussian", "scale": 0.1},
    "methods": [{"name": "gd", "learning_rates": [0.01]}],
}
NOTEBOOK = {
    "steps": 10,
    "problem": {"kind": "notebook", "row_scale_min": 1e-5},
    "model": {"hidden": [6]},
    "init": {"kind": "notebook"},
    "methods": [{"name": "adam", "learning_rates": [0.01]}],
}
UNSEEDED = {k: v for k, v in SPECTRAL.items() if k != "seed"}  # a run file and a sweep file
SPECTRAL_INIT = {**SPECTRAL, "init": {"kind": "spectral", "strengths": [0.1, 0.1, 0.1]}}
BASES = {"spectral": SPECTRAL, "notebook": NOTEBOOK, "spectral_init": SPECTRAL_INIT}


def accept_run(data: dict):
    """What ``deeplinear run`` checks before it touches --out: the file, the cost, the setup."""
    parsed = config.parse(copy.deepcopy(data), source=key_of(data))
    limits.check(budget.estimate_run(parsed), limits.Limits.from_env(), "run")
    return execution.build(parsed)


def setting(data: dict, path: str, value) -> dict:
    data = copy.deepcopy(data)
    *parents, leaf = path.split(".")
    table = data
    for part in parents:
        if part.startswith("methods["):
            table = table["methods"][int(part[len("methods[") : -1])]
        else:
            table = table.setdefault(part, {})
    table[leaf] = value
    return data


finite = st.floats(allow_nan=False, allow_infinity=False)
non_finite = st.sampled_from([NAN, INF, -INF])
scalar_junk = st.one_of(
    st.text(max_size=6),
    st.booleans(),
    st.dates(),
    st.dictionaries(st.text(min_size=1, max_size=3), st.integers(), max_size=2),
)
not_int = st.one_of(finite, non_finite, scalar_junk, st.lists(st.integers(), max_size=2))
not_number = st.one_of(scalar_junk, st.lists(finite, max_size=2))


def below(n):
    return st.integers(min_value=-(2**63), max_value=n - 1)


def above(n):
    return st.integers(min_value=n + 1, max_value=2**63 - 1)


def floats_below(x, inclusive=True):
    return st.floats(max_value=x, exclude_max=not inclusive, allow_nan=False, allow_infinity=False)


def floats_above(x):
    return st.floats(min_value=x, exclude_min=True, allow_nan=False, allow_infinity=False)


def other_text(*allowed):
    return st.one_of(st.text(max_size=8).filter(lambda t: t not in allowed), st.integers(), finite)


# (base, TOML path, bad values, words the message must contain)
RUN_FIELDS = [
    ("spectral", "seed", st.one_of(below(0), st.integers(2**32, 2**63 - 1), not_int), "seed"),
    ("spectral", "steps", st.one_of(below(1), above(config.MAX_STEPS), not_int), "steps"),
    (
        "spectral",
        "record_every",
        st.one_of(below(1), not_int, st.sampled_from([3, 4, 6, 7, 9, 11, 20, 10**6])),
        "record_every",
    ),
    ("spectral", "checkpoints", st.one_of(below(0), above(1000), not_int), "checkpoints"),
    ("spectral", "generator", other_text("numpy", "jax"), "generator"),
    ("spectral", "name", st.one_of(st.integers(), finite, st.booleans()), "name"),
    ("spectral", "problem.kind", other_text("notebook", "spectral", "npz"), "problem.kind"),
    ("spectral", "problem.input", st.one_of(below(1), not_int), "problem.input"),
    ("spectral", "problem.output", st.one_of(below(1), not_int), "problem.output"),
    ("spectral", "problem.rank", st.one_of(below(1), st.integers(6, 10**6), not_int), "rank"),
    (
        "spectral",
        "problem.samples",
        st.one_of(below(1), not_int.filter(lambda v: v != "population")),
        "problem.samples",
    ),
    (
        "spectral",
        "problem.condition_number",
        st.one_of(floats_below(1, inclusive=False), non_finite, not_number),
        "problem.condition_number",
    ),
    (
        "spectral",
        "problem.noise",
        st.one_of(floats_below(0, inclusive=False), non_finite, not_number),
        "problem.noise",
    ),
    (
        "spectral",
        "problem.largest_singular_value",
        st.one_of(floats_below(0), non_finite, not_number),
        "problem.largest_singular_value",
    ),
    ("spectral", "problem.law", other_text("geometric", "linear", "gaussian"), "problem.law"),
    ("spectral", "problem.vectors", other_text("random", "identity"), "problem.vectors"),
    (
        "spectral",
        "problem.whiten",
        st.one_of(st.integers(), st.text(max_size=4), finite),
        "problem.whiten",
    ),
    (
        "spectral",
        "problem.singular_values",
        st.one_of(
            st.lists(floats_above(0), max_size=6).filter(lambda v: len(v) != 3),
            st.lists(st.one_of(floats_below(0), non_finite), min_size=3, max_size=3),
            st.lists(scalar_junk, min_size=3, max_size=3),
            scalar_junk,
        ),
        "problem.singular_values",
    ),
    (
        "notebook",
        "problem.row_scale_min",
        st.one_of(floats_below(0), floats_above(1), non_finite, not_number),
        "problem.row_scale_min",
    ),
    (
        "spectral",
        "model.hidden",
        st.one_of(
            st.just([]),
            st.lists(below(1), min_size=1, max_size=3),
            st.lists(not_int, min_size=1, max_size=3),
            scalar_junk,
        ),
        "model.hidden",
    ),
    ("spectral", "init.kind", other_text(*config.INIT_KINDS), "init.kind"),
    ("spectral", "init.scale", st.one_of(floats_below(0), non_finite, not_number), "init.scale"),
    (
        "spectral_init",
        "init.strengths",
        st.one_of(
            st.just([]),
            st.lists(floats_below(0, inclusive=False), min_size=1, max_size=4),
            st.lists(non_finite, min_size=1, max_size=4),
            st.lists(scalar_junk, min_size=1, max_size=3),
            scalar_junk,
            st.lists(floats_above(0), min_size=2, max_size=6).filter(lambda v: len(v) != 3),
        ),
        "init.strengths",
    ),
    (
        "spectral",
        "methods[0].learning_rates",
        st.one_of(
            st.just([]),
            st.lists(floats_below(0), min_size=1, max_size=3),
            st.lists(non_finite, min_size=1, max_size=3),
            st.lists(scalar_junk, min_size=1, max_size=3),
            floats_above(0).map(lambda r: [r, r]),  # one run twice
            st.integers(1, 9).map(lambda r: [r, float(r)]),
            scalar_junk.filter(lambda v: not isinstance(v, dict)),
        ),
        "methods[0].learning_rates",
    ),
    (
        "spectral",
        "methods[0].steps",
        st.one_of(below(1), above(config.MAX_STEPS), not_int),
        "methods[0].steps",
    ),
    ("spectral", "methods[0].name", other_text(*METHODS), "methods[0].name"),
]


def bad_hyperparameter(spec):
    """Values the declaration ``spec`` refuses."""
    junk = st.one_of(st.text(max_size=5), st.dates(), st.lists(st.integers(), max_size=2))
    if spec.kind == "choice":
        return other_text(*spec.choices)
    if spec.kind == "flag":
        return st.one_of(st.integers(), finite, st.text(max_size=4))
    options = [non_finite, junk, st.booleans()]
    if spec.kind == "integer":
        options.append(finite.filter(lambda v: not v.is_integer()) | st.sampled_from([1.0, 2.0]))
        if spec.low is not None:
            options.append(below(int(spec.low)))
        if spec.high is not None:
            options.append(above(int(spec.high)))
    else:
        if spec.low is not None:
            options.append(floats_below(spec.low, inclusive=spec.low_open))
        if spec.high is not None:
            limit = st.floats(min_value=spec.high, exclude_min=not spec.high_open)
            options.append(limit.filter(math.isfinite))
    return st.one_of(*options)


HYPERPARAMETERS = [
    (name, field, spec)
    for name, cls in METHODS.items()
    for field, (_, spec) in declarations(cls).items()
]


@st.composite
def bad_run_files(draw):
    """(run file, words its refusal must contain)."""
    how = draw(st.sampled_from(["field", "hyperparameter", "unknown", "shape", "size"]))
    if how == "field":
        base, path, values, words = draw(st.sampled_from(RUN_FIELDS))
        return setting(BASES[base], path, draw(values)), [words]
    if how == "hyperparameter":
        name, field, spec = draw(st.sampled_from(HYPERPARAMETERS))
        table = {"name": name, "learning_rates": [0.01], field: draw(bad_hyperparameter(spec))}
        return {**SPECTRAL, "methods": [table]}, [f"{name}.{field}", "methods[0]"]
    if how == "unknown":
        where = draw(st.sampled_from(["", "problem", "model", "init", "methods[0]"]))
        allowed = {
            "": config.TOP_KEYS,
            "problem": config.PROBLEM_KEYS["spectral"],
            "model": {"hidden"},
            "init": {"kind", "scale"},
            "methods[0]": config.METHOD_KEYS | {"schedule", "decay_steps", "decay_factor"},
        }[where]
        names = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
        key = draw(
            st.one_of(names, st.sampled_from(sorted(config.INIT_KEYS | {"row_scale_min"}))).filter(
                lambda k: k not in allowed
            )
        )
        value = draw(st.one_of(st.integers(0, 9), st.text(max_size=3), finite))
        return setting(SPECTRAL, f"{where}.{key}" if where else key, value), [key]
    if how == "shape":
        case = draw(
            st.sampled_from(
                [
                    ("problem", st.one_of(st.integers(), st.text(max_size=3), st.lists(finite))),
                    ("model", st.one_of(st.integers(), st.text(max_size=3), st.lists(finite))),
                    ("init", st.one_of(st.integers(), st.text(max_size=3))),
                    (
                        "methods",
                        st.one_of(
                            st.just([]), st.integers(), st.dictionaries(st.text(), st.integers())
                        ),
                    ),
                    (
                        "methods",
                        st.lists(st.one_of(st.integers(), st.text()), min_size=1, max_size=2),
                    ),
                ]
            )
        )
        return {**SPECTRAL, case[0]: draw(case[1])}, [case[0]]
    # sizes that cannot fit in memory or time: refused by the estimate, with the limit
    case = draw(st.sampled_from(["hidden", "depth", "samples", "records", "input"]))
    if case == "hidden":
        data = setting(SPECTRAL, "model.hidden", [draw(st.integers(10**8, 10**12))])
    elif case == "depth":
        data = setting(SPECTRAL, "model.hidden", [3] * draw(st.integers(12_000, 30_000)))
    elif case == "samples":
        data = setting(SPECTRAL, "problem.samples", draw(st.integers(10**10, 10**15)))
    elif case == "input":
        data = setting(SPECTRAL, "problem.input", draw(st.integers(10**6, 10**9)))
        data = setting(data, "problem.output", draw(st.integers(10**6, 10**9)))
    else:
        steps = draw(st.integers(10**8, config.MAX_STEPS))
        data = setting(SPECTRAL, "steps", steps)
    return data, ["limit"]


@SETTINGS
@given(bad_run_files())
def test_generated_bad_run_files_are_refused(case):
    data, words = case
    refused("run file", key_of(data), lambda: accept_run(data), *words)


# -------------------------------------------------------------------------------- sweep files

SWEEP = {
    "seeds": 2,
    "targets": [1e-6],
    "steps": 20,
    "record_every": 10,
    "problem": {"kind": "spectral", "input": 5, "output": 6, "rank": 3, "samples": "population"},
    "model": {"hidden": [3]},
    "init": {"kind": "scaled_gaussian"},
    "axes": {"problem.condition_number": [10.0, 100.0]},
    "methods": [
        {"name": "gd", "learning_rates": {"min": 0.01, "max": 0.1, "num": 3, "scaling": "log"}},
        {"name": "lm", "learning_rates": [1.0], "steps": 10},
    ],
}


def grid_table(**changes):
    table = {"min": 0.01, "max": 0.1, "num": 3, "scaling": "log"}
    table.update(changes)
    return {k: v for k, v in table.items() if v is not None}


SWEEP_FIELDS = [
    (
        "seeds",
        st.one_of(
            below(1),
            above(sweep.MAX_SEEDS),
            st.just([]),
            st.lists(below(0), min_size=1, max_size=3),
            st.lists(not_int, min_size=1, max_size=3),
            st.integers(0, 99).map(lambda s: [s, s]),  # the same seed twice
            finite,
            st.text(max_size=3),
        ),
        "seeds",
    ),
    (
        "targets",
        st.one_of(
            st.just([]),
            st.lists(floats_below(0), min_size=1, max_size=3),
            st.lists(non_finite, min_size=1, max_size=2),
            st.lists(scalar_junk, min_size=1, max_size=2),
            finite,
        ),
        "targets",
    ),
    ("select", other_text(*sweep.SELECT), "select"),
    ("seed", st.integers(0, 10), "seed"),
    (
        "methods[0].learning_rates",
        st.one_of(
            st.tuples(floats_above(0), floats_above(0))
            .filter(lambda t: t[0] > t[1])
            .map(lambda t: grid_table(min=t[0], max=t[1])),
            below(1).map(lambda n: grid_table(num=n)),
            above(sweep.MAX_GRID).map(lambda n: grid_table(num=n)),
            floats_above(0).map(lambda v: grid_table(min=v, max=v, num=2)),  # one run twice
            floats_below(0).map(lambda v: grid_table(min=v)),
            non_finite.map(lambda v: grid_table(max=v)),
            other_text("log", "linear").map(lambda v: grid_table(scaling=v)),
            st.text("xyz", min_size=1, max_size=3).map(lambda k: {**grid_table(), k: 1}),
            st.sampled_from(["min", "max", "num"]).map(lambda k: grid_table(**{k: None})),
            st.lists(floats_above(0), min_size=1, max_size=3).map(lambda v: v + v[:1]),
        ),
        "methods[0].learning_rates",
    ),
    ("methods[0].learning_rate_scaling", other_text(*sweep.SCALINGS), "learning_rate_scaling"),
]

AXES = st.one_of(
    st.sampled_from(["seed", "seeds", "methods", "name", "targets", "select"]).map(
        lambda k: ({k: [1, 2]}, [k])
    ),
    st.sampled_from(
        ["seed.x", "steps.x", "problem.kind.x", "model.hidden.x", "methods.0.name"]
    ).map(lambda k: ({k: [1, 2]}, [k])),
    st.sampled_from(["problem..x", ".x", "problem.", "wobble.x", "wobble"]).map(
        lambda k: ({k: [1]}, ["axes"])
    ),
    st.lists(finite, min_size=0, max_size=3, unique=True).map(
        lambda v: ({"problem.condition_number": [*v, NAN]}, ["nan"])
    ),
    floats_above(1).map(lambda v: ({"problem.condition_number": [v, v]}, ["repeats"])),
    st.integers(1, 100).map(lambda v: ({"problem.noise": [v, float(v)]}, ["repeats"])),
    st.sampled_from([[], {}, 3, "x"]).map(lambda v: ({"problem.condition_number": v}, ["axes"])),
    st.tuples(st.integers(101, 400), st.integers(101, 400)).map(
        lambda n: (
            {
                "problem.noise": list(range(n[0])),
                "problem.largest_singular_value": list(range(n[1])),
            },
            ["axis points"],
        )
    ),
    floats_below(1, inclusive=False).map(
        lambda v: ({"problem.condition_number": [10.0, v]}, ["problem.condition_number"])
    ),
    st.text("abcdefghij", min_size=1, max_size=6).map(
        lambda k: ({f"problem.{k}x": [1, 2]}, [f"problem.{k}x"])
    ),
)


@st.composite
def bad_sweep_files(draw):
    how = draw(st.sampled_from(["sweep", "axes", "run"]))
    if how == "sweep":
        path, values, words = draw(st.sampled_from(SWEEP_FIELDS))
        return setting(SWEEP, path, draw(values)), [words]
    if how == "axes":
        axes, words = draw(AXES)
        return {**SWEEP, "axes": axes}, words
    # a run file's corruption, carried into the sweep's run-file part (without its axes)
    data, words = draw(bad_run_files())
    merged = {"seeds": 2, "targets": [1e-6]}
    for key, value in data.items():  # all but the base's own seed (True == 1 is a corruption)
        if not (key == "seed" and type(value) is int and value == SPECTRAL["seed"]):
            merged[key] = value
    return merged, words


@SETTINGS
@given(bad_sweep_files())
def test_generated_bad_sweep_files_are_refused(case):
    data, words = case
    refused("sweep file", key_of(data), lambda: accept_sweep(data), *words)


def accept_sweep(data: dict):
    """What ``deeplinear sweep`` checks before it touches --out: the file and the cost."""
    plan = sweep.parse(copy.deepcopy(data), source=key_of(data))
    limits.check(sweep.estimate(plan), limits.Limits.from_env(), "sweep")
    return plan


# ---------------------------------------------------------------------------------- .npz files


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def forged(name: str, shape, descr="<f8", data=b"") -> bytes:
    """An .npz whose array ``name`` has a forged header (any shape) and ``data`` after it."""
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        member, {"descr": descr, "fortran_order": False, "shape": tuple(shape)}
    )
    member.write(data)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{name}.npy", member.getvalue())
    return buffer.getvalue()


BAD_DTYPES = [
    np.complex64,
    np.complex128,
    np.bool_,
    "m8[s]",
    "M8[D]",
    "U3",
    "S3",
    [("a", "f8"), ("b", "f8")],
    object,
]


def as_dtype(array, dtype):
    if dtype is object:
        out = np.empty(array.shape, dtype=object)
        out[...] = array.tolist()
        return out
    if np.dtype(dtype).names:
        return np.zeros(array.shape, dtype=dtype)
    return array.astype(dtype)


def _bad_dtype(draw, data):
    which = draw(st.sampled_from(["A", "X", "Y"]))
    dtype = draw(st.sampled_from(BAD_DTYPES))
    arrays = {"A": data.A} if which == "A" else {"X": data.X, "Y": data.Y}
    arrays[which] = as_dtype(arrays[which], dtype)
    return npz_bytes(**arrays), None, [which, "dtype"]


def _bad_shape(draw, data):
    d_out, d_in, n, A, X, Y = data.d_out, data.d_in, data.n, data.A, data.X, data.Y
    case = draw(st.sampled_from(["A0", "A1d", "A3d", "samples0", "mismatch", "scalar"]))
    if case == "A0":
        shape = draw(st.sampled_from([(0, d_in), (d_out, 0), (0, 0)]))
        return npz_bytes(A=np.zeros(shape)), None, ["A", "empty"]
    if case == "A1d":
        return npz_bytes(A=A.ravel()), None, ["A", "2-d"]
    if case == "A3d":
        return npz_bytes(A=A[None]), None, ["A", "2-d"]
    if case == "scalar":
        return npz_bytes(A=np.float64(1.0)), None, ["A", "2-d"]
    if case == "samples0":
        return npz_bytes(X=X[:, :0], Y=Y[:, :0]), None, ["X", "empty"]
    return npz_bytes(X=X, Y=Y[:, : n - 1] if n > 1 else Y[:, :0]), None, ["problem.path"]


def _bad_values(draw, data):
    which = draw(st.sampled_from(["A", "X", "Y", "X=0"]))
    if which == "X=0":
        return npz_bytes(X=np.zeros_like(data.X), Y=data.Y), None, ["X", "zero"]
    arrays = {"A": data.A} if which == "A" else {"X": data.X, "Y": data.Y}
    target = arrays[which]
    index = tuple(draw(st.integers(0, s - 1)) for s in target.shape)
    target[index] = draw(non_finite)
    return npz_bytes(**arrays), None, [which, "non-finite"]


def _truncated(draw, data):
    cut = draw(st.integers(0, len(data.good) - 1))
    return data.good[:cut], None, ["problem.path"]


def _junk(draw, data):
    junk = draw(st.binary(max_size=200))
    if draw(st.booleans()):  # a single .npy array, not an archive
        buffer = io.BytesIO()
        np.save(buffer, data.A)
        junk = buffer.getvalue()
    return junk, None, ["problem.path"]


def _forged(draw, data):
    d_out, d_in = data.d_out, data.d_in
    case = draw(st.sampled_from(["bomb", "short", "garbage", "descr"]))
    if case == "bomb":  # a huge declared size, a few bytes of data
        shape = (draw(st.integers(10**5, 10**9)), draw(st.integers(10**5, 10**9)))
        return forged("A", shape, data=b"\0" * 64), None, ["limit"]
    if case == "short":  # fewer bytes than the header declares
        short = b"\0" * draw(st.integers(0, 8 * d_out * d_in - 1))
        return forged("A", (d_out, d_in), data=short), None, ["problem.path"]
    if case == "descr":
        descr = draw(st.sampled_from(["<c16", "|b1", "<m8[s]", "<M8[D]", "|O", "<U4"]))
        return forged("A", (d_out, d_in), descr=descr), None, ["A"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("A.npy", b"\x93NUMPY" + draw(st.binary(max_size=40)))
    return buffer.getvalue(), None, ["problem.path"]


def _missing(draw, data):
    name = draw(st.sampled_from(["B", "a", "X", "Y", "W1"]))
    return npz_bytes(**{name: data.A}), None, ["problem.path"]


def _bad_init(draw, data):
    """The initial weights (hidden width 3): wrong shape, missing layer, bad values or dtype."""
    good, d_in = data.good, data.d_in
    W1, W2 = data.rng.standard_normal((data.d_out, 3)), data.rng.standard_normal((3, d_in))
    case = draw(st.sampled_from(["shape", "missing", "values", "dtype"]))
    if case == "shape":
        return good, npz_bytes(W1=W1[:, :2], W2=W2), ["init.path", "W1"]
    if case == "missing":
        return good, npz_bytes(W1=W1), ["init.path", "W2"]
    if case == "values":
        W2[draw(st.integers(0, 2)), draw(st.integers(0, d_in - 1))] = draw(non_finite)
        return good, npz_bytes(W1=W1, W2=W2), ["init.path", "W2"]
    dtype = draw(st.sampled_from(BAD_DTYPES))
    return good, npz_bytes(W1=as_dtype(W1, dtype), W2=W2), ["init.path", "W1"]


BAD_NPZ = {
    "dtype": _bad_dtype,
    "shape": _bad_shape,
    "values": _bad_values,
    "truncated": _truncated,
    "junk": _junk,
    "forged": _forged,
    "missing": _missing,
    "init": _bad_init,
}


@st.composite
def bad_npz(draw):
    """(problem file bytes, init file bytes or None, words): refused by ``execution.build``."""
    d_out, d_in, n = draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    A = rng.standard_normal((d_out, d_in))
    X, Y = rng.standard_normal((d_in, n)), rng.standard_normal((d_out, n))
    good = npz_bytes(A=A)
    how = draw(st.sampled_from(list(BAD_NPZ)))
    data = SimpleNamespace(d_out=d_out, d_in=d_in, n=n, rng=rng, A=A, X=X, Y=Y, good=good)
    return BAD_NPZ[how](draw, data)


def npz_config(folder: Path, problem: bytes, init: bytes | None):
    digest = hashlib.sha256(problem + (init or b"")).hexdigest()[:16]
    (folder / f"{digest}.npz").write_bytes(problem)
    text = f'steps = 10\n[problem]\nkind = "npz"\npath = "{digest}.npz"\n[model]\nhidden = [3]\n'
    if init is None:
        text += '[init]\nkind = "gaussian"\n'
    else:
        (folder / f"{digest}-init.npz").write_bytes(init)
        text += f'[init]\nkind = "npz"\npath = "{digest}-init.npz"\n'
    text += '[[methods]]\nname = "gd"\nlearning_rates = [0.01]\n'
    return config.parse(tomllib.loads(text), base_dir=folder, source=text), digest


@pytest.fixture(scope="module")
def npz_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("npz")


@SETTINGS
@given(case=bad_npz())
def test_generated_bad_npz_files_are_refused(case, npz_folder):
    problem, init, words = case
    parsed, digest = npz_config(npz_folder, problem, init)
    refused("npz", digest, lambda: accept_run_config(parsed), *words)


def accept_run_config(parsed):
    limits.check(budget.estimate_run(parsed), limits.Limits.from_env(), "run")
    return execution.build(parsed)


# ------------------------------------------- completion and sensing .npz files (issue 26)


def _completion_arrays(draw, data):
    """A consistent completion file's arrays, then one inconsistency (→ arrays, words)."""
    n1, n2, rng = data.n1, data.n2, data.rng
    m = draw(st.integers(1, n1 * n2))
    pairs = rng.choice(n1 * n2, m, replace=False)
    arrays = {
        "rows": pairs // n2,
        "cols": pairs % n2,
        "values": data.M.ravel()[pairs],
        "shape": np.array([n1, n2]),
        "truth": data.M,
    }
    case = draw(
        st.sampled_from(
            [
                "2-d",
                "length",
                "range",
                "fraction",
                "twice",
                "missing",
                "shape",
                "truth-shape",
                "truth-zero",
                "non-finite",
                "dtype",
            ]
        )
    )
    name = draw(st.sampled_from(["rows", "cols", "values"]))
    if case == "2-d":
        arrays[name] = np.stack([arrays[name], arrays[name]])
        return arrays, [name, "1-d"]
    if case == "length":
        arrays[name] = np.concatenate([arrays[name], arrays[name][:1]])
        return arrays, ["rows, cols and values", "same length"]
    if case in ("range", "fraction"):
        name = draw(st.sampled_from(["rows", "cols"]))
        index = draw(st.integers(0, m - 1))
        arrays[name] = arrays[name].astype(float)
        arrays[name][index] = {"rows": n1, "cols": n2}[name] if case == "range" else 0.5
        return arrays, [name, "integers in"]
    if case == "twice":
        if m == 1:
            arrays = {
                k: np.concatenate([v, v]) if k in ("rows", "cols", "values") else v
                for k, v in arrays.items()
            }
        else:
            arrays["rows"][1], arrays["cols"][1] = arrays["rows"][0], arrays["cols"][0]
        return arrays, ["listed twice"]
    return _either_arrays(draw, data, arrays, case, name, ["rows", "cols", "values", "shape"])


def _sensing_arrays(draw, data):
    """A consistent sensing file's arrays, then one inconsistency (→ arrays, words)."""
    n1, n2, rng = data.n1, data.n2, data.rng
    m = draw(st.integers(1, 12))
    operators = rng.standard_normal((m, n1, n2))
    arrays = {
        "operators": operators,
        "values": np.einsum("kij,ij->k", operators, data.M),
        "shape": np.array([n1, n2]),
        "truth": data.M,
    }
    case = draw(
        st.sampled_from(
            [
                "1-d",
                "4-d",
                "count",
                "inner",
                "transposed",
                "missing",
                "shape",
                "truth-shape",
                "truth-zero",
                "non-finite",
                "dtype",
                "values-2-d",
            ]
        )
    )
    if case == "1-d":
        arrays["operators"] = operators.ravel()
        return arrays, ["operators", "2-d or 3-d"]
    if case == "4-d":
        arrays["operators"] = operators[:, None]
        return arrays, ["operators", "2-d or 3-d"]
    if case == "count":
        more = draw(st.booleans()) or m == 1
        arrays["operators"] = np.concatenate([operators, operators[:1]]) if more else operators[1:]
        return arrays, ["operators", f"each of the {m} values"]
    if case == "inner":
        flat = operators.reshape(m, -1)
        arrays["operators"] = np.concatenate([flat, flat[:, :1]], axis=1)
        return arrays, ["operators", "expected"]
    if case == "transposed":
        if n1 == n2:  # a square operator transposed has the right shape: make it one too many
            arrays["operators"] = operators[:, :, :-1] if n2 > 1 else operators[:, :, :0]
            if n2 == 1:
                return arrays, ["operators", "empty"]
        else:
            arrays["operators"] = operators.transpose(0, 2, 1)
        return arrays, ["operators", "expected"]
    if case == "values-2-d":
        arrays["values"] = arrays["values"][None]
        return arrays, ["values", "1-d"]
    name = draw(st.sampled_from(["operators", "values"]))
    return _either_arrays(draw, data, arrays, case, name, ["operators", "values", "shape"])


def _either_arrays(draw, data, arrays, case, name, needed):
    """The inconsistencies a completion and a sensing file share."""
    n1, n2 = data.n1, data.n2
    if case == "missing":
        gone = draw(st.sampled_from(needed))
        del arrays[gone]
        return arrays, [f"no '{gone}'"]
    if case == "shape":
        arrays["shape"] = draw(
            st.sampled_from(
                [
                    np.array([n1, n2, 1]),
                    np.array([n1]),
                    np.array([0, n2]),
                    np.array([n1 + 0.5, n2]),
                    np.array([[n1, n2]]),
                ]
            )
        )
        return arrays, ["shape"]
    if case == "truth-shape":
        arrays["truth"] = np.zeros((n1 + 1, n2))
        return arrays, ["truth", "expected"]
    if case == "truth-zero":
        arrays["truth"] = np.zeros((n1, n2))
        return arrays, ["truth is zero"]
    target = arrays[name] = arrays[name].astype(float)
    if case == "non-finite":
        target.reshape(-1)[draw(st.integers(0, target.size - 1))] = draw(non_finite)
        return arrays, [name, "non-finite"]
    arrays[name] = as_dtype(target, draw(st.sampled_from(BAD_DTYPES)))  # "dtype"
    return arrays, [name, "dtype"]


@st.composite
def bad_measured_npz(draw):
    """(kind, .npz bytes, words): a completion or sensing file whose arrays disagree."""
    n1, n2 = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    M = rng.standard_normal((n1, 1)) @ rng.standard_normal((1, n2)) + 0.5
    data = SimpleNamespace(n1=n1, n2=n2, rng=rng, M=M)
    kind = draw(st.sampled_from(["completion", "sensing"]))
    arrays, words = (_completion_arrays if kind == "completion" else _sensing_arrays)(draw, data)
    return kind, npz_bytes(**arrays), words


def measured_config(folder: Path, kind: str, problem: bytes):
    digest = hashlib.sha256(problem).hexdigest()[:16]
    (folder / f"{digest}.npz").write_bytes(problem)
    text = (
        f'steps = 10\n[problem]\nkind = "{kind}"\npath = "{digest}.npz"\n[model]\n'
        'hidden = [1]\n[[methods]]\nname = "gd"\nlearning_rates = [0.01]\n'
    )
    return config.parse(tomllib.loads(text), base_dir=folder, source=text), digest


@SETTINGS
@given(case=bad_measured_npz())
def test_generated_inconsistent_measured_npz_files_are_refused_before_the_estimate(
    case, npz_folder
):
    """Refused by the estimate's reading of the headers (``npz_layout``) or by ``check_data``,
    which ``deeplinear run`` and ``sweep`` call before they say what the work will cost."""
    kind, problem, words = case
    parsed, digest = measured_config(npz_folder, kind, problem)

    def before_the_estimate():
        budget.estimate_run(parsed)
        problem_kind(kind).check_data(parsed.problem, parsed.base_dir)

    refused("npz", digest, before_the_estimate, "problem.path", *words)


# ------------------------------------------------------------------- the cases of issue 11


@pytest.mark.parametrize(
    "name, field, spec", HYPERPARAMETERS, ids=[f"{n}.{f}" for n, f, _ in HYPERPARAMETERS]
)
def test_every_hyperparameter_refuses_nan_and_junk(name, field, spec):
    bad = {"flag": [2, "yes"], "choice": ["nope", 1]}.get(spec.kind, [NAN, INF, -INF, "1", True])
    for value in bad:
        with pytest.raises(UsageError, match=f"{name}.{field} must be"):
            make_method(name, **{field: value})


def test_every_hyperparameter_is_declared_and_listed(capsys):
    assert cli.main(["methods"]) == 0
    listed = capsys.readouterr().out
    for name, field, spec in HYPERPARAMETERS:
        default = declarations(METHODS[name])[field][0]
        spec.check(name, field, default)  # every default fits its own declaration
        assert f"{field} = {default!r}: {spec.describe()}" in listed


@pytest.mark.parametrize(
    "method, hyper, words",
    [
        ("lm", {"cg_max_steps": INF}, ["lm.cg_max_steps", "integer"]),
        ("gn-cg", {"cg_max_steps": 2.5}, ["gn-cg.cg_max_steps"]),
        ("lm", {"cg_rtol": NAN}, ["lm.cg_rtol"]),
        ("adam", {"b1": NAN}, ["adam.b1"]),
        ("adamw", {"b2": INF}, ["adamw.b2"]),
        ("rmsprop", {"eps": NAN}, ["rmsprop.eps"]),
        ("momentum", {"momentum": NAN}, ["momentum.momentum"]),
        ("precgd", {"damping": NAN}, ["precgd.damping"]),
        ("gd", {"decay_factor": NAN}, ["gd.decay_factor"]),
        ("gd", {"decay_factor": 2.0}, ["gd.decay_factor"]),
        ("gn-cg", {"precondition": 1}, ["gn-cg.precondition"]),
        ("tf1-adam", {"b1": 0.99999999}, ["tf1-adam.b1", "float32"]),
        ("tf1-adam", {"eps": 1e39}, ["tf1-adam.eps", "float32"]),
    ],
)
def test_hyperparameters_of_the_issue(method, hyper, words):
    message = refused("run file", key_of([method, hyper]), lambda: make_method(method, **hyper))
    for word in words:
        assert word in message


def write(tmp_path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def toml_text(data) -> str:
    """A run or sweep file as TOML (values as TOML spells them; tables inline)."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return "nan" if math.isnan(v) else ("inf" if v == INF else repr(v))
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(map(value, v)) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"
        return str(v)

    return "".join(f"{json.dumps(k)} = {value(v)}\n" for k, v in data.items())


@pytest.mark.parametrize("load", [config.load, sweep.load], ids=["run", "sweep"])
def test_files_that_are_not_run_files(tmp_path, load):
    bad_utf8 = write(tmp_path, "latin1.toml", b'name = "caf\xe9"\n')
    refused("cli", "latin1", lambda: load(bad_utf8), "UTF-8", "line 1")
    refused("cli", "dir", lambda: load(tmp_path), "directory")
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    start = time.monotonic()
    refused("cli", "fifo", lambda: load(fifo), "not a regular file")
    refused("cli", "zero", lambda: load("/dev/zero"), "not a regular file")
    assert time.monotonic() - start < 5  # no hang
    huge = write(tmp_path, "huge.toml", "# " + "x" * (2 << 20) + "\n")
    refused("cli", "huge", lambda: load(huge), "MiB")
    refused("cli", "missing", lambda: load(tmp_path / "no.toml"), "does not exist")
    broken = write(tmp_path, "broken.toml", "steps = = 3\n")
    refused("cli", "broken", lambda: load(broken), "not valid TOML")
    if os.geteuid() != 0:  # root reads anything
        locked = write(tmp_path, "locked.toml", "steps = 3\n")
        locked.chmod(0)
        refused("cli", "unreadable", lambda: load(locked), "cannot be read")


def test_run_file_fields_of_the_issue():
    cases = [
        (setting(NOTEBOOK, "problem.row_scale_min", NAN), "problem.row_scale_min"),
        (setting(NOTEBOOK, "problem.row_scale_min", -1.0), "problem.row_scale_min"),
        (setting(SPECTRAL_INIT, "init.strengths", "strong"), "init.strengths"),
        (setting(SPECTRAL_INIT, "init.strengths", {"a": 1}), "init.strengths"),
        (setting(SPECTRAL_INIT, "init.strengths", [[0.1]]), "init.strengths[0]"),
        (setting(SPECTRAL, "init.strengths", [0.1]), "init.strengths"),  # not for gaussian
        (setting(SPECTRAL, "checkpoints", 10**9), "checkpoints"),
        (setting(SPECTRAL, "steps", 10**12), "steps"),
        (setting(SPECTRAL, "methods[0].steps", 10**12), "methods[0].steps"),
        (setting(SPECTRAL, "problem", 3), "problem"),
        (setting(SPECTRAL, "problem", [["kind", "npz"]]), "problem"),
    ]
    for data, field in cases:
        refused("run file", key_of(data), lambda data=data: accept_run(data), field)


def test_sizes_over_the_limits_are_refused_with_the_number_and_the_limit():
    wide = setting(SPECTRAL, "model.hidden", [10**6])
    wide = setting(wide, "methods", [{"name": "lm", "learning_rates": [1.0]}])
    message = refused("run file", "wide", lambda: accept_run(wide), "GiB", "limit", "--max-memory")
    assert "DEEPLINEAR_MAX_MEMORY_GIB" in message
    deep = setting(SPECTRAL, "model.hidden", [3] * 3999)  # LM's compile alone: ~2 h
    deep = setting(deep, "methods", [{"name": "lm", "learning_rates": [1.0]}])
    message = refused("run file", "deep", lambda: accept_run(deep), "h", "--max-hours")
    assert "depth-4000" in message
    long = setting(SPECTRAL, "steps", 10**9)
    refused("run file", "long", lambda: accept_run(long), "record_every")
    # within the limits once they are raised
    os.environ[limits.MEMORY_ENV] = "1e9"
    try:
        assert limits.Limits.from_env().memory_bytes == 1e9 * 2**30
    finally:
        os.environ[limits.MEMORY_ENV] = "8"
    os.environ[limits.TIME_ENV] = "nan"
    try:
        refused("cli", "env", limits.Limits.from_env, limits.TIME_ENV)
    finally:
        os.environ[limits.TIME_ENV] = "1"


def test_the_example_run_files_are_within_the_limits():
    for path in [*Path("examples").glob("*.toml"), *Path("examples/traps").glob("*.toml")]:
        text = path.read_text()
        if "[axes]" in text or "seeds" in text:
            plan = sweep.load(path)
            assert plan.groups
            continue
        parsed = config.load(path)
        estimate = budget.estimate_run(parsed)
        limits.check(estimate, limits.Limits.from_env(), str(path))
        assert estimate.seconds < 120 and estimate.bytes < 2**30, (path, estimate)
        limits.check(budget.estimate_run(parsed, steps=1_000_000), limits.Limits.from_env(), "x")


def sweep_with(**changes):
    data = copy.deepcopy(SWEEP)
    data.update(changes)
    return data


def test_sweep_cases_of_the_issue():
    cases = [
        (sweep_with(axes={"seed": [1, 2]}), "seeds = [...]"),
        (sweep_with(axes={"seed.x": [1, 2]}), "seed"),
        (sweep_with(axes={"problem.condition_number": [10.0, NAN]}), "nan"),
        (sweep_with(seeds=[0, 0]), "seeds[1]"),
        (sweep_with(seed=3), "seeds"),
        (setting(SWEEP, "methods[0].learning_rates", [1e-4, 1e-4]), "learning_rates[1]"),
        (setting(SWEEP, "methods[0].learning_rates", grid_table(min=0.1, max=0.1)), "min = max"),
        (
            sweep_with(
                methods=[
                    {"name": "adam", "learning_rates": [0.01], "b1": 0.8, "eps": 1e-6},
                    {"eps": 1e-6, "b1": 0.8, "learning_rates": [0.01], "name": "adam"},
                ]
            ),
            "methods[1]",
        ),
    ]
    for data, words in cases:
        refused("sweep file", key_of(data), lambda data=data: accept_sweep(data), words)
    start = time.monotonic()
    big_grid = setting(SWEEP, "methods[0].learning_rates", grid_table(num=10**9))
    refused("sweep file", "num", lambda: sweep.parse(big_grid), "num")
    square = sweep_with(
        axes={"problem.noise": list(range(1000)), "problem.largest_singular_value": [1.0] * 1000}
    )
    refused("sweep file", "square", lambda: sweep.parse(square), "1000 × 1000")
    assert time.monotonic() - start < 2  # refused before anything is allocated or enumerated


def test_axis_values_that_print_alike_get_distinct_run_ids():
    data = sweep_with(axes={"problem.noise": [1e-5, 1.0000001e-5]})
    data["problem"] = {**data["problem"], "samples": 20}
    plan = sweep.parse(data)
    points = {g.label for g in plan.groups}
    assert points == {"problem.noise=1e-05", "problem.noise=1.0000001e-05"}
    rates = config.parse(setting(SPECTRAL, "methods[0].learning_rates", [1e-5, 1.0000001e-5]))
    ids = {execution.run_id(1, "gd", r, {}) for r in rates.methods[0].learning_rates}
    assert ids == {"seed1/gd/1e-05", "seed1/gd/1.0000001e-05"}
    assert execution.run_id(0, "lm", 1.0, {}) == "seed0/lm/1"  # ids of nice values unchanged


def test_an_axis_over_steps_changes_the_steps():
    data = sweep_with(axes={"steps": [10, 20]}, methods=[{"name": "gd", "learning_rates": [0.1]}])
    plan = sweep.parse(data)
    assert sorted(g.method.steps for g in plan.groups) == [10, 20]


def npz_file(tmp_path, name, **arrays) -> Path:
    np.savez(tmp_path / name, **arrays)
    return tmp_path / name


def test_npz_cases_of_the_issue(tmp_path):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4, 5))
    cases = {
        "complex": ({"A": A + 1j}, "complex"),
        "timedelta": ({"A": A.astype("m8[s]")}, "time"),
        "string": ({"A": A.astype(str)}, "text"),
        "datetime": ({"A": np.zeros((4, 5), "M8[D]")}, "dates"),
        "structured": ({"A": np.zeros((4, 5), [("a", "f8"), ("b", "f8")])}, "records"),
        "object": ({"A": as_dtype(A, object)}, "objects"),
        "bool": ({"A": A > 0}, "booleans"),
        "empty A": ({"A": np.zeros((0, 5))}, "empty"),
        "no samples": ({"X": np.zeros((5, 0)), "Y": np.zeros((4, 0))}, "empty"),
        "zero X": ({"X": np.zeros((5, 9)), "Y": np.ones((4, 9))}, "zero"),
    }
    for name, (arrays, word) in cases.items():
        path = npz_file(tmp_path, f"{name}.npz", **arrays)
        parsed, _ = npz_config(tmp_path, path.read_bytes(), None)
        refused("npz", name, lambda parsed=parsed: execution.build(parsed), word)
    ints, _ = npz_config(tmp_path, npz_bytes(A=(10 * A).astype(np.int32)), None)
    assert execution.build(ints).problem.A.dtype == np.float64  # integers are real numbers
    good = npz_bytes(A=A)
    for label, data in {
        "truncated": good[: len(good) // 2],
        "empty": b"",
        "npy": (lambda b: (np.save(b, A), b.getvalue())[1])(io.BytesIO()),
        "bomb": forged("A", (10**7, 10**7), data=b"\0" * 64),
        "malformed": forged("A", (4, 5), data=b"\0" * 10),
    }.items():
        parsed, _ = npz_config(tmp_path, data, None)
        refused("npz", label, lambda parsed=parsed: execution.build(parsed), "problem.path")


# ------------------------------------------------------------------------ the command line


def run_cli(capsys, *args) -> str:
    """``deeplinear ARGS`` in-process: exit 2 and one line on stderr, which is returned."""
    assert cli.main(list(args)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deeplinear: error: "), err
    CORPUS["cli"].add(key_of(args))
    return err[0]


def _sensing_file(m=6, operators=None):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((m, 3, 4)) if operators is None else operators
    return {"operators": A, "values": rng.standard_normal(m), "shape": np.array([3, 4])}


ISSUE_26_NPZ = {  # the fuzzer's cases: a traceback, a silent run, a line after the estimate
    "operators-count": ("sensing", {**_sensing_file(), "values": np.ones(7)}, "operators has"),
    "operators-1-d": ("sensing", {**_sensing_file(), "operators": np.ones(72)}, "2-d or 3-d"),
    "row-out-of-range": (
        "completion",
        {
            "rows": np.array([0, 3]),
            "cols": np.array([0, 1]),
            "values": np.ones(2),
            "shape": np.array([3, 4]),
        },
        "rows must be",
    ),
    "values-inf": (
        "completion",
        {
            "rows": np.array([0, 2]),
            "cols": np.array([0, 1]),
            "values": np.array([1, np.inf]),
            "shape": np.array([3, 4]),
        },
        "non-finite",
    ),
}


@pytest.mark.parametrize("command", ["run", "sweep"])
@pytest.mark.parametrize("case", list(ISSUE_26_NPZ))
def test_a_measured_npz_is_refused_in_one_line_before_the_estimate(tmp_path, capsys, command, case):
    """One line, nothing before it (no "estimated … memory"), --out not made."""
    kind, arrays, words = ISSUE_26_NPZ[case]
    (tmp_path / "m.npz").write_bytes(npz_bytes(**arrays))
    text = (
        f'steps = 5\n[problem]\nkind = "{kind}"\npath = "m.npz"\n[model]\nhidden = [1]\n'
        '[[methods]]\nname = "gd"\nlearning_rates = [0.01]\n'
    )
    text = ("seeds = [0]\n" if command == "sweep" else "") + text
    path = write(tmp_path, "f.toml", text)
    out = tmp_path / "out"
    line = run_cli(capsys, command, str(path), "--out", str(out))
    assert "problem.path" in line and words in line, line
    assert not out.exists()


@pytest.mark.parametrize("what", ["run", "sweep"])
@pytest.mark.parametrize("depth", [17, 5000])  # past the limit; past Python's recursion limit
def test_deeply_nested_toml_is_one_line(tmp_path, capsys, what, depth):
    head = "seeds = 1\n" if what == "sweep" else ""
    path = write(tmp_path, "deep.toml", head + "steps = 5\nx = " + "[" * depth + "]" * depth)
    assert "nests arrays or tables more than 16 deep" in run_cli(capsys, what, str(path))


HUGE_DATA = {  # a problem whose data alone is over 8 GiB → the words of its own keys
    "spectral": (
        {"input": 10**5, "output": 10**5, "samples": 10**5},
        ["problem.samples", "problem.input"],
    ),
    "completion": (
        {"rows": 3 * 10**6, "cols": 3 * 10**6, "rank": 2, "probability": 0.5},
        ["problem.rows", "problem.probability"],
    ),
    "sensing": (
        {"rows": 3000, "cols": 3000, "rank": 2, "measurements": 10**5},
        ["problem.measurements", "problem.rows"],
    ),
}


@pytest.mark.parametrize("kind", list(HUGE_DATA))
def test_the_memory_advice_names_the_problems_own_keys(tmp_path, capsys, kind):
    keys, words = HUGE_DATA[kind]
    data = {
        "steps": 5,
        "problem": {"kind": kind, **keys},
        "model": {"hidden": [2]},
        "methods": [{"name": "gd", "learning_rates": [0.01]}],
    }
    line = run_cli(capsys, "run", str(write(tmp_path, "big.toml", toml_text(data))))
    assert "of memory" in line, line
    for word in words:
        assert word in line, (word, line)
    if kind != "spectral":  # completion and sensing have neither samples nor input and output
        assert "samples" not in line and "input" not in line, line


def test_out_names_over_255_bytes(tmp_path, capsys):
    run_file = write(tmp_path, "r.toml", toml_text(SPECTRAL))
    for out in [str(tmp_path / ("x" * 256)), str(tmp_path / ("é" * 128) / "o"), "y" * 5000]:
        assert "--out" in run_cli(capsys, "run", str(run_file), "--out", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.toml"]


def test_unwritable_parts_of_out_are_refused_before_anything_runs(tmp_path, capsys, monkeypatch):
    run_file = write(tmp_path, "r.toml", toml_text(SPECTRAL))
    out = tmp_path / "o"
    (out).mkdir()
    (out / "state").write_text("a file where the folder goes")
    assert "state" in run_cli(capsys, "run", str(run_file), "--out", str(out))
    (out / "state").unlink()
    (out / "state" / "0.npz").mkdir(parents=True)
    assert "0.npz" in run_cli(capsys, "run", str(run_file), "--out", str(out))
    (out / "state" / "0.npz").rmdir()
    real = os.access
    monkeypatch.setattr(cli.os, "access", lambda p, m: real(p, m) and Path(p).name != "state")
    assert "chmod" in run_cli(capsys, "run", str(run_file), "--out", str(out))
    sweep_file = write(tmp_path, "s.toml", toml_text(SWEEP))
    swept = tmp_path / "swept"
    (swept / "groups").mkdir(parents=True)
    monkeypatch.setattr(cli.os, "access", lambda p, m: real(p, m) and Path(p).name != "groups")
    assert "groups" in run_cli(capsys, "sweep", str(sweep_file), "--out", str(swept))
    assert not (out / "experiment.json").exists() and not (swept / "experiment.json").exists()


def test_ray_missing_is_refused_before_out_is_claimed(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli.sweeps, "ray_installed", lambda: False)
    sweep_file = write(tmp_path, "s.toml", toml_text(SWEEP))
    out = tmp_path / "o"
    message = run_cli(capsys, "sweep", str(sweep_file), "--ray", "local", "--out", str(out))
    assert "pip install" in message and not out.exists()


def test_explain_budget_and_directories(tmp_path, capsys):
    results = tmp_path / "r"
    results.mkdir()
    (results / "config.toml").write_text(toml_text(SPECTRAL))
    # a half-written directory is named before any budget is weighed (its config is not trusted)
    message = run_cli(capsys, "explain", str(results), "--budget", str(10**12))
    assert "experiment.json is missing" in message and "deeplinear run" in message
    assert "not a results directory" in run_cli(capsys, "explain", str(tmp_path / "none"))
    assert "not a results directory" in run_cli(capsys, "report", str(tmp_path / "none"))
    assert "--target" in run_cli(capsys, "explain", str(results), "--target", "inf")
    assert "--max-hours" in run_cli(capsys, "run", "x.toml", "--max-hours", "nan")


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda d: write(d, "latin1.toml", b"steps = 1\n# \xff\n"), ["UTF-8"]),
        (lambda d: (os.mkfifo(d / "fifo.toml"), d / "fifo.toml")[1], ["regular file"]),
        (lambda d: Path("/dev/zero"), ["regular file"]),
        (
            lambda d: write(d, "wide.toml", toml_text(setting(UNSEEDED, "model.hidden", [10**6]))),
            ["GiB", "--max-memory"],
        ),
    ],
    ids=["non-utf8", "fifo", "dev-zero", "too-wide"],
)
def test_cli_processes_exit_2_with_one_line(tmp_path, make, words):
    path = make(tmp_path)
    out = tmp_path / "out"
    for command in ("run", "sweep"):
        result = subprocess.run(
            [sys.executable, "-m", "deeplinear.cli", command, str(path), "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        for word in words:
            assert word in lines[0], lines[0]
        assert not out.exists()  # refused before --out was claimed
        CORPUS["cli"].add(key_of([command, str(path.name), words]))


def test_zz_corpus_size(capsys):
    """How many distinct bad inputs this session refused (≥ 500 with DEEPLINEAR_FUZZ=1)."""
    total = sum(len(keys) for keys in CORPUS.values())
    parts = ", ".join(f"{len(keys)} {kind}" for kind, keys in CORPUS.items())
    with capsys.disabled():
        print(f"\nbad-input corpus: {total} distinct inputs refused ({parts})")
    if FUZZ and all(CORPUS.values()):
        assert total >= FUZZ_TARGET, total
    assert datetime  # (st.dates() values are datetime.date)

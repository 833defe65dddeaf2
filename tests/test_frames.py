"""``deeplinear.load`` (``store/frames.py``): every results directory kind as pandas, polars and
Arrow frames, with its provenance; the same values ``read_table``/``group_files.read`` give."""

import subprocess
import sys
import tomllib

import numpy as np
import pyarrow as pa
import pytest

from deeplinear import sweep
from deeplinear.errors import UsageError
from deeplinear.experiment import config, execution
from deeplinear.store import frames
from deeplinear.store import groups as group_files
from deeplinear.store.results import _to_numpy, read_table

pd = pytest.importorskip("pandas")
pl = pytest.importorskip("polars")

RUN = """
name = "tiny"
seed = 3
steps = 20
record_every = 5
checkpoints = 0
[problem]
kind = "spectral"
input = 4
output = 5
rank = 2
samples = "population"
[model]
hidden = [2]
[init]
kind = "scaled_gaussian"
[[methods]]
name = "gd"
learning_rates = [0.01, 0.1]
[[methods]]
name = "lm"
learning_rates = [1.0]
steps = 5
"""
SWEEP = RUN.replace("seed = 3", "seeds = 1").replace(
    "[[methods]]", '[axes]\n"problem.condition_number" = [10.0, 100.0]\n[[methods]]', 1
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("frames") / "run"
    execution.execute(config.parse(tomllib.loads(RUN), source=RUN), out)
    return out


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("frames") / "sweep"
    sweep.run(sweep.parse(tomllib.loads(SWEEP), source=SWEEP), out)
    return out


@pytest.fixture(scope="module")
def reproduce_dir(tmp_path_factory):
    """A real ``reproduce`` output (table, metadata, figures), its run file shortened."""
    from deeplinear.notebook2017 import experiment
    from deeplinear.notebook2017 import reproduce as module

    def short(seed, rcond):
        data = experiment.run_file(seed, rcond)
        data["methods"] = data["methods"][:1]  # one compiled program: the test stays fast
        data["methods"][0]["steps"] = 10
        return data

    out = tmp_path_factory.mktemp("frames") / "reproduce"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "run_file", short)
        module.reproduce(0, out)
    return out


def assert_same_values(expected: pa.Table, frame):
    """Every column of ``expected`` equals the frame's, NaN = NaN (list columns row by row)."""
    if isinstance(frame, pd.DataFrame):  # back to Arrow with the table's types
        types = {field.name: field.type for field in expected.schema}
        got = pa.table({n: pa.array(frame[n].tolist(), types.get(n)) for n in frame.columns})
    elif isinstance(frame, pl.DataFrame):
        got = frame.to_arrow()
    else:
        got = frame
    assert got.column_names[: expected.num_columns] == expected.column_names
    assert got.num_rows == expected.num_rows
    for name in expected.column_names:
        np.testing.assert_array_equal(
            _to_numpy(
                got.column(name).cast(expected.schema.field(name).type)
            ),  # polars: large_list
            _to_numpy(expected.column(name)),
            err_msg=name,
        )


def test_a_run_as_pandas_polars_and_arrow(run_dir):
    expected, metadata = read_table(run_dir / "curves.parquet")
    assert frames.kind(run_dir) == "run"
    df = frames.load(run_dir)
    assert isinstance(df, pd.DataFrame) and len(df) == expected.num_rows
    assert df.attrs["deeplinear"] == metadata == frames.provenance(run_dir)
    assert metadata["experiment"]["experiment"] == "run" and metadata["problem"]["rank"] == 2
    assert {"versions", "git_revision", "problem", "experiment"} <= set(metadata)
    assert_same_values(expected, df)
    assert_same_values(expected, frames.load(run_dir, frame="polars"))
    arrow = frames.load(run_dir, frame="arrow")
    assert_same_values(expected, arrow)
    # the Arrow table keeps the provenance in its schema metadata
    assert arrow.schema.metadata[b"deeplinear"] == expected.schema.metadata[b"deeplinear"]
    assert set(df["method"]) == {"gd", "lm"} and df["damping"].notna().any()


def test_a_sweep_as_pandas_polars_and_arrow(sweep_dir):
    expected = group_files.read(sweep_dir)
    assert frames.kind(sweep_dir) == "sweep"
    df = frames.load(sweep_dir)
    assert_same_values(expected, df)
    assert_same_values(expected, frames.load(sweep_dir, frame="polars"))
    assert_same_values(expected, frames.load(sweep_dir, frame="arrow"))
    meta = df.attrs["deeplinear"]
    assert meta["name"] == "tiny" and meta["experiment"]["experiment"] == "sweep"
    assert set(meta["groups"]) == set(df["group"]) and len(meta["groups"]) == 4
    assert meta["versions"]["pyarrow"] == pa.__version__
    assert sorted(set(df["axis:problem.condition_number"])) == ["10", "100"]


def test_a_reproduction_as_pandas(reproduce_dir):
    expected, _ = read_table(reproduce_dir / "curves.parquet")
    assert frames.kind(reproduce_dir) == "reproduce"
    df = frames.load(reproduce_dir)
    assert_same_values(expected, df)
    assert df.attrs["deeplinear"]["experiment"] == {
        "experiment": "reproduce",
        "seed": 0,
        "rcond": "modern",
    }
    assert df["run_id"].str.startswith("seed0/").all() and df["step"].max() == 10


def test_a_directory_of_no_known_kind_is_named(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match=f"{tmp_path} is not a results directory: expected"):
        frames.load(tmp_path)
    with pytest.raises(UsageError, match="is not a directory"):
        frames.load(tmp_path / "absent")
    with pytest.raises(UsageError, match="frame must be one of pandas, polars, arrow"):
        frames.load(tmp_path, frame="excel")


def test_a_damaged_run_table_is_refused(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    with open(copy / "curves.parquet", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\0\0\0\0")
    with pytest.raises(UsageError, match="does not match its checksum"):
        frames.load(copy)


def test_a_missing_frame_library_says_how_to_install_it(tmp_path):
    code = (
        "import sys; sys.modules['polars'] = None; from deeplinear.store.frames import load\n"
        "try:\n"
        f"    load({str(tmp_path)!r}, frame='polars')\n"
        "except Exception as error:\n"
        "    print(type(error).__name__, error)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "UsageError frame='polars' needs polars: pip install 'deeplinear[frames]'"
    )


def test_loading_does_not_import_jax(run_dir, sweep_dir):
    code = (
        "import sys; from deeplinear.store.frames import load\n"
        f"assert len(load({str(run_dir)!r}, frame='arrow')) > 0\n"
        f"assert len(load({str(sweep_dir)!r}, frame='polars')) > 0\n"
        "assert 'jax' not in sys.modules, sorted(m for m in sys.modules if 'jax' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

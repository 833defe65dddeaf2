import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from deeplinear.store.results import (
    Curve,
    RunInfo,
    batch_table,
    curves_table,
    provenance,
    read_table,
    write_table,
)


def curve(n):
    steps = np.arange(n)
    return Curve(steps, 1.0 / (1 + steps), steps * 0.5, steps * np.nan, steps * 0.01)


def test_parquet_round_trip_with_provenance(tmp_path):
    runs = [
        (
            RunInfo(run_id="a", run="GD step=1e-05", method="gd", learning_rate=1e-5, seed=0),
            curve(4),
        ),
        (
            RunInfo(run_id="b", run="LM step=0.2", method="seed-lm", learning_rate=0.2, seed=0),
            curve(3),
        ),
    ]
    table = curves_table(runs)
    path = tmp_path / "curves.parquet"
    write_table(table, path, provenance(["deeplinear", "x"], seed=0))
    back, meta = read_table(path)
    assert back.num_rows == 7
    for column in ("run_id", "run", "method", "learning_rate", "seed", "step", "loss", "grad_norm"):
        assert column in back.column_names
    assert back.column("run_id").to_pylist() == ["a"] * 4 + ["b"] * 3
    assert meta["command"] == ["deeplinear", "x"] and meta["seed"] == 0
    assert meta["versions"]["jax"] and meta["versions"]["numpy"]
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_run_ids_must_be_unique():
    info = RunInfo(run_id="same", run="x", method="gd", learning_rate=1.0, seed=0)
    with pytest.raises(ValueError, match="unique"):
        curves_table([(info, curve(2)), (info, curve(2))])


def test_run_info_takes_keywords_only():
    with pytest.raises(TypeError):
        RunInfo("a", "x", "gd", 1.0, 0)


def test_batch_table_fills_the_batch_timing_and_size():
    infos = [
        RunInfo(run_id=f"r{i}", run=f"r{i}", method="m", learning_rate=10.0**-i, seed=3)
        for i in range(3)
    ]
    result = SimpleNamespace(curves=[curve(2), curve(4), curve(1)], compile_seconds=1.5)
    table = batch_table(infos, result)
    assert table.column("run_id").to_pylist() == ["r0"] * 2 + ["r1"] * 4 + ["r2"]
    assert set(table.column("compile_seconds").to_pylist()) == {1.5}
    assert set(table.column("batch_size").to_pylist()) == {3}
    np.testing.assert_array_equal(table.column("loss").to_numpy()[2:6], 1.0 / (1 + np.arange(4)))
    with pytest.raises(ValueError, match="2 run identities for 3 curves"):
        batch_table(infos[:2], result)


def test_reading_results_does_not_import_jax(tmp_path):
    info = RunInfo(run_id="a", run="a", method="m", learning_rate=1.0, seed=0)
    path = tmp_path / "c.parquet"
    write_table(curves_table([(info, curve(3))]), path, {"seed": 0})
    code = (
        "import sys, deeplinear.store.results as r, deeplinear.store.frames, deeplinear.sweep\n"
        f"table, metadata = r.read_table({str(path)!r})\n"
        "assert table.num_rows == 3 and metadata == {'seed': 0}\n"
        "assert list(r.run_series(table)['a']['step']) == [0, 1, 2]\n"
        "assert 'jax' not in sys.modules, 'reading a table imported jax'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_runner_re_exports_curve():
    from deeplinear.loop import runner

    assert runner.Curve is Curve

import numpy as np
import pytest

from deeplinear.results import RunInfo, curves_table, provenance, read_table, write_table
from deeplinear.runner import Curve


def curve(n):
    steps = np.arange(n)
    return Curve(steps, 1.0 / (1 + steps), steps * 0.5, steps * np.nan, steps * 0.01)


def test_parquet_round_trip_with_provenance(tmp_path):
    runs = [
        (RunInfo("a", "GD step=1e-05", "gd", 1e-5, 0, batch_size=2), curve(4)),
        (RunInfo("b", "LM step=0.2", "seed-lm", 0.2, 0), curve(3)),
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
    info = RunInfo("same", "x", "gd", 1.0, 0)
    with pytest.raises(ValueError, match="unique"):
        curves_table([(info, curve(2)), (info, curve(2))])

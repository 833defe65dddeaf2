"""One JSON encoding (``store.jsonfiles``): non-finite numbers are ``null``, every file is strict
JSON, and a stray non-finite value that bypasses ``jsonable`` fails loudly."""

import json
import math
import tomllib

import numpy as np
import pytest

from deeplinear.experiment import config, execution
from deeplinear.explain import explain
from deeplinear.store.jsonfiles import dumps, jsonable
from deeplinear.verdict import Verdict


def strict(text: str):
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from leaves(v)
    else:
        yield value


def test_non_finite_numbers_are_null_and_the_text_is_strict_json():
    record = {
        "eta_steps": [12, math.inf],  # an infinite ETA
        "excess_loss": float("nan"),
        "hessian_min": np.float64(-np.inf),
        "grad_norm": np.float32(0.5),
        "step": np.int64(7),
        "reachable": np.bool_(True),
        "spectrum": np.array([1.0, np.nan, np.inf]),
        "point": ("a", 1e-3),
        "_private": 1,
    }
    held = strict(dumps({"verdicts": [record]}, indent=2))["verdicts"][0]
    assert held["eta_steps"] == [12, None] and held["excess_loss"] is None
    assert held["hessian_min"] is None and held["spectrum"] == [1.0, None, None]
    assert held["grad_norm"] == 0.5 and held["step"] == 7 and held["reachable"] is True
    assert held["point"] == ["a", 1e-3] and held["_private"] == 1
    assert "_private" not in jsonable(record, private=False)
    with pytest.raises(ValueError):  # what bypasses jsonable fails loudly, never Infinity
        json.dumps({"x": math.inf}, allow_nan=False, default=jsonable)


RUN = """
seed = 0
record_every = 1
[problem]
kind = "spectral"
input = 5
output = 6
rank = 3
samples = "population"
[model]
hidden = [3]
[[methods]]
name = "gd"
learning_rates = [1e-4]
steps = 5
"""


def test_verdicts_json_with_an_infinite_eta_and_a_nan_is_strict(tmp_path, monkeypatch):
    """explain's own writer: a verdict whose ETA is infinite and whose excess is NaN."""
    recorded = Verdict.record

    def record(self):
        return recorded(self) | {"eta_steps": [3.0, math.inf], "excess_loss": math.nan}

    monkeypatch.setattr(Verdict, "record", record)
    out = tmp_path / "run"
    execution.execute(config.parse(tomllib.loads(RUN), source=RUN), out)
    explain(out, target=1e-12, budget_steps=0, figures=False)
    held = strict((out / "verdicts.json").read_text())
    (verdict,) = held["verdicts"]
    assert verdict["eta_steps"] == [3.0, None] and verdict["excess_loss"] is None
    assert not any(isinstance(v, str) and v in ("inf", "-inf", "nan") for v in leaves(held))


def test_a_diverged_runs_files_are_strict_json_too(tmp_path):
    """A run that diverges has a non-finite final loss: curves.parquet's metadata (its
    ``final_loss``) and experiment.json are strict JSON, the loss as null."""
    import pyarrow.parquet as pq

    from deeplinear.store.results import METADATA_KEY

    text = RUN.replace("learning_rates = [1e-4]", "learning_rates = [1e-4, 1e3]").replace(
        "steps = 5", "steps = 40"
    )
    out = tmp_path / "run"
    execution.execute(config.parse(tomllib.loads(text), source=text), out)
    raw = pq.read_schema(out / "curves.parquet").metadata[METADATA_KEY].decode()
    finals = strict(raw)["final_loss"]
    values = [entry["value"] for entry in finals.values()]
    assert None in values and any(isinstance(v, float) and v > 0 for v in values)
    strict((out / "experiment.json").read_text())

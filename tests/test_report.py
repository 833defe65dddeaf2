"""The report's numbers and files: bootstrap intervals against a direct NumPy computation, grid
edges, axis order, one colour per method, the summary table/CSV/JSON, verdicts.json shown."""

import csv
import io
import json
import math
import os
import re
import tomllib

import numpy as np
import pytest

from deeplinear import sweep
from deeplinear.report import confidence
from deeplinear.report.colours import PALETTE, method_colours
from deeplinear.report.summary import axis_order
from deeplinear.report.sweep_report import write_report
from deeplinear.store import groups as group_files
from deeplinear.sweep import tuning
from tiny_sweeps import spectral_sweep

SWEEP = spectral_sweep(
    seeds=3,
    targets="1e-3, 1e-6",
    steps=150,
    conditions="100.0, 10.0",
    name="tiny conditioning sweep",
)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sweep")
    sweep.run(sweep.parse(tomllib.loads(SWEEP), source=SWEEP), directory)
    return directory


def test_bootstrap_interval_matches_numpy_and_contains_the_median():
    values = np.array([3.0, 10.0, 4.0, 7.0, 5.5, 100.0, 6.0])
    median, low, high = confidence.median_interval(values)
    rng = np.random.default_rng(confidence.SEED)  # the direct computation, one resample a row
    medians = []
    for _ in range(confidence.RESAMPLES):
        medians.append(np.median(values[rng.integers(0, values.size, size=values.size)]))
    medians = np.sort(medians)
    k = int(np.floor(0.025 * (confidence.RESAMPLES - 1)))  # "lower": the order statistic below
    j = int(np.ceil(0.975 * (confidence.RESAMPLES - 1)))  # "higher": the one above
    assert median == np.median(values) == 6.0
    assert (low, high) == (medians[k], medians[j])
    assert low <= median <= high and low < high
    assert low >= 3.0 and high <= 100.0  # a bootstrap median is one of the data or a midpoint


def test_bootstrap_keeps_unreached_targets_infinite():
    median, low, high = confidence.median_interval([5.0, np.inf, np.inf])
    assert median == math.inf and high == math.inf and low == 5.0
    assert confidence.median_interval([2.0]) == (2.0, 2.0, 2.0)


def test_axis_order_is_numeric_with_population_last():
    assert axis_order([1000, "population", 100, 10000.0]) == [100, 1000, 10000.0, "population"]
    widths = [[10], [2], [100, 100], [20], [5], [100]]  # not "[10]" < "[2]" as text
    assert axis_order(widths) == [[2], [5], [10], [20], [100], [100, 100]]


def test_a_method_keeps_its_colour_whatever_else_is_in_the_sweep():
    first = method_colours(["gd", "adam", "lm"])
    assert first == {"gd": PALETTE[0], "adam": PALETTE[1], "lm": PALETTE[2]}
    # the colour follows the name, not the order or the company
    assert method_colours(["lm", "scaled-gd", "gd"])["gd"] == PALETTE[0]
    assert method_colours(["mine", "gd"])["mine"] == method_colours(["mine", "als"])["mine"]
    assert method_colours(["b", "a"]) == method_colours(["a", "b"])
    # two names that hash to one entry: both shown, distinct, whatever their order
    names = [f"m{i}" for i in range(20)]
    assert len(set(method_colours(names).values())) == 20
    assert method_colours(names) == method_colours(names[::-1])


def test_report_writes_summary_files_table_and_page(swept):
    out = io.StringIO()
    page = write_report(swept, out=out).read_text()
    table = out.getvalue()
    document = json.loads((swept / "summary.json").read_text())
    rows = document["rows"]
    assert document["name"] == "tiny conditioning sweep" and len(rows) == 4
    # axis points sorted numerically (κ = 10 before 100, though the file lists 100 first)
    assert [r["axis_point"] for r in rows] == ["condition_number=10"] * 2 + [
        "condition_number=100"
    ] * 2
    # the JSON's numbers are the report's own analysis, recomputed here from the table
    best = {b.group: b for b in tuning.best_settings(group_files.read(swept), 1e-3)}
    for row in rows:
        entry = best[row["group"]]
        assert row["learning_rate"] == entry.learning_rate and row["edge"] == entry.edge
        finals = [r["final"] for r in entry.runs]
        assert row["final_loss"]["median"] == pytest.approx(np.median(finals), rel=1e-15)
        low, high = row["final_loss"]["low"], row["final_loss"]["high"]
        assert min(finals) <= low <= row["final_loss"]["median"] <= high <= max(finals)
        steps = [r["steps@0.001"] for r in entry.runs]
        cell = row["targets"][0]
        assert cell["solved"] == sum(np.isfinite(steps))
        if cell["steps"]["median"] is not None:
            assert cell["steps"]["median"] == np.median(steps)
    with open(swept / "summary.csv", newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert [line["method"] for line in lines] == [r["method"] for r in rows]
    assert float(lines[0]["final_loss"]) == rows[0]["final_loss"]["median"]
    # the terminal table: one line per configuration, the edge flag where the best is an edge
    assert "final loss" in table.splitlines()[0] and len(table.splitlines()) >= 2 + 4
    for row in rows:
        if row["edge"] in ("low", "high"):
            assert f"(edge: {row['edge']})" in table
    # the page: title, provenance, no external scripts, one chart per figure, a shared palette
    assert "<title>tiny conditioning sweep</title>" in page
    assert "git revision" in page and "versions" in page and "hardware" in page
    assert f"× {os.cpu_count()} cores" in page  # the machine, not only the platform string
    head, rest = page.split("<script>", 1)
    outside = head + rest.split("</script>", 1)[1]  # all but the inlined vega-embed bundle
    assert "<script src" not in outside and "<link" not in outside
    assert not re.search(r"(src|href)=['\"]?https?:", outside)
    charts = json.loads(page.split("const CHARTS=")[1].split(";const")[0].split(";\n")[0])
    assert [c["id"] for c in charts] == ["curves", "axis0", "profile0", "profile1"]
    ranges = {json.dumps(s["encoding"]["color"]["scale"]["range"]) for s in _unit_specs(charts)}
    colours = method_colours(["gd", "lm"])
    assert ranges == {json.dumps([colours[e["method"]] for e in document["ranking"]])}
    assert document["colours"] == {e["method"]: colours[e["method"]] for e in document["ranking"]}
    assert [line["colour"] for line in lines] == [colours[r["method"]] for r in rows]
    figures = json.loads((swept / "figures.json").read_text())
    names = {f["name"] for f in figures["figures"]}
    assert names == {"curves", "profile-0.001", "profile-1e-06", "axis-problem.condition_number"}
    for figure in figures["figures"]:
        assert figure["caption"] and figure["files"] == [f"{figure['name']}.{x}" for x in
                                                         ("svg", "png", "pdf")]  # fmt: skip
        for name in figure["files"]:
            assert (swept / name).stat().st_size > 0 and name in page
        pdf = (swept / f"{figure['name']}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF") and b"/Title" in pdf and b"/Subject" in pdf  # metadata
        if figure["name"] == "curves":  # an ASCII title is stored as it is (others UTF-16)
            assert b"(Loss curves)" in pdf
        svg = (swept / f"{figure['name']}.svg").read_text()
        assert f"<dc:title>{figure['title']}</dc:title>" in svg
    # ranked within each point by the sweep's rule (time to 1e-3, then the final loss)
    for point in {r["axis_point"] for r in rows}:
        here = [r for r in rows if r["axis_point"] == point]
        keys = [tuning.score(best[r["group"]].runs, "time_to_target", 1e-3) for r in here]
        assert [r["rank"] for r in here] == [1 + sum(k < key for k in keys) for key in keys]
        assert keys == sorted(keys)
    assert table.splitlines()[0].startswith("rank") and "★1" in table


def _unit_specs(charts):
    """Every layer that encodes colour, in every chart and variant."""
    stack = [v for c in charts for v in (c.get("variants") or {"": c["spec"]}).values()]
    while stack:
        spec = stack.pop()
        if isinstance(spec, dict):
            if "color" in spec.get("encoding", {}):
                yield spec
            stack += [v for v in spec.values() if isinstance(v, dict | list)]
        elif isinstance(spec, list):
            stack += spec


def test_the_page_shows_explain_verdicts_beside_the_best_setting(swept):
    write_report(swept)
    rows = json.loads((swept / "summary.json").read_text())["rows"]
    row = rows[0]
    verdict = {
        "group": row["group"], "axis": row["point"], "method": row["method"],
        "learning_rate": row["learning_rate"], "seed": 0, "kind": "converging_linearly",
        "headline": "converging linearly: 1e-6 in ~40 more steps", "evidence": "rate 0.7 per step",
    }  # fmt: skip
    from deeplinear.store.groups import read_groups

    judged = {row["group"]: read_groups(swept)[1][row["group"]]["sha256"]}
    # verdicts of another file of the group (run again since): not shown as this one's
    stale = {"verdicts": [verdict], "judged": {row["group"]: "0" * 64}}
    for held in (stale, {"verdicts": [verdict]}, {"verdicts": [verdict], "judged": judged}):
        (swept / "verdicts.json").write_text(json.dumps(held))
        try:
            page = write_report(swept).read_text()
        finally:
            (swept / "verdicts.json").unlink()
        if held is not stale and "judged" in held:
            break
        assert "rate 0.7 per step" not in page
    assert "converging linearly: 1e-6 in ~40 more steps" in page
    assert "rate 0.7 per step" in page and "converging_linearly ×1" in page
    # each count says its horizon: solved within the recorded steps, verdicts once continued
    steps = row["recorded_steps"]
    assert steps > 0 and f"/{row['seeds']} within {steps:,} steps" in page
    assert "continued by explain: converging_linearly ×1" in page
    unexplained = write_report(swept).read_text()
    assert f"within {steps:,} steps: " in unexplained


def test_the_verdict_column_counts_a_run_that_rises_back_as_not_reached():
    """The summary counts a target reached only if the loss stays below it; the verdict column
    must agree: a run that touches 1e-6 and rises back is judged, not called "reached"."""
    import pyarrow as pa

    from deeplinear.report.sweep_report import _verdicts
    from deeplinear.store.results import run_series
    from deeplinear.sweep.tuning import run_summaries

    stays = [1.0, 1e-3, 1e-7, 1e-8, 1e-9]
    rises = [1.0, 1e-3, 1e-7, 1e-2, 1e-1]  # touches the target at step 2, then leaves it
    rows = {"run_id": [], "group": [], "method": [], "learning_rate": [], "seed": [], "step": [],
            "loss": [], "seconds": [], "batch_size": []}  # fmt: skip
    for seed, loss in enumerate((stays, rises)):
        for step, value in enumerate(loss):
            for key, v in zip(rows, (f"r{seed}", "g", "gd", 0.1, seed, step, value, 0.1 * step, 2)):
                rows[key].append(v)
    table = pa.table(rows)
    summaries = run_summaries(table, [1e-6])
    assert [np.isfinite(r["steps@1e-06"]) for r in summaries] == [True, False]
    kinds = _verdicts(run_series(table), summaries, {}, 1e-6)
    assert kinds["reached 1e-06"] == 1 and any("not judged" in k for k in kinds)  # no floor


def test_the_extension_note_names_the_rate_that_diverged():
    """'stopped: diverged' said the added rates diverged where a rate of the sweep file's grid
    had: the note names the neighbour that bounds the best and where it came from."""
    from deeplinear.report.table import _extension

    record = {"added": [0.05, 0.025], "side": "low", "stopped": "diverged"}
    row = {"learning_rate": 0.4, "grid": [0.025, 0.05, 0.1, 0.2, 0.4, 0.8], "excluded": [0.8]}
    note = _extension(row | {"extension": record})
    assert "stopped: stability limit: η = 0.8 (in the grid) diverges" in note
    assert "+0.05, 0.025" in note
    added_high = {"added": [0.8, 1.6], "side": "high", "stopped": "diverged"}
    row = {"learning_rate": 0.4, "grid": [0.1, 0.2, 0.4, 0.8, 1.6], "excluded": [0.8, 1.6]}
    assert "η = 0.8 (added) diverges" in _extension(row | {"extension": added_high})
    interior = {"added": [0.8], "side": "high", "stopped": "interior"}
    assert _extension(row | {"extension": interior}).endswith("stopped: interior")

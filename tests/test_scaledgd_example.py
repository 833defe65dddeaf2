"""The ScaledGD examples (issue #10): the files parse at the paper's sizes, and a scaled-down
completion case (n = 200, r = 5, p = 0.3, κ ∈ {1, 20}) shows the headline through the lab's own
sweep machinery: ScaledGD's iteration count to 1e-12 does not depend on κ (within 10 %) and is
the NumPy port's on the same problem arrays (±1); GD at κ = 20 needs more than 3× as many."""

import json
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_scaledgd as bench
import scaledgd_reference as ref
from deeplinear import sweep
from deeplinear.experiment import execution
from deeplinear.loop import runner
from deeplinear.methods import make_method
from deeplinear.report.sweep_report import write_report

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
N, R, P, TOL, SEED = 200, 5, 0.3, 1e-12, 0


def _groups(sw):
    """{(κ, method name): group}."""
    return {(dict(g.point)["problem.condition_number"], g.method.name): g for g in sw.groups}


@pytest.mark.parametrize(
    "name, kind, n, rate",
    [("scaledgd_completion.toml", "completion", 1000, 0.5 / (2 * 0.2)),
     ("scaledgd_sensing.toml", "sensing", 100, 0.5 / 2)],
)  # fmt: skip
def test_example_files_parse_at_the_papers_sizes(name, kind, n, rate):
    sw = sweep.load(EXAMPLES / name)
    problem = sw.base["problem"]
    assert problem["kind"] == kind
    assert problem["rows"] == problem["cols"] == n and problem["rank"] == 10
    assert problem["singular_values"] == "linear" and problem["vectors"] == "rademacher"
    assert problem.get("largest_singular_value", 1.0) == 1.0
    if kind == "completion":
        assert problem["probability"] == 0.2
    else:
        assert problem["measurements"] == 5 * n * 10  # m = 5 n r
    assert sw.axes == {"problem.condition_number": [1, 5, 10, 20]}
    assert sw.recovery_targets == (1e-14,)  # the report counts steps to the paper's stop
    assert sw.base["init"]["kind"] == "spectral_estimate"
    assert sw.base["record_every"] == 1  # every step: the count is exact
    groups = _groups(sw)
    assert set(groups) == {(k, m) for k in (1, 5, 10, 20) for m in ("scaled-gd", "gd")}
    for (kappa, _), group in groups.items():
        assert group.method.learning_rates == (pytest.approx(rate),)
        config = sw.run_config(group, SEED)  # each run file checked as `run` checks it
        assert config.problem["condition_number"] == kappa
    assert groups[(20, "gd")].method.steps == 1000  # GD's 1000 iterations (the paper's cap)
    # the recovery error is a column of every group file
    assert "recovery_error" in sweep.group_columns()


def _small_data() -> dict:
    data = tomllib.loads((EXAMPLES / "scaledgd_completion.toml").read_text())
    data["problem"].update(rows=N, cols=N, rank=R, probability=P)
    data["model"]["hidden"] = [R]
    data["axes"] = {"problem.condition_number": [1, 20]}
    for table in data["methods"]:
        table["learning_rates"] = [0.5 / (2 * P)]  # the paper's η = 0.5
    return data


def _small_sweep():
    return sweep.parse(_small_data(), base_dir=EXAMPLES)


@pytest.fixture(scope="module")
def counts():
    """Iterations to TOL: the lab's ScaledGD (recovery_error column) and the port's, per κ,
    from the same problem arrays and initial factors; GD's error after 3× ScaledGD's count."""
    sw = _small_sweep()
    groups = _groups(sw)
    setups, ports = {}, {}
    for kappa in (1, 20):
        config = sw.run_config(groups[(kappa, "scaled-gd")], SEED)
        setups[kappa] = setup = execution.build(config)
        problem = bench.reference_problem(setup.problem, P)
        init = (np.array(setup.weights[0]), np.array(setup.weights[1]).T)
        eta = bench.paper_step(setup.problem, 0.5 / (2 * P), P)
        assert eta == pytest.approx(0.5)
        errors = ref.run(problem, R, "scaledgd", eta, 400, TOL, init)
        ports[kappa] = ref.iterations_to(errors, TOL)
        assert ports[kappa] is not None
    steps = max(ports.values()) + 3  # one compiled program for both κ
    out = {"port": ports, "lab": {}}
    for kappa, setup in setups.items():
        result = runner.run(
            make_method("scaled-gd"), setup.objective, setup.weights, [0.5 / (2 * P)], steps,
            probe=setup.probe,
        )  # fmt: skip
        out["lab"][kappa] = bench.first_below(result.curves[0].extras["recovery_error"], TOL)
    setup = setups[20]
    cap = 3 * out["lab"][20]
    gd = runner.run(
        make_method("gd"), setup.objective, setup.weights, [0.5 / (2 * P)], cap,
        record_every=cap, probe=setup.probe,
    )  # fmt: skip
    out["gd_error_after_cap"] = np.asarray(gd.curves[0].extras["recovery_error"])
    return out


def test_lab_scaledgd_counts_are_the_ports(counts):
    for kappa in (1, 20):
        lab, port = counts["lab"][kappa], counts["port"][kappa]
        assert lab is not None, f"lab ScaledGD did not reach {TOL} at kappa={kappa}"
        assert abs(lab - port) <= 1, (kappa, lab, port)


def test_scaledgd_count_does_not_depend_on_kappa(counts):
    c1, c20 = counts["lab"][1], counts["lab"][20]
    assert abs(c20 - c1) < 0.1 * min(c1, c20), (c1, c20)


def test_gd_needs_more_than_three_times_the_iterations_at_kappa_20(counts):
    errors = counts["gd_error_after_cap"]
    assert errors.size == 2 and np.all(np.isfinite(errors))
    assert errors[-1] < errors[0]  # GD converges, only slower
    assert errors[-1] >= TOL  # not there after 3× ScaledGD's count


def test_the_sweeps_report_counts_the_labs_steps_to_the_papers_stop(counts, tmp_path):
    """The small sweep run as a sweep: its report's "steps to ‖W − M‖/‖M‖ ≤ 1e-12" for
    ScaledGD is the count read off the runner's recovery column above (every step recorded)."""
    steps = max(counts["lab"].values()) + 3
    text = (EXAMPLES / "scaledgd_completion.toml").read_text()
    for old, new in [
        ("recovery_targets = [1e-14]", f"recovery_targets = [{TOL!r}]"),
        ("[1, 5, 10, 20]", "[1, 20]"), ("rows = 1000", f"rows = {N}"),
        ("cols = 1000", f"cols = {N}"), ("rank = 10", f"rank = {R}"),
        ("probability = 0.2", f"probability = {P}"), ("hidden = [10]", f"hidden = [{R}]"),
        ("learning_rates = [1.25]", f"learning_rates = [{0.5 / (2 * P)!r}]"),
        ("steps = 200", f"steps = {steps}"), ("steps = 1000", f"steps = {steps}"),
    ]:  # fmt: skip
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "small.toml"
    path.write_text(text)
    small = sweep.load(path)
    assert small.groups[0].method.learning_rates == (pytest.approx(0.5 / (2 * P)),)
    sweep.run(small, tmp_path / "sweep")
    write_report(tmp_path / "sweep")
    rows = json.loads((tmp_path / "sweep" / "summary.json").read_text())["rows"]
    rows = [row for row in rows if row["method"] == "scaled-gd"]
    assert len(rows) == 2  # κ = 1 and 20
    for row in rows:
        (cell,) = row["recovery_targets"]
        kappa = int(float(row["point"]["problem.condition_number"]))  # stored as its text
        assert cell["target"] == TOL and cell["solved"] == 1
        assert cell["steps"]["median"] == counts["lab"][kappa]

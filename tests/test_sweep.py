"""Sweeps: grouping, atomic groups, resume after kill -9, determinism, report, bad input."""

import copy
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deeplinear import sweep
from deeplinear.errors import UsageError
from deeplinear.experiment.execution import build
from deeplinear.report.sweep_report import _floors, write_report
from deeplinear.store import groups as group_files
from deeplinear.sweep import grid_extension
from result_rows import assert_same_rows

SWEEP = """
seeds = 2
targets = [1e-6]
steps = 300
record_every = 10
[problem]
kind = "spectral"
input = 5
output = 6
rank = 3
samples = "population"
[model]
hidden = [3]
[init]
kind = "scaled_gaussian"
[axes]
"problem.condition_number" = [10.0, 100.0]
[[methods]]
name = "gd"
learning_rates = {min = 0.01, max = 0.1, num = 3, scaling = "log"}
[[methods]]
name = "lm"
learning_rates = [1.0]
steps = 20
"""


def plan(text=SWEEP):
    return sweep.parse(tomllib.loads(text), source=text)


def test_groups_and_rows(tmp_path):
    s = plan()
    assert len(s.groups) == 4  # 2 axis points × 2 methods
    files = sweep.run(s, tmp_path)
    assert all(f.exists() for f in files)
    table = group_files.read(tmp_path)
    runs = set(table.column("run_id").to_pylist())
    assert len(runs) == 2 * (2 * 3 + 2 * 1)  # points × (seeds × rates), each id unique
    assert "axis:problem.condition_number" in table.column_names
    report = write_report(tmp_path)
    text = report.read_text()
    assert "Performance profile" in text and "const CHARTS=" in text  # interactive, inline
    assert (tmp_path / "profile-1e-06.png").exists() and (tmp_path / "summary.json").exists()
    # a table row per method (with Vega inlined, "lm" and "gd" are in any page)
    assert "<td>lm</td>" in text and "<td>gd</td>" in text


def test_resume_skips_finished_groups_and_is_deterministic(tmp_path):
    s = plan()
    sweep.run(s, tmp_path / "a")
    first = sweep.group_file(tmp_path / "a", s.groups[0])
    stamp = first.stat().st_mtime_ns
    sweep.run(s, tmp_path / "a")  # nothing to do
    assert first.stat().st_mtime_ns == stamp
    sweep.run(s, tmp_path / "b")
    assert_same_rows(group_files.read(tmp_path / "a"), group_files.read(tmp_path / "b"))


def slow_sweep(tmp_path):
    """A sweep long enough to interrupt: (its file, its output folder, the command to run it)."""
    path, out = tmp_path / "sweep.toml", tmp_path / "out"
    path.write_text(SWEEP.replace("seeds = 2", "seeds = 6").replace("steps = 300", "steps = 3000"))
    return (
        path,
        out,
        [sys.executable, "-m", "deeplinear.cli", "sweep", str(path), "--out", str(out)],
    )


def start_until_first_group(command):
    """Start a sweep and return once its first group is written (or it ended)."""
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if line.startswith("[1/") or not line:
            break
    return proc


def test_kill_9_loses_only_the_unfinished_group(tmp_path):
    path, out, command = slow_sweep(tmp_path)
    proc = start_until_first_group(command)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted((out / "groups").glob("*.parquet"))
    assert 1 <= len(done) < 4
    assert not list((out / "groups").glob(".*.tmp"))  # no half-written group
    resumed = subprocess.run(command, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    clean = tmp_path / "clean"
    sweep.run(sweep.load(path), clean)
    assert_same_rows(group_files.read(out), group_files.read(clean))
    for f in done:  # the groups finished before the kill were kept, not redone
        assert pq.read_table(f).num_rows > 0


@pytest.mark.parametrize(
    "old, new, words",
    [
        ("num = 3", "num = 0", ["num"]),
        (
            '"problem.condition_number" = [10.0, 100.0]',
            '"problem.condition_number" = []',
            ["empty grid"],
        ),
        ("[axes]", "colour = 1\n[axes]", ["colour"]),
        (
            '"problem.condition_number" = [10.0, 100.0]',
            '"problem.condition_number" = [0.5]',
            ["problem.condition_number"],
        ),
        ("learning_rates = [1.0]", "learning_rates = []", ["empty grid"]),
        ("seeds = 2", "seeds = 0", ["seeds"]),
        ("seeds = 2", "seeds = 100000\n", ["GiB"]),
    ],
)
def test_bad_sweep_files(old, new, words):
    text = SWEEP.replace(old, new)
    if "100000" in new:
        text = text.replace("num = 3", "num = 1000")
    with pytest.raises(UsageError) as error:
        plan(text)
    for word in words:
        assert word in str(error.value), str(error.value)


def test_cli_refuses_a_directory_of_another_sweep(tmp_path):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(SWEEP.replace("seeds = 2", "seeds = 1"))
    b.write_text(SWEEP.replace("seeds = 2", "seeds = 1").replace("steps = 20", "steps = 10"))
    out = tmp_path / "out"
    cli = [sys.executable, "-m", "deeplinear.cli"]
    assert subprocess.run([*cli, "sweep", str(a), "--out", str(out)]).returncode == 0
    other = subprocess.run(
        [*cli, "sweep", str(b), "--out", str(out)], capture_output=True, text=True
    )
    assert other.returncode == 2 and "--force" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    assert len(list((out / "groups").glob("*.parquet"))) == 4  # nothing finished was lost


RUN = """
seed = 0
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
learning_rates = [0.01]
steps = 5
"""


def test_python_run_refuses_a_directory_of_another_experiment(tmp_path):
    """``sweep.run`` claims its directory as the CLI does: another sweep's is refused (force
    replaces it), a run's is refused even with force; what they hold stays intact."""
    from deeplinear.experiment import config, execution

    first = plan(SWEEP.replace("seeds = 2", "seeds = 1"))
    second = plan(SWEEP.replace("seeds = 2", "seeds = 1").replace("steps = 20", "steps = 10"))
    out, run_dir = tmp_path / "out", tmp_path / "run"
    sweep.run(first, out)
    execution.execute(config.parse(tomllib.loads(RUN), source=RUN), run_dir)

    def contents(folder):
        return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    before = {folder: contents(folder) for folder in (out, run_dir)}
    for target, force, words in [
        (out, False, "holds a different experiment"),
        (run_dir, False, "holds a different experiment"),
        (run_dir, True, "holds a 'run' experiment, not a sweep"),
    ]:
        with pytest.raises(UsageError) as error:
            sweep.run(second, target, force=force)
        message = str(error.value)
        assert len(message.splitlines()) == 1 and str(target) in message, message
        assert words in message, message
    assert {folder: contents(folder) for folder in (out, run_dir)} == before
    assert len(list((out / "groups").glob("*.parquet"))) == len(first.groups)
    sweep.run(second, out, force=True)  # another sweep's directory: force replaces it
    assert len(list((out / "groups").glob("*.parquet"))) == len(second.groups)


def test_grid_values():
    assert np.allclose(sweep.grid({"min": 1e-3, "max": 1e-1, "num": 3}, "x"), [1e-3, 1e-2, 1e-1])
    assert sweep.grid([1, 2], "x") == [1, 2]


def test_ray_cluster_returns_the_same_rows(tmp_path):
    s = plan(SWEEP.replace("seeds = 2", "seeds = 1"))
    sweep.run(s, tmp_path / "local")
    sweep.run(s, tmp_path / "ray", ray="local")  # a real local Ray cluster, started and stopped
    assert_same_rows(group_files.read(tmp_path / "local"), group_files.read(tmp_path / "ray"))


def test_a_ray_address_that_does_not_answer(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SWEEP)
    cli = [
        sys.executable,
        "-m",
        "deeplinear.cli",
        "sweep",
        str(path),
        "--out",
        str(tmp_path / "o"),
        "--ray",
        "127.0.0.1:1",
    ]
    result = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "no Ray head answers" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_keeps_finished_groups_and_a_rerun_resumes(tmp_path, signum):
    _, out, command = slow_sweep(tmp_path)
    proc = start_until_first_group(command)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum and "Traceback" not in err
    kept = sorted((out / "groups").glob("*.parquet"))
    assert kept and not list((out / "groups").glob(".*.tmp"))
    resumed = subprocess.run(command, capture_output=True, text=True)
    assert resumed.returncode == 0 and len(list((out / "groups").glob("*.parquet"))) == 4


def test_groups_read_as_one_parquet_dataset(tmp_path):
    sweep.run(plan(SWEEP.replace("seeds = 2", "seeds = 1")), tmp_path)
    import pyarrow.dataset as ds

    table = ds.dataset(tmp_path / "groups", format="parquet").to_table()
    assert table.num_rows == group_files.read(tmp_path).num_rows
    assert "damping" in table.column_names and "mode_learned" in table.column_names


def test_batched_group_equals_one_run_per_seed():
    """Seeds × learning rates in one vmapped program give what separate runs give."""
    from deeplinear.experiment import execution
    from deeplinear.store.results import run_series

    s = plan()
    group = s.groups[0]  # gd, three learning rates, two seeds
    batched = run_series(sweep.run_group(s, group))
    for seed in group.seeds:
        single = run_series(execution.execute(s.run_config(group, seed)).table)
        for run_id, data in single.items():
            ours = batched[f"{group.label}/{run_id}"]
            np.testing.assert_allclose(ours["loss"], data["loss"], rtol=1e-12)
            np.testing.assert_allclose(
                ours["mode_learned"], data["mode_learned"], rtol=1e-9, atol=1e-12
            )


def test_a_changed_sweep_does_not_resume_the_old_groups(tmp_path):
    first = plan(SWEEP.replace("seeds = 2", "seeds = 1"))
    sweep.run(first, tmp_path)
    changed = plan(SWEEP.replace("seeds = 2", "seeds = 1").replace("steps = 20", "steps = 10"))
    assert sweep.group_file(tmp_path, changed.groups[1]) != sweep.group_file(
        tmp_path, first.groups[1]
    )
    sweep.run(changed, tmp_path, force=True)  # as with --force
    table = group_files.read(tmp_path)
    lm_steps = [
        s
        for m, s in zip(table.column("method").to_pylist(), table.column("step").to_pylist())
        if m == "lm"
    ]
    assert max(lm_steps) == 10
    assert len(list((tmp_path / "groups").glob("*.parquet"))) == len(changed.groups)


def test_report_judges_each_axis_point_against_its_own_floor(tmp_path):
    """With label noise on one axis point, LM's runs there end at the noise floor: converged."""
    text = (
        SWEEP.replace('samples = "population"', "samples = 40")
        .replace('"problem.condition_number" = [10.0, 100.0]', '"problem.noise" = [0.0, 0.5]')
        .replace("targets = [1e-6]", "targets = [1e-20]")
    )
    s = plan(text)
    sweep.run(s, tmp_path)
    floors = _floors(s, {(g.id, seed) for g in s.groups for seed in g.seeds})
    for group in s.groups:
        for seed in group.seeds:
            setup = build(s.run_config(group, seed))
            X, Y = setup.problem.X, setup.problem.Y
            residual = np.linalg.lstsq(X.T, Y.T, rcond=None)[1].sum()
            k = min(setup.widths)
            ols = np.linalg.lstsq(X.T, Y.T, rcond=None)[0].T
            evals, evecs = np.linalg.eigh(X @ X.T)
            sigma = np.linalg.svd(ols @ (evecs * np.sqrt(evals)) @ evecs.T, compute_uv=False)
            truth = residual + np.sum(sigma[k:] ** 2)  # reduced-rank regression, another route
            assert floors[group.id, seed].value == pytest.approx(truth, rel=1e-8, abs=1e-25)
    page = write_report(tmp_path).read_text()
    rows = json.loads((tmp_path / "summary.json").read_text())["rows"]
    cells = {r["axis_point"]: r["verdicts"] for r in rows if r["method"] == "lm"}
    assert "converged ×2" in cells["noise=0.5"]  # at the noise floor, not "stalled"
    assert "reached 1e-20 ×2" in cells["noise=0"]
    assert all(f"within {r['recorded_steps']:,} steps: {r['verdicts']}" in page for r in rows)


def test_parse_leaves_the_callers_tables_alone():
    data = tomllib.loads(SWEEP)
    before = copy.deepcopy(data)
    sweep.parse(data, source=SWEEP)
    assert data == before


def test_a_group_is_a_frozen_record_its_id_derived():
    s = plan()
    group = s.groups[1]  # κ = 10, lm
    assert group.point == (("problem.condition_number", 10.0),)
    assert group.label == "problem.condition_number=10" and group.method.name == "lm"
    assert group.id == f"{group.label}|lm|{group.digest}" and group.name == f"{group.label}|lm"
    assert sweep.group_file(Path("out"), group) == Path("out/groups", f"{group.digest}.parquet")
    with pytest.raises(dataclasses.FrozenInstanceError):
        group.digest = "0" * 10  # type: ignore[misc]
    assert len({g.digest for g in s.groups}) == len(s.groups)


@pytest.mark.parametrize(
    ("path", "index", "expected", "extended"),
    [  # file names (digests) of existing sweep files: a finished sweep must resume, not re-run
        ("examples/more_data.toml", 0, "problem.samples=100|gd|d29f03a7ad", False),
        # adam's log grid (1e-3 … 1e-1): ids of an older NumPy's power were 1 ulp off in one rate
        # (…801929 for 10**-2.2, now …80193, correctly rounded): 5167882fc7 / 8085125053 before
        ("examples/more_data.toml", 1, "problem.samples=100|adam|f7dc14d6fe", False),
        ("examples/seed_fair.toml", 0, "base|gd|eb6fcee77d", False),
        ("examples/seed_fair.toml", 1, "base|adam|3bba63234a", False),
        # extend_grids = true (issue #9) makes new group files: the old ones lack the rates added
        ("examples/more_data.toml", 0, "problem.samples=100|gd|e2f75dcc4a", True),
        ("examples/more_data.toml", 1, "problem.samples=100|adam|74c603230d", True),
        ("examples/seed_fair.toml", 0, "base|gd|aa4967222f", True),
        ("examples/seed_fair.toml", 1, "base|adam|2fbc0ed491", True),
    ],
)
def test_group_ids_of_the_examples_stay_as_they_were(path, index, expected, extended):
    text = Path(path).read_text()
    assert "\nextend_grids = true" in text
    if not extended:
        text = text.replace("\nextend_grids = true", "\n")
    assert plan(text).groups[index].id == expected


def test_group_files_hold_every_declared_column():
    from deeplinear.diagnostics.probes import Probe
    from deeplinear.methods import METHODS

    columns = sweep.group_columns()
    assert set(Probe.columns) <= set(columns) and "flops" in columns
    for cls in METHODS.values():
        assert set(getattr(cls, "columns", {})) <= set(columns), cls


# A problem whose GD optimum is known in closed form: depth 2, A = diag(s) with s = 1, 2^-½, ½
# (κ = 2), population loss, decoupled balanced init. At a minimum W1 W2 = A the Hessian's
# non-zero eigenvalues are 2(s_i + s_j), so λ_min = 4 s_min, λ_max = 4 s_max: the rate that
# minimises max_i |1 − η λ_i| is η* = 2/(λ_min + λ_max) = 1/3, the stable limit 2/λ_max = 1/2.
KNOWN = """
seeds = 1
targets = [1e-30]
select = "final_loss"
steps = 20
record_every = 10
extend_grids = true
[problem]
kind = "spectral"
input = 3
output = 3
rank = 3
condition_number = 2.0
samples = "population"
[model]
hidden = [3]
[init]
kind = "spectral"
strengths = 0.5
[[methods]]
name = "gd"
learning_rates = GRID
"""


def known(grid, extra=""):
    text = extra + KNOWN.replace("GRID", grid)
    return sweep.parse(tomllib.loads(text), source=text)


def extension(directory):
    from deeplinear.sweep import tuning

    table, metadata = group_files.read_groups(directory)
    (best,) = tuning.best_settings(table, 1e-30, "final_loss", tuning.grid_extensions(metadata))
    return best, best.extension


def test_the_known_problems_rates_are_the_closed_form_ones():
    s = known("[0.1]")
    setup = build(s.run_config(s.groups[0], 0))
    singular = np.sort(np.asarray(setup.problem.s))
    np.testing.assert_allclose(singular, [0.5, 2**-0.5, 1.0], rtol=1e-12)
    lam_min, lam_max = 4 * singular[0], 4 * singular[-1]
    assert 2 / (lam_min + lam_max) == pytest.approx(1 / 3) and 2 / lam_max == pytest.approx(0.5)


def test_extension_stops_once_the_best_rate_is_interior(tmp_path):
    eta = 1 / 3  # the grid lies wholly below η*: its best is its top edge
    s = known(f"{{min = {eta / 4!r}, max = {eta / 2!r}, num = 3, scaling = 'log'}}")
    sweep.run(s, tmp_path)
    best, record = extension(tmp_path)
    assert record["stopped"] == "interior" and record["side"] == "high"
    assert best.edge is None and best.extended and record["extensions"] == 2
    ratio = 2**0.5  # the grid's spacing, continued
    np.testing.assert_allclose(record["added"], eta / 2 * ratio ** np.arange(1, 5), rtol=1e-12)
    below, above = (
        best.grid[i] for i in (best.grid.index(best.learning_rate) + d for d in (-1, 1))
    )
    assert below < eta < above  # the best bracket holds the closed-form optimum
    assert best.learning_rate == pytest.approx(eta, rel=1e-12)  # η* is on this grid
    # the sweep's metadata (manifest.json) holds it too
    entry = json.loads((tmp_path / "manifest.json").read_text())["groups"][0]
    assert entry["grid_extension"] == record
    assert len(group_files.read(tmp_path).column("learning_rate").unique()) == 7


def test_extension_stops_where_the_runs_diverge(tmp_path):
    eta = 1 / 3
    s = known(f"[{eta / 16!r}, {eta / 4!r}, {eta!r}]")  # ×4 past η: 4η*, 16η* > 2/λ_max
    sweep.run(s, tmp_path)
    best, record = extension(tmp_path)
    assert record["stopped"] == "diverged" and record["extensions"] == 1
    np.testing.assert_allclose(record["added"], [4 * eta, 16 * eta], rtol=1e-12)
    assert best.learning_rate == pytest.approx(eta) and best.edge is None
    assert best.learning_rate < 0.5 < min(record["added"])  # the stable limit between them
    table = group_files.read(tmp_path)
    for rate in record["added"]:
        rows = table.filter(pc.equal(table.column("learning_rate"), rate))
        assert not np.isfinite(rows.column("loss").to_numpy()[-1])


def test_extension_stops_at_the_cap(tmp_path):
    eta = 1 / 3  # far below η*: two added rates cannot reach it
    s = known(f"[{eta / 64!r}, {eta / 32!r}]", "max_grid_extensions = 1\n")
    sweep.run(s, tmp_path)
    best, record = extension(tmp_path)
    assert record["stopped"] == "cap reached" and record["max"] == 1
    assert best.edge == "high" and best.learning_rate == pytest.approx(eta / 8)


def test_a_resumed_sweep_keeps_its_extended_groups(tmp_path):
    eta = 1 / 3
    s = known(f"[{eta / 16!r}, {eta / 4!r}, {eta!r}]")
    sweep.run(s, tmp_path / "a")
    path = sweep.group_file(tmp_path / "a", s.groups[0])
    stamp = path.stat().st_mtime_ns
    sweep.run(s, tmp_path / "a")  # finished, extended: not run again
    assert path.stat().st_mtime_ns == stamp and group_files.verify_group(path) is None
    sweep.run(s, tmp_path / "b")
    assert_same_rows(group_files.read(tmp_path / "a"), group_files.read(tmp_path / "b"))
    assert extension(tmp_path / "a")[1] == extension(tmp_path / "b")[1]


def test_extension_changes_the_group_file_and_only_its_own():
    plain = plan()
    extended = plan("extend_grids = true\n" + SWEEP)
    assert [g.extensions for g in extended.groups] == [6, 0, 6, 0]  # lm: one rate, no spacing
    assert plain.groups[0].digest != extended.groups[0].digest
    assert plain.groups[1].digest == extended.groups[1].digest
    off = plan(
        "extend_grids = true\n" + SWEEP.replace('name = "gd"', 'name = "gd"\nextend_grid = false')
    )
    assert off.groups[0].digest == plain.groups[0].digest


def test_each_group_times_one_run_alone(tmp_path):
    s = plan(SWEEP.replace("seeds = 2", "seeds = 1"))
    sweep.run(s, tmp_path)
    table, metadata = group_files.read_groups(tmp_path)
    for group in s.groups:
        held = metadata[group.id]
        rows = table.filter(pc.equal(table.column("group"), group.id))
        per_step, alone = held["seconds_per_step_alone"], held["alone"]
        assert per_step > 0 and alone["seconds"] == pytest.approx(per_step * alone["steps"])
        # gd's three rates ran as one batch: timed again alone; lm's one run ran alone
        assert alone["separately"] == (group.method.name == "gd")
        np.testing.assert_allclose(
            rows.column("seconds_alone").to_numpy(), rows.column("step").to_numpy() * per_step
        )
        assert "grid_extension" not in held


@pytest.mark.parametrize(
    "extra, words",
    [
        ("extend_grids = 1\n", "extend_grids must be true or false"),
        ('extend_grids = "yes"\n', "extend_grids must be true or false"),
        ("extend_grids = true\nmax_grid_extensions = 0\n", "max_grid_extensions must be ≥ 1"),
        (
            "extend_grids = true\nmax_grid_extensions = 1.5\n",
            "max_grid_extensions must be an integer",
        ),
        ("max_grid_extensions = 3\n", "add extend_grids = true"),
        ('[axes]\n"extend_grids" = [true]\n', "extend_grids is not an axis"),
    ],
)
def test_bad_extension_options(extra, words):
    text = extra + SWEEP
    if "[axes]" in extra:
        text = SWEEP.replace("[axes]\n", extra)
    with pytest.raises(UsageError) as error:
        plan(text)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_bad_per_method_extension_option():
    with pytest.raises(UsageError, match=r"methods\[0\]\.extend_grid must be true or false"):
        plan(SWEEP.replace('name = "gd"', 'name = "gd"\nextend_grid = "no"'))


@pytest.mark.parametrize(
    "grid, side, expected",
    [
        ([1e-3, 1e-2, 1e-1], "high", [1.0, 10.0]),
        ([1e-3, 1e-2, 1e-1], "low", [1e-4, 1e-5]),
        ([0.2, 0.4, 0.6], "high", [0.8, 1.0]),
        ([0.2, 0.4, 0.6], "low", []),  # 0 and -0.2: a learning rate must be > 0
        ([0.3, 0.5, 0.7], "low", [0.1]),
        ([1.0, 2.0, 5.0], "high", [12.5, 31.25]),  # neither: the edge's own ratio
    ],
)
def test_grids_continue_their_spacing(grid, side, expected):
    found = sweep.Spacing.of(grid).beyond(grid, side, sweep.EXTENSION_RATES)
    np.testing.assert_allclose(found, expected, rtol=1e-12)


def test_extension_stops_where_a_rate_beyond_diverged_on_one_seed(monkeypatch):
    """The extension uses tuning's rule: the added 0.8 is fastest on 4 of 5 seeds but diverged
    on one, so it is not eligible; 0.4 is the best, bounded by it (``diverged``), and the rate
    beyond (1.6, stable but slow) does not reopen the edge. Runs are synthetic curves
    loss = exp(−speed · step) (a stub for the group's runs), so the rule alone is tested."""
    import pyarrow as pa

    steps = np.arange(0, 110, 10, dtype=np.float64)
    speed = {0.1: 0.1, 0.2: 0.2, 0.4: 0.3, 0.8: 0.6, 1.6: 0.05}

    def runs(sweep_, group, method, rates, beat, seeds=None):
        columns = {k: [] for k in ("run_id", "group", "method", "learning_rate", "seed", "step")}
        columns |= {"loss": [], "seconds": [], "batch_size": []}
        for rate in rates:
            for seed in range(5):
                loss = np.exp(-speed[rate] * steps)
                if rate == 0.8 and seed == 4:
                    loss[5:] = np.nan  # one seed diverged
                columns["run_id"] += [f"{rate!r}/{seed}"] * len(steps)
                columns["group"] += [group.id] * len(steps)
                columns["method"] += ["gd"] * len(steps)
                columns["learning_rate"] += [rate] * len(steps)
                columns["seed"] += [seed] * len(steps)
                columns["step"] += steps.tolist()
                columns["loss"] += loss.tolist()
                columns["seconds"] += (steps * 1e-3).tolist()
                columns["batch_size"] += [1] * len(steps)
        return pa.table(columns)

    monkeypatch.setattr(grid_extension, "rates_table", runs)  # where extend looks it up
    s = known("[0.1, 0.2, 0.4]")  # select = "final_loss"
    group = s.groups[0]
    first = runs(s, group, None, [0.1, 0.2, 0.4], None)
    table, record = grid_extension.extend(s, group, None, first, None)
    assert record["added"] == pytest.approx([0.8, 1.6]) and record["extensions"] == 1
    assert record["stopped"] == "diverged" and record["side"] == "high"
    assert record["best_learning_rate"] == 0.4 and record["edge"] is None
    # without the diverged seed, 0.8 is the best (the median alone would crown it with it too)
    finals = {}
    for r in sweep.tuning.run_summaries(table, []):
        finals.setdefault(r["learning_rate"], []).append(np.nan_to_num(r["final"], nan=np.inf))
    assert np.median(finals[0.8]) < np.median(finals[0.4])  # the median ignores the divergence
    clean = table.filter(pc.not_equal(table["seed"], 4))
    (best,) = sweep.tuning.best_settings(clean, 1e-30, "final_loss")
    assert best.learning_rate == pytest.approx(0.8)


_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3), st.text(max_size=3),
    st.booleans(),
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    st.one_of(_VALUES, st.lists(_VALUES, max_size=4), st.dictionaries(st.text(max_size=2), _VALUES))
)
def test_recovery_targets_are_errors_in_0_1_or_refused_naming_the_key(value):
    data = tomllib.loads(SWEEP)
    data["recovery_targets"] = value
    try:
        parsed = sweep.parse(data, source=SWEEP)
    except UsageError as error:
        assert "recovery_targets" in str(error) and "\n" not in str(error)
        return
    assert isinstance(value, list) and value
    assert parsed.recovery_targets == tuple(float(v) for v in value)
    assert all(0 < t < 1 for t in parsed.recovery_targets)
    assert sweep.recovery_goals(parsed) == parsed.recovery_targets


def test_recovery_goals_default_to_the_root_of_the_last_loss_target():
    assert sweep.recovery_goals(plan()) == pytest.approx((1e-3,))
    assert "recovery_targets" in sweep.NOT_AXES


def test_the_terminal_counts_the_runs_a_grid_extension_added(tmp_path, capsys, monkeypatch):
    """The terminal's run count is the one groups/ holds: the planned grid (3 rates) plus the
    rates the extension added (4), not "3 of 3 runs"."""
    from deeplinear.cli import main

    monkeypatch.setenv("DEEPLINEAR_JAX_CACHE", "off")
    eta = 1 / 3
    text = KNOWN.replace(
        "GRID", f"{{min = {eta / 4!r}, max = {eta / 2!r}, num = 3, scaling = 'log'}}"
    )
    path, out = tmp_path / "known.toml", tmp_path / "out"
    path.write_text(text)
    assert main(["sweep", str(path), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    held = group_files.read(out).column("run_id").unique()
    assert len(held) == 7
    assert "1 group, 7 runs, 4 of them added by grid extension, in" in captured.out
    assert "3 of 3 runs done here, +4 added by grid extension, ETA" in captured.err


def test_a_log_grid_is_correctly_rounded_whatever_the_numpy():
    """Each value is 10**y rounded once from the float64 exponent y (checked at 80 digits), the
    ends exact: NumPy's power is not correctly rounded and changed its last bit between releases,
    which changed group ids (the digests above)."""
    from decimal import Decimal, localcontext

    from deeplinear.sweep.grids import log_grid

    values = log_grid(1e-3, 1e-1, 6)
    assert values[2] == 0.00630957344480193 and values[0] == 1e-3 and values[-1] == 1e-1
    for low, high, num in [(1e-3, 1e-1, 6), (1e-6, 1e-3, 7), (3e-5, 0.7, 11), (2.0, 2.0, 1)]:
        values = log_grid(low, high, num)
        exponents = np.linspace(np.log10(low), np.log10(high), num)
        with localcontext() as context:
            context.prec = 80
            for value, y in list(zip(values, exponents))[1:-1]:
                exact = Decimal(10) ** Decimal(float(y))
                assert abs(Decimal(value) - exact) <= abs(Decimal(np.spacing(value))) / 2
        assert values[0] == low and values[-1] == high


def test_a_sweep_reports_the_final_loss_deeplinear_run_prints(tmp_path):
    """One record of a run's final loss: near the minimum the final weights' double-double loss
    (``execution.reported_final``), stored as column ``final_loss``, is what the selection, the
    report's summary and ``deeplinear.load`` read; far from it the float64 loss, unchanged."""
    from deeplinear.store.frames import load
    from tiny_sweeps import spectral_sweep

    text = spectral_sweep(seeds=2, targets="1e-6", steps=60, conditions="10.0")
    s = sweep.parse(tomllib.loads(text), source=text)
    sweep.run(s, tmp_path)
    frame = load(tmp_path)
    last = frame.sort_values("step").groupby("run_id").tail(1).set_index("run_id")
    lm = last[last["method"] == "lm"]
    gd = last[last["method"] == "gd"]
    assert len(lm) == 2 and len(gd) == 6
    assert np.all(gd["final_loss"] == gd["loss"])  # far from the minimum: the float64 loss
    assert np.all(lm["final_loss"] != lm["loss"])  # at it: the double-double value
    assert np.all(np.abs(lm["final_loss"] - lm["loss"]) < 1e-20 * frame["loss"].max())
    rows = json.loads((write_report(tmp_path).parent / "summary.json").read_text())["rows"]
    (row,) = [r for r in rows if r["method"] == "lm"]
    assert row["final_loss"]["median"] == pytest.approx(np.median(lm["final_loss"]), rel=1e-12)

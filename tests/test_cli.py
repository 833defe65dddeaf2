"""The command line as a user meets it: bad input, directories, a full run, Ctrl-C."""

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deeplinear.errors import UsageError
from deeplinear.methods import make_method
from deeplinear.store.results import read_table
from deeplinear.verdict import KINDS

CLI = [sys.executable, "-m", "deeplinear.cli"]


def cli(*args, cwd=None, timeout=300):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def assert_usage_error(result, *words):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(
    "args, words",
    [
        (["reproduce", "--seed", "-1"], ["--seed", "non-negative"]),
        (["reproduce", "--seed", "abc"], ["--seed", "'abc'"]),
        (["reproduce", "--seed", str(2**32)], ["--seed"]),
        (["reproduce", "--rcond", "1999"], ["--rcond", "modern"]),
        (["reproduce", "--frobnicate"], ["--frobnicate", "--help"]),
        (["launch"], ["launch"]),
        ([], ["command"]),
    ],
)
def test_bad_arguments_fail_in_one_line(args, words):
    assert_usage_error(cli(*args), *words)


def test_bad_arguments_do_not_import_jax():
    code = (
        "import sys\nfrom deeplinear.cli import main\n"
        "assert main(['reproduce', '--seed', 'abc']) == 2\n"
        "assert main(['reproduce', '--out', '/proc/no/such']) == 2\n"
        "print('jax' in sys.modules, 'matplotlib' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False False", out.stderr


def test_out_is_a_file(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("mine")
    assert_usage_error(cli("reproduce", "--out", str(target)), "is a file", "--out")
    assert target.read_text() == "mine"


def test_out_cannot_be_created(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    assert_usage_error(cli("reproduce", "--out", str(blocker / "sub")), "cannot be created")


def test_out_holding_other_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    assert_usage_error(cli("reproduce", "--out", str(tmp_path)), "--force")
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_full_run_then_rerun_then_a_different_experiment(tmp_path):
    out = tmp_path / "r"
    first = cli("reproduce", "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert "κ(A) = 12.7" in first.stdout
    assert "GD is slow, not stuck" in first.stdout
    files = sorted(p.name for p in out.iterdir())
    assert files == [
        "curves.parquet",
        "experiment.json",
        "figure1_gd_adam.png",
        "figure2_with_lm.png",
    ]
    table, meta = read_table(out / "curves.parquet")
    assert meta["experiment"] == {"experiment": "reproduce", "seed": 0, "rcond": "modern"}
    assert meta["problem"]["condition_number"] == pytest.approx(12.669, rel=1e-3)
    assert set(table.column("run").to_pylist()) >= {
        "GD step=1e-05",
        "ADAM step=0.01",
        "LM step=0.2",
    }
    assert table.num_rows == 2 * 3001 + 8 + 6 + 4 * 3001 + 2 * 201

    again = cli("reproduce", "--out", str(out))  # the same experiment replaces its own results
    assert again.returncode == 0, again.stderr

    other = cli("reproduce", "--out", str(out), "--seed", "1")
    assert_usage_error(other, "different experiment", "--force")
    assert json.loads((out / "experiment.json").read_text())["seed"] == 0

    forced = cli("reproduce", "--out", str(out), "--seed", "1", "--force")
    assert forced.returncode == 0, forced.stderr
    assert json.loads((out / "experiment.json").read_text())["seed"] == 1


def test_ctrl_c_leaves_no_half_written_file(tmp_path):
    out = tmp_path / "r"
    proc = subprocess.Popen(
        [*CLI, "reproduce", "--out", str(out), "--rcond", "2017"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the 2017 LM runs (seconds of NumPy work)
        line = proc.stderr.readline()
        if "2017 setting" in line or not line:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert sorted(os.listdir(out)) == ["experiment.json"]  # nothing half-written
    # the same experiment may claim the directory again (the full rerun costs ~20 s of NumPy)
    from deeplinear.notebook2017.experiment import experiment_identity
    from deeplinear.store import directories as rundir

    assert rundir.claim(out, experiment_identity(0, "2017")) == out


def test_run_then_explain(tmp_path):
    out = tmp_path / "seed"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = dict(
        os.environ,
        DEEPLINEAR_JAX_CACHE=str(blocker / "jax"),  # unusable: a warning, then no cache
        DEEPLINEAR_PROGRESS_SECONDS="0.5",  # heartbeats for any silence over 0.5 s
    )
    ran = subprocess.run(
        [*CLI, "run", "examples/seed.toml", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        umask=0o022,
    )
    assert ran.returncode == 0, ran.stderr
    warnings = [line for line in ran.stderr.splitlines() if "compilation cache" in line]
    assert len(warnings) == 1 and "compiling without it" in warnings[0], ran.stderr
    assert "tf1-gd: 4 runs × 3000 steps" in ran.stderr
    assert re.search(r"^  … .* — \d+ s so far$", ran.stderr, re.M), ran.stderr  # heartbeat
    assert "\r" not in ran.stderr  # not a terminal: plain lines
    for name in ("curves.parquet", "experiment.json", "state/0.npz"):  # readable by others
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name
    for folder in (out, out / "state"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755, folder
    assert "true κ(A) = 12.7" in ran.stdout
    for name in ("config.toml", "curves.parquet", "gn_spectrum.parquet", "experiment.json"):
        assert (out / name).is_file(), name
    explained = cli("explain", str(out), "--target", "1e-8", "--budget", "300000")
    assert explained.returncode == 0, explained.stderr
    lines = explained.stdout
    assert "seed0/tf1-gd/1e-05: converging linearly — slow, not stuck" in lines
    assert "seed0/tf1-gd/0.0001: diverged at step 7" in lines
    assert "seed0/seed-lm/0.2: converged to the reachable minimum 5.25e-29 (round-off)" in lines
    verdicts = json.loads((out / "verdicts.json").read_text())
    assert len(verdicts["verdicts"]) == 10
    for entry in verdicts["verdicts"]:  # the documented schema (ARCHITECTURE.md)
        assert entry["kind"] in KINDS
        assert set(entry["floor"]) == {"value", "kinds"}
        for key in ("run", "step", "excess_loss", "target_reachable", "eta_steps", "eta_method"):
            assert key in entry
        for key in ("grad_norm", "hessian_min", "hessian_max"):
            assert entry[key] is None or isinstance(entry[key], float)
    for figure in ("modes.png", "prediction.png", "gn_spectrum.png"):
        assert (out / figure).stat().st_size > 10_000
    # report reads sweeps: on a run's directory it says what reads one (it said "run sweep")
    assert_usage_error(cli("report", str(out)), "a run's results", f"deeplinear explain {out}")


def test_an_unknown_hyperparameter_is_answered_with_the_declared_ones_and_the_closest():
    """seed-lm declares rcond and solver; its class-level attributes (columns, label, …) are
    not hyperparameters and were listed as if they were."""
    with pytest.raises(UsageError) as error:
        make_method("seed-lm", rcnd=0.1)
    message = str(error.value)
    assert "did you mean 'rcond'?" in message and message.endswith("it takes: rcond, solver)")
    with pytest.raises(UsageError, match=r"'zzz' \(it takes: "):  # nothing close: no guess
        make_method("adam", zzz=1)


def test_methods_lists_every_method():
    listed = cli("methods")
    assert listed.returncode == 0
    for name in ("gd", "adam", "tf1-gd", "tf1-adam", "seed-lm"):
        assert f"\n{name} " in "\n" + listed.stdout
    # one column for every description, however long the name (optimistix-dogleg pushed its
    # own past the others')
    starts = {len(re.match(r"\S+ +", line).group()) for line in listed.stdout.splitlines()
              if line and not line[0].isspace()}  # fmt: skip
    assert len(starts) == 1, starts


@pytest.mark.parametrize(
    "args, words",
    [
        (["run", "no/such/file.toml"], ["does not exist"]),
        (["explain", "no/such/dir"], ["not a results directory"]),
        (["explain", ".", "--target", "abc"], ["--target"]),
        (["explain", ".", "--budget", "-5"], ["--budget"]),
    ],
)
def test_run_and_explain_bad_arguments(args, words):
    assert_usage_error(cli(*args), *words)


def test_run_file_errors_name_the_field(tmp_path):
    bad = tmp_path / "bad.toml"
    text = Path("examples/seed.toml").read_text().replace("samples = 1000", "samples = 0")
    bad.write_text(text)
    assert_usage_error(cli("run", str(bad), "--out", str(tmp_path / "o")), "problem.samples")
    bad.write_text(text.replace("samples = 0", "samples = 1000\ncolour = 1"))
    assert_usage_error(cli("run", str(bad), "--out", str(tmp_path / "o")), "problem.colour")


REFUSED_METHOD = (
    'seed = 0\nsteps = 100\n[problem]\nkind = "notebook"\n[model]\nhidden = [6]\n'
    '[init]\nkind = "notebook"\n[[methods]]\nname = "gd"\nlearning_rates = [1e-3]\n'
    '[[methods]]\nname = "nuclear-norm"\nlearning_rates = [1.0]\n'
)


def test_a_method_the_problem_refuses_says_one_line_before_any_estimate(tmp_path):
    """nuclear-norm needs a measured problem: refused once the problem is built, before the
    estimate (it came after "estimated …" and the first batch) and before --out is claimed."""
    run_file = tmp_path / "run.toml"
    run_file.write_text(REFUSED_METHOD)
    message = "nuclear-norm cannot run on this problem: it needs a completion or sensing problem"
    assert_usage_error(cli("run", str(run_file), "--out", str(tmp_path / "run")), message)
    sweep_file = tmp_path / "sweep.toml"
    sweep_file.write_text(REFUSED_METHOD.replace("seed = 0", "seeds = 1"))
    assert_usage_error(cli("sweep", str(sweep_file), "--out", str(tmp_path / "sweep")), message)
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


def test_explain_finds_npz_files_next_to_the_original_run_file(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "target.npz", A=rng.standard_normal((5, 4)))
    (tmp_path / "mine.toml").write_text(
        'steps = 200\n[problem]\nkind = "npz"\npath = "target.npz"\n[model]\nhidden = [4]\n'
        '[init]\nkind = "scaled_gaussian"\n[[methods]]\nname = "lm"\nlearning_rates = [1.0]\n'
    )
    out = tmp_path / "elsewhere" / "r"
    assert cli("run", str(tmp_path / "mine.toml"), "--out", str(out)).returncode == 0
    explained = cli("explain", str(out), "--no-figures")
    assert explained.returncode == 0, explained.stderr
    assert "converged to the reachable minimum 0 (round-off)" in explained.stdout

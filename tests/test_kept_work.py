"""Work that survives: a run interrupted by SIGINT, SIGTERM or kill -9 keeps its finished batches
and its last checkpoint and, run again, gives the rows of an uninterrupted run bit for bit; an
interrupted explain keeps the verdicts it finished; one writer per directory (real processes,
real signals)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deeplinear.experiment import config as configs
from deeplinear.experiment.execution import execute
from deeplinear.store import arrays, locks

CLI = [sys.executable, "-m", "deeplinear.cli"]

RUN_FILE = """
name = "interrupted"
seed = 0
generator = "numpy"
record_every = 10
checkpoints = 3

[problem]
kind = "notebook"
input = 6
output = 10
samples = 1000

[model]
hidden = [6]

[init]
kind = "notebook"

[[methods]]
name = "adam"
learning_rates = [1e-3, 1e-2]
steps = 2000

[[methods]]
name = "tf1-gd"
learning_rates = [1e-6, 1e-5]
steps = 100000

[[methods]]
name = "seed-lm"
learning_rates = [0.2]
steps = 50
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The run file, and the rows of its uninterrupted run (in this process)."""
    folder = tmp_path_factory.mktemp("kept")
    run_file = folder / "interrupted.toml"
    run_file.write_text(RUN_FILE)
    execute(configs.load(run_file), folder / "reference")
    return run_file, pq.read_table(folder / "reference" / "curves.parquet")


def _env(**extra):
    return {**os.environ, "DEEPLINEAR_CHECKPOINT_SECONDS": "0.2", **extra}


def _wait_for(condition, proc, seconds=120.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            pytest.fail(f"the process ended first: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("timed out")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_run_resumes_to_the_rows_of_an_uninterrupted_one(
    reference, tmp_path, signum
):
    run_file, expected = reference
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [*CLI, "run", str(run_file), "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    # inside the second batch: the first finished, the second checkpointed
    _wait_for(lambda: any(out.glob("partial/*/checkpoint-1.json")), proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == (130 if signum == signal.SIGINT else -signal.SIGKILL), err
    assert "Traceback" not in err
    if signum == signal.SIGINT:
        assert "are kept in" in err and "run the same command again" in err
    kept = sorted(p.name for p in out.glob("partial/*/*"))
    assert "batch-0.npz" in kept and "checkpoint-1.npz" in kept and "batch-2.npz" not in kept
    assert not (out / "curves.parquet").exists()  # nothing half-trusted: no results yet

    again = subprocess.run(
        [*CLI, "run", str(run_file), "--out", str(out)],
        capture_output=True, text=True, env=_env(), timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "finished by an interrupted run, kept" in again.stderr
    assert "continued from an interrupted run's checkpoint" in again.stderr
    table = pq.read_table(out / "curves.parquet")
    for column in ("run_id", "step", "loss", "grad_norm", "loss_notebook"):
        got, want = table.column(column).to_numpy(), expected.column(column).to_numpy()
        assert np.array_equal(got, want), column  # bit for bit
    assert not (out / "partial").exists()  # gone with the interrupted run's folder
    explained = subprocess.run(
        [*CLI, "explain", str(out), "--budget", "0", "--no-figures"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert explained.returncode == 0, explained.stderr  # a complete, verified run directory


def test_kept_files_that_do_not_match_their_checksum_are_run_again(reference, tmp_path):
    run_file, expected = reference
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [*CLI, "run", str(run_file), "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    _wait_for(lambda: any(out.glob("partial/*/checkpoint-1.json")), proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    batch = next(out.glob("partial/*/batch-0.npz"))
    data = bytearray(batch.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one bit of the kept batch damaged
    batch.write_bytes(bytes(data))
    again = subprocess.run(
        [*CLI, "run", str(run_file), "--out", str(out)],
        capture_output=True, text=True, env=_env(), timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "finished by an interrupted run" not in again.stderr  # run again, not trusted
    assert "continued from an interrupted run's checkpoint" in again.stderr
    table = pq.read_table(out / "curves.parquet")
    assert np.array_equal(table.column("loss").to_numpy(), expected.column("loss").to_numpy())


@pytest.fixture(scope="module")
def to_explain(reference, tmp_path_factory):
    """A run directory whose LM run is judged at once and whose slow GD run is continued."""
    folder = tmp_path_factory.mktemp("explained")
    run_file = folder / "explained.toml"
    head, _, _ = reference[0].read_text().partition("[[methods]]")
    run_file.write_text(
        head + '[[methods]]\nname = "seed-lm"\nlearning_rates = [0.2]\nsteps = 50\n\n'
        '[[methods]]\nname = "tf1-gd"\nlearning_rates = [1e-6]\nsteps = 2000\n'
    )
    execute(configs.load(run_file), folder / "run")
    return folder / "run"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_an_interrupted_explain_keeps_the_verdicts_it_finished(to_explain, tmp_path, signum):
    out = tmp_path / "run"
    shutil.copytree(to_explain, out)
    proc = subprocess.Popen(
        [*CLI, "explain", str(out), "--budget", "50000000", "--max-hours", "100",
         "--no-figures"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for(lambda: (out / "verdicts.json").exists(), proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}.get(signum, -signum), err
    assert "Traceback" not in err
    held = json.loads((out / "verdicts.json").read_text())  # whole: written atomically
    assert held["complete"] is False
    assert [v["run"] for v in held["verdicts"]] == ["seed0/seed-lm/0.2"]  # LM judged, GD not
    # the results themselves untouched: still a verified run directory
    assert (out / "curves.parquet").read_bytes() == (to_explain / "curves.parquet").read_bytes()
    assert locks.holder(out) is None  # the dead process holds nothing


def test_a_second_writer_is_refused_naming_the_first_and_a_dead_ones_lock_is_taken(
    reference, tmp_path
):
    run_file = tmp_path / "long.toml"  # long enough for three refusals
    run_file.write_text(reference[0].read_text().replace("steps = 100000", "steps = 5000000"))
    out = tmp_path / "shared"
    first = subprocess.Popen(  # long on purpose: over the tests' time limit
        [*CLI, "run", str(run_file), "--out", str(out), "--max-hours", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for(lambda: locks.holder(out) is not None, first)
    for command in (
        ["run", str(run_file), "--out", str(out), "--force", "--max-hours", "1"],
        ["sweep", str(Path(__file__).parents[1] / "examples" / "seed_fair.toml"), "--out",
         str(out), "--force"],
        ["explain", str(out)],
    ):  # fmt: skip
        second = subprocess.run([*CLI, *command], capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, (command, second.stderr)
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {first.pid}" in lines[0], lines
        assert "being written by another deeplinear process" in lines[0]
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    assert locks.holder(out) is None  # released by the OS with the process
    with locks.writing(out):  # the dead process's lock file is taken over
        assert locks.holder(out) is not None
    assert locks.holder(out) is None


HOLDER = """
import sys, time
from deeplinear.store import locks
with locks.writing(sys.argv[1], "deeplinear sweep other.toml"):
    print("held", flush=True)
    time.sleep(600)
"""

SEED_FAIR = Path(__file__).parents[1] / "examples" / "seed_fair.toml"


def _snapshot(folder: Path) -> dict:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}  # fmt: skip


@pytest.fixture(scope="module")
def held(reference, tmp_path_factory):
    """A directory another process holds (writing it), and that process."""
    out = tmp_path_factory.mktemp("held") / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    yield out, proc
    proc.kill()
    proc.wait()


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    command=st.sampled_from(["run", "run --force", "sweep", "sweep --force", "explain",
                             "explain --budget 0", "reproduce", "reproduce --force"]),
    state=st.sampled_from(["absent", "empty", "a finished run", "a stray file"]),
)  # fmt: skip
def test_any_writer_of_a_held_directory_is_refused_and_changes_nothing(
    reference, held, tmp_path, capsys, command, state
):
    """Generated: every writing command, with --force or not, on a directory in any state that
    another process is writing: exit 2, one line naming that process, not one byte changed."""
    from deeplinear import cli

    out, holder = held
    shutil.rmtree(out, ignore_errors=True)
    if state != "absent":
        out.mkdir()
    if state == "a finished run":
        execute_dir = reference[0].parent / "reference"
        shutil.copytree(execute_dir, out, dirs_exist_ok=True)
    if state == "a stray file":
        (out / "notes.txt").write_text("mine")
    before = _snapshot(out)
    name, *flags = command.split()
    given_file = {"run": [str(reference[0])], "sweep": [str(SEED_FAIR)]}.get(name, [])
    where = [str(out)] if name == "explain" else ["--out", str(out)]
    capsys.readouterr()
    assert cli.main([name, *given_file, *where, *flags]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, (command, state, lines)
    if name == "explain" and state == "absent":  # nothing there to explain yet
        assert "not a results directory" in lines[0], lines
    else:
        assert f"pid {holder.pid}" in lines[0], (command, state, lines)
        assert "being written by another deeplinear process" in lines[0]
    assert _snapshot(out) == before


def test_the_lock_is_reentrant_in_one_process_and_refuses_another(tmp_path):
    out = tmp_path / "d"
    with locks.writing(out, "deeplinear test"):
        with locks.writing(out):
            pass
        assert locks.holder(out).startswith(f"pid {os.getpid()}")
        code = (
            "import sys\nfrom deeplinear.store import locks\n"
            f"try:\n    locks.writing({str(out)!r}).__enter__()\n"
            "except Exception as e:\n    print(e)\n    sys.exit(2)\n"
        )
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert other.returncode == 2 and f"pid {os.getpid()}: deeplinear test" in other.stdout
    assert locks.holder(out) is None


def test_plain_trees_round_trip_exactly_and_others_are_refused():
    tree = {
        "a": (np.arange(3.0), [np.float64(1e-300), None]),
        "b": {},
        "c": np.array(["x", "yz"]),
        "d": np.array([np.nan, np.inf]),
    }
    back = arrays.tree_from(arrays.tree_bytes(tree))
    assert back["b"] == {} and back["a"][1][1] is None and isinstance(back["a"], tuple)
    assert np.array_equal(back["d"], tree["d"], equal_nan=True)
    assert back["c"].tolist() == ["x", "yz"] and back["a"][1][0] == 1e-300
    from collections import namedtuple

    with pytest.raises(arrays.NotPlainError):
        arrays.tree_bytes(namedtuple("S", "x")(1.0))
    with pytest.raises(arrays.NotPlainError):
        arrays.tree_bytes(np.array([object()]))
    with pytest.raises(ValueError):
        arrays.tree_from(b"not an npz")

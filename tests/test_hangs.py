"""Nothing hangs (issue 11): the LAPACK deadlock, the sweep's watchdog, signals, and ``report``
on sweeps whose axis changes the depth or the problem kind."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from deeplinear import cli, sweep
from deeplinear.core.backend import jax
from deeplinear.diagnostics.probes import Probe
from deeplinear.problems.dense import notebook_problem
from deeplinear.report.sweep_report import write_report
from deeplinear.store import groups as group_files
from deeplinear.store.results import _to_numpy, run_series
from deeplinear.sweep import watchdog as _watchdog
from deeplinear.sweep.watchdog import GroupStalledError, WorkerDiedError

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "deeplinear.cli"]


# --- the deadlock: jaxlib's batched LAPACK kernels wait on XLA's pool from inside it ----------


def lapack_operand_ranks(fn, *args) -> list[tuple[str, int]]:
    """(LAPACK custom call, rank of its first operand) for every such call ``fn`` compiles to."""
    text = jax.jit(fn).lower(*args).as_text()
    calls = re.findall(r"custom_call @(lapack_\w+)\(.*?: \(tensor<([^>]*)>", text)
    return [(name, shape.count("x")) for name, shape in calls]


def test_the_probe_gives_lapack_one_matrix_at_a_time():
    problem, _ = notebook_problem(0)  # A is 10 × 6
    probe = Probe.for_problem(problem)
    rng = np.random.default_rng(0)
    batch = tuple(rng.standard_normal((16, *shape)) for shape in [(10, 15), (15, 15), (15, 6)])
    batch[1][3, 0, 0] = np.nan  # a diverged member
    calls = lapack_operand_ranks(jax.vmap(probe.measure), batch)
    assert calls and all(rank == 2 for _, rank in calls), calls  # never a batch of matrices
    measured = jax.vmap(probe.measure)(batch)
    for member in (0, 3, 15):
        weights = [w[member] for w in batch]
        finite = [bool(np.isfinite(w).all()) for w in weights]
        expected = [
            np.linalg.svd(w, compute_uv=False) if ok else None for w, ok in zip(weights, finite)
        ]
        for layer, (values, ok) in enumerate(zip(expected, finite)):
            high, low = (
                measured["layer_sigma_max"][member, layer],
                measured["layer_sigma_min"][member, layer],
            )
            if ok:
                np.testing.assert_allclose([high, low], [values[0], values[-1]], rtol=1e-12)
            else:  # NaN, without handing LAPACK a NaN matrix
                assert np.isnan(high) and np.isnan(low)


STRESS = """
import sys
import jax
jax.config.update("jax_num_cpu_devices", 2)  # XLA's pool then has at least two threads
from deeplinear.core.backend import jnp
from deeplinear.diagnostics.probes import _layer_singular_values
plain = lambda w: jnp.linalg.svd(w, compute_uv=False)
singular_values = plain if sys.argv[1] == "plain" else _layer_singular_values

@jax.jit
def program(layers):  # twelve independent batched SVDs per step: XLA runs them side by side
    def step(layers, _):
        layers = tuple(jnp.tanh(w) * 1.5 for w in layers)
        return layers, sum(jax.vmap(singular_values)(w)[:, 0].sum() for w in layers)
    return jax.lax.scan(step, layers, None, 50)[1]

devices = jax.devices()
batches = [
    tuple(jax.device_put(jax.random.normal(jax.random.key(10 * i + j), (32, 15, 15)),
                         devices[i % len(devices)]) for j in range(12))
    for i in range(4)
]
program(batches[0]).block_until_ready()
for out in [program(b) for b in batches]:  # four programs at once
    out.block_until_ready()
print("finished")
"""


def stress(kind: str, timeout: float):
    return subprocess.run(
        [sys.executable, "-c", STRESS, kind], capture_output=True, text=True, timeout=timeout
    )


def test_concurrent_programs_of_batched_svds_finish():
    done = stress("probe", timeout=90)
    assert done.returncode == 0 and "finished" in done.stdout, done.stderr[-2000:]


@pytest.mark.skipif(
    os.environ.get("DEEPLINEAR_FUZZ") != "1", reason="the slow control: DEEPLINEAR_FUZZ=1 runs it"
)
def test_the_stress_program_deadlocks_with_batched_lapack_calls():
    """The control: with a plain batched ``jnp.linalg.svd`` the same program hangs (0 % CPU,
    every XLA worker in ``ParallelBatchMap``'s wait), so the test above can fail."""
    try:
        done = stress("plain", timeout=8)
    except subprocess.TimeoutExpired:
        return  # hung, as jaxlib 0.10's LAPACK kernels do
    # a race: it hung 6 of 6 times here, but a control must not fail the suite when it doesn't
    pytest.skip(f"jax {jax.__version__}: the plain program finished this time ({done.returncode})")


# --- the watchdog ----------------------------------------------------------------------------

TWO_GROUPS = """
seeds = 1
steps = 200
record_every = 10
[problem]
kind = "spectral"
input = 5
output = 4
rank = 3
condition_number = 10.0
[model]
hidden = [4]
[init]
kind = "gaussian"
scale = 0.5
[axes]
"model.hidden" = [[4], [3]]
[[methods]]
name = "gd"
learning_rates = [1e-3]
"""


def two_groups(tmp_path):
    return sweep.parse(tomllib.loads(TWO_GROUPS), source=TWO_GROUPS, base_dir=tmp_path)


@pytest.mark.parametrize(
    "sent, error, words",
    [
        (signal.SIGSTOP, GroupStalledError, ["made no progress for 2 s", "--stall-seconds"]),
        (signal.SIGKILL, WorkerDiedError, ["died (killed by SIGKILL"]),
    ],
)
def test_a_group_that_stops_or_dies_is_named_and_the_finished_are_kept(
    tmp_path, monkeypatch, sent, error, words
):
    plan, out, workers = two_groups(tmp_path), tmp_path / "out", []
    start_worker = _watchdog.Worker.__init__

    def recorded(self, *args):
        start_worker(self, *args)
        workers.append(self)

    monkeypatch.setattr(_watchdog.Worker, "__init__", recorded)

    def progress(done, total, group):  # the first group is on disk: hang or kill the worker
        if done == 1:
            os.kill(workers[0].process.pid, sent)

    start = time.monotonic()
    with pytest.raises(error) as caught:
        sweep.run(plan, out, progress=progress, stall_seconds=2)
    assert time.monotonic() - start < 60
    message = str(caught.value)
    assert plan.groups[1].name in message and "re-run" in message
    assert all(w in message for w in words), message
    assert workers[0].process.poll() is not None  # killed and reaped, not left behind
    assert len(list((out / "groups").glob("*.parquet"))) == 1  # the finished group is kept
    sweep.run(plan, out, stall_seconds=60)  # and a re-run resumes with the other one
    assert len(list((out / "groups").glob("*.parquet"))) == 2
    assert all(w.process.poll() == 0 for w in workers[1:])  # a worker that finished exits


def test_the_cli_reports_a_stalled_group_in_one_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "s.toml"
    path.write_text(TWO_GROUPS)
    seen = {}

    def stalled(plan, out, **options):
        seen.update(options)
        raise GroupStalledError("model.hidden=[3]|gd", options["stall_seconds"])

    monkeypatch.setattr(sweep, "run", stalled)
    assert cli.main(["sweep", str(path), "--out", str(tmp_path / "o")]) == cli.EXIT_STOPPED
    assert seen["stall_seconds"] == sweep.STALL_SECONDS == 600
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("deeplinear: error: group model.hidden=[3]|gd made no progress")
    assert cli.main(["sweep", str(path), "--out", str(tmp_path / "p"), "--stall-seconds", "5"]) == 1
    assert seen["stall_seconds"] == 5.0
    for bad in ("0", "-1", "nan", "soon"):
        assert cli.main(["sweep", str(path), "--stall-seconds", bad]) == cli.EXIT_USAGE
        assert "--stall-seconds" in capsys.readouterr().err


# --- signals ---------------------------------------------------------------------------------


def test_a_signal_during_shutdown_exits_130_in_one_line(tmp_path):
    """Once the command is over, the interpreter shuts down (here made slow by an exit handler):
    Ctrl-C there used to print 'Exception ignored … KeyboardInterrupt' and exit 0."""
    script = textwrap.dedent(
        """
        import atexit, sys, time
        from deeplinear.cli import main
        atexit.register(lambda: (print("shutting down", file=sys.stderr, flush=True),
                                 time.sleep(30)))
        sys.argv = ["deeplinear", "methods"]
        sys.exit(main())
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr.readline().strip() == "shutting down"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert err.strip() == "deeplinear: interrupted (SIGINT); files already written are complete"
    assert "gd" in out  # the command's output was flushed


def test_a_command_stuck_in_native_code_still_ends_on_ctrl_c():
    """Python runs signal handlers between bytecodes only: a command blocked in native code (a
    hung XLA call; here a relocked mutex) ends GRACE_SECONDS after the signal all the same."""
    script = textwrap.dedent(
        """
        import ctypes, sys
        from deeplinear import cli
        cli.GRACE_SECONDS = 1.0
        def blocked(args):
            libc, mutex = ctypes.CDLL(None), ctypes.create_string_buffer(64)
            libc.pthread_mutex_lock(mutex)
            print("blocked", file=sys.stderr, flush=True)
            libc.pthread_mutex_lock(mutex)  # never returns, deaf to signals
        cli.listing.methods_command = blocked
        sys.argv = ["deeplinear", "methods"]
        sys.exit(cli.main())
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    assert proc.stderr.readline().strip() == "blocked"
    time.sleep(0.3)  # inside the second lock
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert err.strip() == "deeplinear: interrupted (SIGINT); files already written are complete"


def test_sigterm_during_a_run_exits_143_and_leaves_no_half_written_file(tmp_path):
    out = tmp_path / "r"
    proc = subprocess.Popen(
        [*CLI, "run", str(ROOT / "examples" / "seed.toml"), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # in the middle of the compute
        line = proc.stderr.readline()
        if "compiled in" in line or not line:
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert err.strip().splitlines()[-1] == (
        "deeplinear: interrupted (SIGTERM); files already written are complete"
    )
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


# --- report across axes that change the shape of the diagnostics -------------------------------


def test_list_columns_of_different_lengths_are_padded_then_trimmed_per_run():
    column = pa.chunked_array([pa.array([[1.0, 2.0], [3.0, 4.0, 5.0], None, [6.0, 7.0, 8.0]])])
    np.testing.assert_array_equal(
        _to_numpy(column),
        [[1, 2, np.nan], [3, 4, 5], [np.nan] * 3, [6, 7, 8]],
    )
    table = pa.table({"run_id": ["a", "b", "a", "b"], "layer_sigma_max": column})
    series = run_series(table)
    np.testing.assert_array_equal(series["a"]["layer_sigma_max"], [[1, 2], [np.nan, np.nan]])
    np.testing.assert_array_equal(series["b"]["layer_sigma_max"], [[3, 4, 5], [6, 7, 8]])


def test_report_draws_a_sweep_whose_axes_change_depth_and_problem_kind(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    np.savez(data / "mine.npz", X=rng.standard_normal((5, 40)), Y=rng.standard_normal((4, 40)))
    text = TWO_GROUPS.replace('"model.hidden" = [[4], [3]]', '"model.hidden" = [[4], [4, 4]]')
    text = text.replace(
        "[axes]\n",
        '[axes]\nproblem = [{kind = "spectral", input = 5, output = 4, rank = 3}, '
        '{kind = "npz", path = "mine.npz"}]\n',
    )
    plan = sweep.parse(tomllib.loads(text), source=text, base_dir=data)
    out = tmp_path / "out"
    sweep.run(plan, out)
    monkeypatch.chdir(tmp_path)  # report finds mine.npz where the sweep file was (manifest)
    page = write_report(out).read_text()
    start = page.index("<table id='summary'")  # the summary (the inlined scripts hold tables)
    summary = page[start : page.index("</table>", start)]
    assert summary.count("<tr") == 1 + 4 and "not judged" not in page
    depths = {}
    for series in run_series(group_files.read(out)).values():
        depth = 1 + len(tomllib.loads(f"h = {series['axis:model.hidden'][0]}")["h"])
        depths[series["run_id"][0]] = depth
        assert series["layer_sigma_max"].shape[1] == depth
        assert series["imbalance"].shape[1] == depth - 1
        assert np.isfinite(series["layer_sigma_max"]).all()
    assert sorted(set(depths.values())) == [2, 3]

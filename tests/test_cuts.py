"""The smaller cuts of issue #9: progress lines, the compilation cache's folder, files readable by
collaborators (the umask), --version, distinct labels, the notebook's and explain's figures."""

import io
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deeplinear.core.progress import Progress
from deeplinear.store import directories
from deeplinear.store import groups as group_files
from tiny_sweeps import spectral_sweep

CLI = [sys.executable, "-m", "deeplinear.cli"]


@pytest.fixture
def umask():
    """Set the process's umask for one test, restored afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize(
    "mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)]
)
def test_written_files_and_folders_follow_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    path = tmp_path / "a.bin"
    digest = directories.write_atomic(path, b"data")
    assert stat.S_IMODE(path.stat().st_mode) == file_mode
    assert len(digest) == 64 and path.read_bytes() == b"data"
    directories.write_atomic(path, b"again")  # replacing keeps the umask's mode, not mkstemp's 0600
    assert stat.S_IMODE(path.stat().st_mode) == file_mode

    def write(folder):
        (folder / "sub").mkdir()
        return {"sub/x.txt": directories.write_atomic(folder / "sub" / "x.txt", b"x")}

    out = directories.replace(tmp_path / "exp", {"experiment": "test"}, write)
    assert stat.S_IMODE(out.stat().st_mode) == dir_mode
    assert stat.S_IMODE((out / "sub").stat().st_mode) == dir_mode
    for name in ("sub/x.txt", directories.MANIFEST):
        assert stat.S_IMODE((out / name).stat().st_mode) == file_mode, name
    claimed = directories.claim(tmp_path / "claimed", {"experiment": "test"})
    assert stat.S_IMODE(claimed.stat().st_mode) == dir_mode


def test_plain_progress_breaks_a_silence_with_heartbeat_lines():
    stream = io.StringIO()
    with Progress(stream, interactive=False, heartbeat=0.2) as progress:
        progress.say("compiling gd")
        time.sleep(1.1)  # a heartbeat after every 0.2 s of silence (they doubled: 2 here)
        progress.count(1, 3, "[1/3] group a")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "compiling gd"
    beats = [line for line in lines if "so far" in line]
    assert 4 <= len(beats) <= 6, lines
    assert all(re.fullmatch(r"  … compiling gd — \d+ s so far", line) for line in beats), beats
    assert lines[-1] == "[1/3] group a"
    assert "\r" not in stream.getvalue()  # CI logs: plain lines only


def test_terminal_progress_draws_a_status_line_and_keeps_the_lines():
    stream = io.StringIO()
    with Progress(stream, interactive=True, heartbeat=0.2) as progress:
        progress.say("compiling gd")
        progress.count(2, 4, "[2/4] group b")
        time.sleep(0.3)
    text = stream.getvalue()
    assert "compiling gd\n" in text and "[2/4] group b\n" in text
    assert "\r" in text and "2/4 · [2/4] group b" in text  # tqdm's status line, with the bar
    assert "so far" not in text  # the status line's clock ticks instead of heartbeat lines


def test_the_cache_folder_defaults_to_the_users_cache_and_can_be_turned_off(monkeypatch, tmp_path):
    from deeplinear.core import backend

    monkeypatch.delenv("DEEPLINEAR_JAX_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert backend.cache_directory() == tmp_path / "xdg" / "deeplinear" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert backend.cache_directory() == tmp_path / "home" / ".cache" / "deeplinear" / "jax"
    monkeypatch.setenv("DEEPLINEAR_JAX_CACHE", str(tmp_path / "mine"))
    assert backend.cache_directory() == tmp_path / "mine"
    for off in ("off", "OFF", "0"):
        monkeypatch.setenv("DEEPLINEAR_JAX_CACHE", off)
        assert backend.cache_directory() is None
        assert backend.enable_compilation_cache() is None


def test_an_unusable_cache_folder_warns_and_compiles_without_it(tmp_path):
    from deeplinear.core import backend

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    warnings = []
    folder = blocker / "jax"  # under a regular file: cannot be created, even by root
    assert backend.enable_compilation_cache(folder, warn=warnings.append) is None
    assert len(warnings) == 1 and str(folder) in warnings[0] and "=off" in warnings[0]


def test_version_names_the_package_and_its_revision():
    out = subprocess.run([*CLI, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    from importlib.metadata import version

    assert out.stdout.startswith(f"deeplinear {version('deeplinear')}")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    )
    if head.returncode == 0:  # a git checkout: its revision is named
        assert f"(git {head.stdout.strip()[:12]}" in out.stdout


def test_help_describes_report_and_the_cache():
    from deeplinear.cli.parser import build_parser

    parser = build_parser()
    text = parser.format_help()
    assert "~/.cache/deeplinear/jax" in text and "--no-cache" in text
    report = parser._subparsers._group_actions[0].choices["report"]
    assert report.description and "report.html" in report.description
    for command in ("run", "explain", "sweep", "reproduce"):
        sub = parser._subparsers._group_actions[0].choices[command]
        assert "--no-cache" in sub.format_help(), command


def test_the_two_levenberg_marquardt_methods_have_distinct_labels():
    from deeplinear.methods import make_method

    assert make_method("seed-lm").label == "LM"  # the notebook's "LM step=0.05" stays
    assert make_method("lm").label not in ("LM", make_method("seed-lm").label)


def _series(method, label, loss, grad=None):
    steps = np.arange(len(loss))
    return {
        "method": np.array([method] * len(loss)),
        "run": np.array([label] * len(loss)),
        "step": steps,
        "loss": np.asarray(loss, float),
        "grad_norm": np.asarray(grad if grad is not None else loss, float),
    }


def test_a_diverged_run_is_marked_where_it_diverged_and_the_legend_is_beside_the_axes():
    import warnings

    import matplotlib.pyplot as plt

    from deeplinear.report import plots

    diverged = _series("tf1-gd", "GD step=0.1", [1.0, 10.0, 1e2, 1e3, np.inf])
    blown = _series("tf1-gd", "GD step=1", [1.0, 1e10, 1e100, 1e300, np.inf])
    fine = _series("tf1-adam", "ADAM step=0.01", [1.0, 0.5, 0.25, 0.1, 0.05])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 1e300 on a log axis overflowed matplotlib's ticks
        fig = plots._panel_pair([(0, diverged), (1, blown), (2, fine)], "t", None)
        fig.canvas.draw()
    ax = fig.axes[0]
    marks = [line for line in ax.lines if line.get_marker() == "x" and len(line.get_xdata())]
    assert len(marks) == 2
    assert marks[0].get_xdata()[0] == 3 and marks[0].get_ydata()[0] == 1e3  # last finite loss
    top = ax.get_ylim()[1]
    assert top == plots.DIVERGED_HEADROOM * 1.0  # above every start, not up to 1e300
    assert marks[1].get_xdata()[0] == 3 and marks[1].get_ydata()[0] == top  # where it leaves
    curve = next(line for line in ax.lines if line.get_label().startswith("GD step=0.1"))
    assert list(curve.get_xdata()) == [0, 1, 2, 3]  # drawn up to it
    assert "diverged at step 4" in curve.get_label()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # beside the axes, not over the curves
    plt.close(fig)


def test_rcond_both_gives_every_notebook_run_its_own_style():
    from deeplinear.notebook2017.experiment import ADAM_RATES, GD_RATES, LM_RATES
    from deeplinear.report import plots

    runs = [_series("tf1-gd", f"GD step={r:g}", [1.0]) for r in GD_RATES]
    runs += [_series("tf1-adam", f"ADAM step={r:g}", [1.0]) for r in ADAM_RATES]
    runs += [_series("seed-lm", f"LM step={r:g}", [1.0]) for r in LM_RATES]
    runs += [_series("seed-lm", f"LM step={r:g} rcond=-1", [1.0]) for r in LM_RATES]
    styles = [plots._style(series, index) for index, series in plots._colour_indices(runs)]
    keys = {(s["color"], s.get("ls", "-"), s["lw"]) for s in styles}
    assert len(keys) == len(runs) == 12  # 10 colours would repeat without the dotted twins
    twin = styles[-1]
    assert twin["ls"] == ":" and twin["color"] == styles[-3]["color"]  # LM 0.2's colour, dotted


def test_explain_figures_label_every_panel_and_title_runs_readably(tmp_path):
    from deeplinear.report import plots

    series = {}
    for method, label in [("gd", "GD step=0.1"), ("tf1-gd", "GD step=0.1")]:
        data = _series(method, label, [1.0, 0.1, 0.01])
        data["mode_learned"] = np.array([[0.0, 0.0], [0.5, 0.4], [0.9, 0.8]])
        series[f"seed0/{method}/0.1"] = data
    spectra = {
        run_id: {
            "step": np.array([0, 2]),
            "eigenvalues": [np.array([1.0, 2.0]), np.array([1.5, 2.5])],
            "lambda_min": np.array([1.0, 1.5]),
            "lambda_max": np.array([2.0, 2.5]),
        }
        for run_id in series
    }
    import matplotlib.pyplot as plt

    figures = []
    original = plots._save
    plots._save = lambda fig, path: figures.append(fig) or path
    try:
        plots.mode_figure(series, {}, tmp_path / "m.png")
        plots.spectrum_figure(spectra, tmp_path / "s.png", plots.run_titles(series))
    finally:
        plots._save = original
    for fig in figures:
        panels = [ax for ax in fig.axes if ax.get_visible()]
        assert len(panels) == 2
        assert all(ax.get_ylabel() for ax in panels)
        titles = [ax.get_title() for ax in panels]
        assert titles == ["GD step=0.1 (gd)", "GD step=0.1 (tf1-gd)"], titles
        assert not any("seed0/" in t for t in titles)
        plt.close(fig)


SWEEP = spectral_sweep(seeds=1, targets="1e-6", steps=100, lm=False)


def test_a_resumed_sweep_counts_the_runs_done_before(tmp_path, monkeypatch, capsys):
    import tomllib

    from deeplinear import sweep
    from deeplinear.cli import main

    monkeypatch.setenv("DEEPLINEAR_JAX_CACHE", "off")  # in this process: leave the cache alone
    path, out = tmp_path / "s.toml", tmp_path / "out"
    path.write_text(SWEEP)
    plan = sweep.parse(tomllib.loads(SWEEP), source=SWEEP)
    sweep.run(plan, out)  # 2 groups (axis points) of 3 runs
    last = plan.groups[-1]
    group = sweep.group_file(out, last)
    group.unlink()
    group_files.checksum_file(group).unlink()
    assert main(["sweep", str(path), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "resuming: 1 of 2 groups (3 of 6 runs) done before" in err
    assert f"[2/2] {last.name}: 3 of 6 runs done here, 3 before, ETA 0 s" in err


def test_a_batchs_steps_reach_the_heartbeat_with_their_rate_and_eta():
    """``Progress.steps`` prints nothing itself; the heartbeat carries the count, and the rate
    and ETA once a second chunk has given a rate (none from the first alone: its compile)."""
    stream = io.StringIO()
    with Progress(stream, interactive=False, heartbeat=0.2) as progress:
        progress.say("gd: 3 runs × 4000 steps")
        progress.steps(1000, 4000)
        assert stream.getvalue() == "gd: 3 runs × 4000 steps\n"
        time.sleep(0.3)
        progress.steps(2000, 4000)
        time.sleep(0.3)
        progress.steps(4000, 4000)
        time.sleep(0.3)
    beats = [line for line in stream.getvalue().splitlines() if "so far" in line]
    head = "  … gd: 3 runs × 4000 steps — "
    assert re.fullmatch(head + r"1,000/4,000 steps — \d+ s so far", beats[0]), beats
    later = [line for line in beats if "2,000/4,000" in line]
    assert later and re.fullmatch(
        head + r"2,000/4,000 steps, [\d,]+ steps/s, ETA [0-9] s — \d+ s so far", later[0]
    ), beats  # 1000 steps in 0.3 s: about 3,300 steps/s, 2000 left: under a second or two
    assert re.fullmatch(head + r"4,000 steps done, [\d,.]+ steps/s — \d+ s so far", beats[-1])


def test_the_status_line_draws_a_batchs_steps_as_a_bar():
    stream = io.StringIO()
    with Progress(stream, interactive=True, heartbeat=0.2) as progress:
        progress.begin("gd: 3 runs × 4000 steps")
        progress.steps(1000, 4000)
        time.sleep(0.1)
        progress.steps(2000, 4000)
        time.sleep(0.3)
    text = stream.getvalue()
    assert re.search(r"\[#{10}\.{10}\] 2,000/4,000 steps, [\d,]+ steps/s, ETA \d+ s · gd", text)
    assert "so far" not in text


def test_begin_names_a_phase_without_printing_it():
    stream = io.StringIO()
    with Progress(stream, interactive=False, heartbeat=0.2) as progress:
        progress.begin("checking the results")
        assert stream.getvalue() == ""  # a command failing now still says one line only
        time.sleep(0.35)
    assert re.match(r"  … checking the results — \d+ s so far\n", stream.getvalue())


def test_a_sweep_read_through_a_pipe_is_never_silent_for_longer_than_the_heartbeat(tmp_path):
    """The README's promise on logs: a line for any silence over the heartbeat (5 s; 0.5 here),
    read as a pipe reader sees it, from the first line to the exit (the intervals doubled); and
    inside a batch the lines count its steps (they said only "N s so far" for 15 minutes),
    with the rate and an ETA once a rate is known."""
    sweep_file = tmp_path / "sweep.toml"
    sweep_file.write_text(
        'seeds = 2\nsteps = 300000\nrecord_every = 100\n[problem]\nkind = "notebook"\n'
        '[model]\nhidden = [6]\n[init]\nkind = "notebook"\n[[methods]]\nname = "adam"\n'
        "learning_rates = [0.001, 0.01]\n"
    )
    env = dict(os.environ, DEEPLINEAR_PROGRESS_SECONDS="0.5")
    command = [sys.executable, "-m", "deeplinear.cli", "sweep", str(sweep_file), "--out"]
    child = subprocess.Popen(
        [*command, str(tmp_path / "out")], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
        text=True, env=env,
    )  # fmt: skip
    lines, stamps = [], []
    for line in iter(child.stderr.readline, ""):
        lines.append(line.rstrip("\n"))
        stamps.append(time.monotonic())
    stamps.append(time.monotonic())  # the exit
    assert child.wait(timeout=300) == 0
    gaps = np.diff(stamps)
    assert len(stamps) >= 3 and gaps.max() <= 1.4, gaps  # 0.5 s, checked every 0.125 s
    counted = re.compile(
        r"  … base\|adam: 4 runs — ([\d,]+)/300,000 steps(, [\d.,]+ steps/s, ETA (\d+) s)? — "
        r"\d+ s so far"
    )
    found = [m for m in map(counted.fullmatch, lines) if m]
    assert len(found) >= 2, lines
    done = [int(m[1].replace(",", "")) for m in found]
    assert any(b > a for a, b in zip(done, done[1:])), lines  # the count moves within a batch
    etas = [int(m[3]) for m in found if m[3] is not None]
    assert etas and max(etas) < 60, lines  # a rate known after the first chunk; an honest ETA
    assert not found[0][0].startswith("  … estimated"), lines

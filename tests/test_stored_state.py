"""Stored state is never trusted blindly; ``run --force`` is all or nothing.

Results directories and sweep group files carry sha256 checksums written after the files. Here:
``run --force`` into another experiment's directory cut at every step of its writing (exceptions
in-process, ``kill -9`` in a subprocess) leaves the old experiment or the new one for ``explain``,
never a mix; Hypothesis-generated damage (truncation, emptying, flipped bytes, a valid file of
another experiment, deletion, corrupt JSON) makes ``explain`` and ``report`` refuse in one line,
and a sweep resume runs exactly the damaged groups again and ends with the undamaged rows.

``DEEPLINEAR_FUZZ=1`` runs many more generated cases and every kill point.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import deeplinear as dl
from deeplinear import sweep
from deeplinear.errors import UsageError
from deeplinear.experiment import config, execution
from deeplinear.explain import explain
from deeplinear.loop import runner
from deeplinear.report.sweep_report import write_report
from deeplinear.store import directories as rundir
from deeplinear.store import groups as group_files
from deeplinear.store.results import read_table, write_table
from result_rows import assert_same_rows

FUZZ = os.environ.get("DEEPLINEAR_FUZZ") == "1"
EXAMPLES = settings(
    max_examples=400 if FUZZ else 25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Two experiments that differ only in their seed: the same methods, shapes and state, so a mix
# of one's run file with the other's state would continue silently from the wrong weights.
RUN = """
seed = {seed}
record_every = 10
checkpoints = 2
[problem]
kind = "spectral"
input = 4
output = 5
rank = 3
samples = "population"
[model]
hidden = [3]
[init]
kind = "scaled_gaussian"
[[methods]]
name = "gd"
learning_rates = [0.05, 0.1]
steps = 100
[[methods]]
name = "adam"
learning_rates = [0.05]
steps = 60
"""
RUN_FILES = (
    "experiment.json",
    "config.toml",
    "curves.parquet",
    "gn_spectrum.parquet",
    "state/0.npz",
    "state/1.npz",
)

SWEEP = """
seeds = 2
targets = [1e-6]
steps = 60
record_every = 10
[problem]
kind = "spectral"
input = 4
output = 5
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
learning_rates = [0.05, 0.1]
[[methods]]
name = "adam"
learning_rates = [0.05]
"""


def outcome(directory) -> list:
    """What ``explain`` concludes, without wall times: which runs, how they end, the ETAs."""
    result = explain(directory, budget_steps=2000, figures=False)
    return [(v.run, v.kind, v.step, v.excess_loss, v.eta_steps) for v in result.verdicts]


def one_line_refusal(call) -> str:
    with pytest.raises(UsageError) as error:
        call()
    message = str(error.value)
    assert message and "\n" not in message, message
    return message


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Experiments A (seed 0) and B (seed 1): run files, pristine directories, explain outcomes."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, seed in (("a", 0), ("b", 1)):
        path = root / f"{name}.toml"
        path.write_text(RUN.format(seed=seed))
        execution.execute(config.load(path), root / name)
        out[name] = path
        out[f"{name}_outcome"] = outcome(root / name)
    out["root"] = root
    assert out["a_outcome"] != out["b_outcome"]
    return out


def copy_of(source: Path) -> Path:
    """A copy of a pristine directory, under the same name, in a folder of its own."""
    target = Path(tempfile.mkdtemp(prefix="copy-", dir=source.parent)) / source.name
    shutil.copytree(source, target)
    return target


def a_or_b(directory, runs) -> str:
    got = outcome(directory)
    assert got in (runs["a_outcome"], runs["b_outcome"]), "a mix of two experiments"
    return "a" if got == runs["a_outcome"] else "b"


def leftovers(directory: Path) -> list[Path]:
    return sorted(directory.parent.glob(f".{directory.name}{rundir.STAGE}*"))


# ---------------------------------------------------------------- run --force: all or nothing

HOOKED = ("replace", "rename", "mkdir")  # os functions counted once ``rundir.replace`` starts


@contextlib.contextmanager
def cut_at(point: int, action):
    """Call ``action`` at the ``point``-th filesystem step of ``rundir.replace`` (1-based)."""
    calls, armed = [0], [False]

    def counted(function):
        def wrapper(*args, **kwargs):
            if armed[0]:
                calls[0] += 1
                if calls[0] == point:
                    action()
            return function(*args, **kwargs)

        return wrapper

    real = {name: getattr(os, name) for name in HOOKED}
    real_rundir = {name: getattr(rundir, name) for name in ("_exchange", "_remove", "replace")}

    def replace(*args, **kwargs):
        armed[0] = True
        try:
            return real_rundir["replace"](*args, **kwargs)
        finally:
            armed[0] = False

    try:
        for name in HOOKED:
            setattr(os, name, counted(real[name]))
        rundir._exchange = counted(real_rundir["_exchange"])
        rundir._remove = counted(real_rundir["_remove"])
        rundir.replace = replace
        yield calls
    finally:
        for name in HOOKED:
            setattr(os, name, real[name])
        for name, function in real_rundir.items():
            setattr(rundir, name, function)


def fail():
    raise OSError(28, "No space left on device (injected)")


def test_an_uninterrupted_force_replaces_the_whole_directory(runs):
    out = copy_of(runs["root"] / "a")
    (out / "verdicts.json").write_text("{}")  # explain's output of the old experiment
    with cut_at(10**9, fail) as calls:
        execution.execute(config.load(runs["b"]), out, force=True)
    assert not (out / "verdicts.json").exists() and not leftovers(out)
    assert a_or_b(out, runs) == "b"
    assert calls[0] >= 9  # every step below is a point the next test cuts at
    held = json.loads((out / "experiment.json").read_text())
    assert set(held["files"]) == set(RUN_FILES) - {"experiment.json"}
    assert (
        held["config_sha256"]
        == execution.experiment_identity(config.load(runs["b"]))["config_sha256"]
    )


@pytest.mark.parametrize("exchange", ["one rename", "two renames"])
def test_an_exception_at_any_step_of_force_leaves_the_old_or_the_new(runs, exchange, monkeypatch):
    if exchange == "two renames":
        monkeypatch.setattr(rundir, "_libc", lambda: None)  # no renameat2: the fallback
    real, batches, where = runner.run, [], [0]

    def run(*args, **kwargs):
        batches.append(1)
        if where[0] == 0 and len(batches) == 2:
            fail()
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run", run)
    cut = []  # what explain sees after each cut, in the order of the cuts
    for point in range(0, 16):  # 0: in the compute, after the first method's batch
        out = copy_of(runs["root"] / "a")
        where[0] = point
        batches.clear()
        try:
            with cut_at(point, fail):
                execution.execute(config.load(runs["b"]), out, force=True)
        except OSError as error:
            assert "injected" in str(error)
            cut.append(a_or_b(out, runs))
        else:  # past the last step (or a failure the step itself absorbs)
            assert a_or_b(out, runs) == "b"
        if a_or_b(out, runs) == "a":  # else the old one may wait beside it for ``recover``
            assert not leftovers(out), point
    assert cut[0] == "a" and cut == sorted(cut)  # A until the swap, then B


KILLER = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from test_stored_state import cut_at
from deeplinear import cli
from deeplinear.store import directories as rundir
from deeplinear.loop import runner
point, fallback = int(sys.argv[1]), sys.argv[2] == "fallback"
if fallback:
    rundir._libc = lambda: None
kill = lambda: os.kill(os.getpid(), signal.SIGKILL)
if point == 0:  # in the middle of the compute: after the first batch
    real, calls = runner.run, []
    def run(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            kill()
        return real(*args, **kwargs)
    runner.run = run
with cut_at(point, kill):
    sys.exit(cli.main(sys.argv[3:]))
"""


def test_kill_9_during_force_leaves_the_old_or_the_new(runs, tmp_path):
    """``kill -9`` after the swap before the old folder is removed (B; ``explain`` removes the
    dead process's folder) and between the two renames of the fallback swap (``explain`` puts A
    back): where, unlike an exception, nothing cleans up. The test above cuts at every step."""
    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(tests=str(Path(__file__).parent)))
    cases = {(11, "exchange"): "b", (12, "fallback"): "a"}
    if FUZZ:  # every step; the ends are known, the middle may be either
        cases = {(p, m): None for p in range(1, 15) for m in ("exchange", "fallback")} | cases
    todo = list(cases)
    while todo:  # a few processes at a time
        procs = []
        for point, mode in todo[:4]:
            out = copy_of(runs["root"] / "a")
            command = [sys.executable, str(script), str(point), mode]
            command += ["run", str(runs["b"]), "--out", str(out), "--force"]
            procs.append((point, mode, out, subprocess.Popen(command, stderr=subprocess.PIPE)))
        del todo[:4]
        for point, mode, out, proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode in (-signal.SIGKILL, 0), err.decode()
            expected = cases[point, mode] or a_or_b(out, runs)
            assert a_or_b(out, runs) == expected, (point, mode)
            assert not leftovers(out)  # ``explain`` restored or removed the dead process's folder


def test_force_into_a_folder_not_written_by_deeplinear_keeps_its_files(runs, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    execution.execute(config.load(runs["a"]), out, force=True)
    assert (out / "notes.txt").read_text() == "keep me"
    assert a_or_b(out, runs) == "a"


def test_an_interrupted_swap_between_two_renames_is_undone(runs, tmp_path):
    out = copy_of(runs["root"] / "a")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)  # fmt: skip
    aside = out.with_name(f".{out.name}{rundir.STAGE}{dead.stdout.strip()}-0.old")
    os.rename(out, aside)  # as the fallback leaves it, killed between its renames
    rundir.claim(out, execution.experiment_identity(config.load(runs["a"])))
    assert a_or_b(out, runs) == "a" and not leftovers(out)


# ---------------------------------------------------------------- explain: verified or refused


def test_a_run_file_edited_after_the_run_is_refused(runs):
    out = copy_of(runs["root"] / "a")
    text = (out / "config.toml").read_text()
    (out / "config.toml").write_text(text.replace('name = "adam"', 'name = "nesterov"'))
    message = one_line_refusal(lambda: explain(out, figures=False))
    assert "config.toml was changed after the run" in message and "--force" in message


def test_a_directory_without_checksums_is_refused(runs):
    out = copy_of(runs["root"] / "a")
    held = json.loads((out / "experiment.json").read_text())
    del held["files"]  # as an interrupted write in place, or an older deeplinear, leaves it
    (out / "experiment.json").write_text(json.dumps(held))
    assert "no valid checksums" in one_line_refusal(lambda: explain(out, figures=False))


def test_a_foreign_state_with_forged_checksums_is_still_refused(runs):
    """Defence in depth: a state file of another method (its checksum forged to match) does not
    fit this method's state, and ``load_state`` says so."""
    out = copy_of(runs["root"] / "a")
    shutil.copy(out / "state" / "1.npz", out / "state" / "0.npz")  # adam's state for gd
    held = json.loads((out / "experiment.json").read_text())
    held["files"]["state/0.npz"] = rundir.sha256_file(out / "state" / "0.npz")
    (out / "experiment.json").write_text(json.dumps(held))
    message = one_line_refusal(lambda: explain(out, figures=False))
    assert "state/0.npz" in message and "re-run" in message


def test_read_table_refuses_a_file_that_is_not_a_results_table(runs, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"x": [1.0]}), foreign)
    assert "no readable deeplinear metadata" in one_line_refusal(lambda: read_table(foreign))
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not really")
    assert "not a readable Parquet" in one_line_refusal(
        lambda: read_table(tmp_path / "junk.parquet")
    )


def json_edits(held: dict, other: dict) -> list:
    """Corrupt JSON metadata that still parses: each a plausible accident or forgery."""
    first = sorted(held.get("files", {}) or {"x": 0})[0]
    edits = [
        {k: v for k, v in held.items() if k != "files"},
        {**held, "experiment": "sweep"},
        other,
        [held],
        "experiment.json",
        None,
    ]
    if "files" in held:
        edits.append({**held, "files": {**held["files"], first: "0" * 64}})
        edits.append({**held, "files": {**held["files"], "../outside": "0" * 64}})
    if "config_sha256" in held:
        edits.append({**held, "config_sha256": other.get("config_sha256", "0")})
    if "groups" in held:
        edits.append({**held, "groups": held["groups"][1:]})
        edits.append({**held, "sweep_sha256": "0" * 16})
    return edits


@st.composite
def damages(draw, names: tuple[str, ...]):
    """One or two files of a directory, each with a way to damage it."""
    targets = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
    out = []
    for name in targets:
        kinds = ["truncate", "empty", "flip", "foreign", "delete", "directory"]
        if name.endswith(".json"):
            kinds.append("json")
        kind = draw(st.sampled_from(kinds))
        if kind == "truncate":
            detail = draw(st.floats(0, 1, exclude_max=True))
        elif kind == "flip":
            detail = draw(
                st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                         min_size=1, max_size=4)
            )  # fmt: skip
        elif kind == "json":
            detail = draw(st.integers(0, 10))
        else:
            detail = None
        out.append((name, kind, detail))
    return out


def damage(directory: Path, name: str, kind: str, detail, foreign: Path) -> None:
    path = directory / name
    data = path.read_bytes()
    if kind == "truncate":
        path.write_bytes(data[: int(detail * len(data))])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "flip":
        flipped = bytearray(data)
        for where, mask in detail:
            flipped[int(where * len(data))] ^= mask
        path.write_bytes(bytes(flipped))
    elif kind == "foreign":
        shutil.copy(foreign, path)
    elif kind == "delete":
        path.unlink()
    elif kind == "directory":  # a folder where the file was
        path.unlink()
        path.mkdir()
        (path / "x").write_bytes(data[:10])
    else:
        edits = json_edits(json.loads(data), json.loads(foreign.read_bytes()))
        path.write_text(json.dumps(edits[detail % len(edits)]))


def same_json(a: bytes, b: bytes) -> bool:
    with contextlib.suppress(ValueError):
        return json.loads(a) == json.loads(b)
    return False


def effective(pristine: Path, damaged: Path, names) -> set[str]:
    """The files whose damage changed what they say (a flipped space in JSON does not)."""
    out = set()
    for name in names:
        a, b = pristine / name, damaged / name
        if not b.is_file():
            out.add(name)
            continue
        before, after = a.read_bytes(), b.read_bytes()
        if name.endswith(".json") and same_json(before, after):
            continue
        if name.endswith(".sha256") and before.split() == after.split():
            continue
        if before != after:
            out.add(name)
    return out


@EXAMPLES
@given(plan=damages(RUN_FILES))
def test_explain_refuses_any_damage_in_one_line(runs, plan):
    pristine, other = runs["root"] / "a", runs["root"] / "b"
    out = copy_of(pristine)
    try:
        for name, kind, detail in plan:
            foreign = other / name if (other / name).exists() else other / "state" / "0.npz"
            damage(out, name, kind, detail, foreign)
        changed = effective(pristine, out, [name for name, _, _ in plan])
        if not changed:
            assert outcome(out) == runs["a_outcome"]
            return
        message = one_line_refusal(lambda: explain(out, budget_steps=2000, figures=False))
        named = set(RUN_FILES) if "experiment.json" in changed else changed  # a forged pair
        assert any(name in message for name in named), (message, changed)
    finally:
        shutil.rmtree(out.parent)


@EXAMPLES
@given(plan=damages(RUN_FILES))
def test_dl_load_refuses_any_damage_or_returns_the_rows_untouched(runs, plan):
    pristine, other = runs["root"] / "a", runs["root"] / "b"
    out = copy_of(pristine)
    try:
        for name, kind, detail in plan:
            foreign = other / name if (other / name).exists() else other / "state" / "0.npz"
            damage(out, name, kind, detail, foreign)
        changed = effective(pristine, out, [name for name, _, _ in plan])
        if not changed:
            assert_same_rows(dl.load(out, frame="arrow"), dl.load(pristine, frame="arrow"))
            return
        message = one_line_refusal(lambda: dl.load(out, frame="arrow"))
        named = {*RUN_FILES, out.name} if "experiment.json" in changed else changed
        assert any(name in message for name in named), (message, changed)
    finally:
        shutil.rmtree(out.parent)


def _forged_curves(directory: Path, edit) -> None:
    """curves.parquet rewritten by ``edit(table, metadata)``, its checksum forged to match."""
    table, metadata = read_table(directory / "curves.parquet")
    table, metadata = edit(table, metadata)
    digest = write_table(table, directory / "curves.parquet", metadata)
    held = json.loads((directory / "experiment.json").read_text())
    held["files"]["curves.parquet"] = digest
    (directory / "experiment.json").write_text(json.dumps(held))


def _fake_losses(table, metadata):
    index = table.schema.get_field_index("loss")
    column = pa.array([123.0] * table.num_rows)
    return table.set_column(index, "loss", column), metadata


@pytest.mark.parametrize("manifest", ["garbage", "deleted"])
def test_dl_load_never_returns_edited_numbers(runs, manifest):
    out = copy_of(runs["root"] / "a")
    try:
        table, metadata = _fake_losses(*read_table(out / "curves.parquet"))
        write_table(table, out / "curves.parquet", metadata)
        if manifest == "garbage":
            (out / "experiment.json").write_bytes(b"\x00garbage{")
        else:
            (out / "experiment.json").unlink()
        message = one_line_refusal(lambda: dl.load(out))
        assert "experiment.json" in message, message
        one_line_refusal(lambda: dl.provenance(out))
    finally:
        shutil.rmtree(out.parent)


def test_a_budget_over_the_time_limit_is_refused_on_a_verified_directory(runs, capsys):
    from deeplinear import cli

    assert cli.main(["explain", str(runs["root"] / "a"), "--budget", str(10**12)]) == 2
    message = capsys.readouterr().err
    assert "--budget" in message and "--max-hours" in message, message


def test_edited_metadata_with_a_forged_checksum_is_one_line_not_a_traceback(runs):
    out = copy_of(runs["root"] / "a")
    try:
        _forged_curves(out, lambda table, metadata: (table, {**metadata, "config_dir": 5}))
        for command in (["explain", str(out)], ["explain", str(out), "--budget", "0"]):
            result = subprocess.run(
                [sys.executable, "-m", "deeplinear.cli", *command],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert result.returncode == 2, result.stderr
            assert "Traceback" not in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
            assert "config_dir" in result.stderr
    finally:
        shutil.rmtree(out.parent)


def test_explain_on_a_damaged_directory_exits_2_with_one_line(runs):
    out = copy_of(runs["root"] / "a")
    (out / "curves.parquet").write_bytes((out / "curves.parquet").read_bytes()[:100])
    cli = [sys.executable, "-m", "deeplinear.cli", "explain", str(out)]
    result = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "curves.parquet does not match its checksum" in result.stderr


# ---------------------------------------------------------------- sweeps: recompute or refuse


@pytest.fixture(scope="module")
def swept(tmp_path_factory, runs):
    root = tmp_path_factory.mktemp("sweep")
    sweep.run(PLAN, root / "s")
    files = [sweep.group_file(root / "s", g) for g in PLAN.groups]
    # another sweep's metadata and files, for "replaced by a valid file of another experiment"
    other = root / "other"
    (other / "groups").mkdir(parents=True)
    text = SWEEP.replace("seeds = 2", "seeds = 3")
    (other / "sweep.toml").write_text(text)
    digest = sweep.parse(tomllib.loads(text), source=text).digest
    held = json.loads((root / "s" / "experiment.json").read_text())
    (other / "experiment.json").write_text(json.dumps({**held, "sweep_sha256": digest}))
    listing = json.loads((root / "s" / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**listing, "sweep_sha256": digest}))
    for i, f in enumerate(files):  # each group's "foreign" file: another group's, or a run's
        source = files[(i + 1) % len(files)] if i % 2 else runs["root"] / "a" / "curves.parquet"
        shutil.copy(source, other / "groups" / f.name)
        shutil.copy(
            group_files.checksum_file(files[(i + 1) % len(files)]),
            other / f"groups/_{f.stem}.sha256",
        )
    return {"dir": root / "s", "other": other, "table": group_files.read(root / "s")}


def group_of(name: str, plan) -> str | None:
    """The group id a file under groups/ belongs to (None for the sweep's own files)."""
    if not name.startswith("groups/"):
        return None
    digest = name.removeprefix("groups/").lstrip("_").split(".")[0]
    return next(g.id for g in plan.groups if g.id.endswith("|" + digest))


PLAN = sweep.parse(tomllib.loads(SWEEP), source=SWEEP)
SWEEP_FILES = ("experiment.json", "manifest.json", "sweep.toml")
GROUP_FILES = tuple(
    name
    for g in PLAN.groups
    for name in (
        f"groups/{g.file_name}",
        f"groups/_{g.digest}.sha256",
    )
)


@EXAMPLES
@given(plan=damages(SWEEP_FILES + GROUP_FILES))
@example(  # found in CI: a group file deleted, its checksum a folder (then removed): never run
    plan=[(GROUP_FILES[0], "delete", None), (GROUP_FILES[1], "directory", None)]
)
def test_report_refuses_and_a_resume_runs_exactly_the_damaged_groups(swept, plan):
    pristine = swept["dir"]
    out = copy_of(pristine)
    try:
        for name, kind, detail in plan:
            damage(out, name, kind, detail, swept["other"] / name)
        changed = effective(pristine, out, [name for name, _, _ in plan])
        hit = {group_of(name, PLAN) for name in changed} - {None}
        unfinished = {  # a group whose file and checksum are both gone looks never run
            g.id
            for g in PLAN.groups
            if not sweep.group_file(out, g).exists()
            and not group_files.checksum_file(sweep.group_file(out, g)).exists()
        }
        must_refuse = any(
            name != "manifest.json" and group_of(name, PLAN) not in unfinished for name in changed
        )  # a flipped byte in manifest.json may only change what nothing reads
        named = set(changed) | (set(SWEEP_FILES) if changed & set(SWEEP_FILES) else set())
        named |= {n for n in GROUP_FILES if group_of(n, PLAN) in hit}  # a file or its checksum
        try:
            table = group_files.read(out)  # what ``report`` reads first
        except UsageError as error:
            message = str(error)
            assert "\n" not in message and any(name in message for name in named), message
        else:
            assert not must_refuse, (plan, changed)
            keep = [g not in unfinished for g in swept["table"].column("group").to_pylist()]
            assert_same_rows(table, swept["table"].filter(keep))
        for name, kind, _ in plan:  # a folder where a file the sweep writes was: refused
            if kind == "directory" and name != "manifest.json":  # (rewritten first: below)
                message = one_line_refusal(lambda: sweep.run(PLAN, out, force=True))
                assert (
                    "is a folder" in message
                    or "is not a results directory" in message
                    or ("unreadable" in message)
                ), message
            if kind == "directory":
                shutil.rmtree(out / name)
        never_run = {  # as the resume sees them: a checksum that was a folder went with it
            g.id
            for g in PLAN.groups
            if not sweep.group_file(out, g).exists()
            and not group_files.checksum_file(sweep.group_file(out, g)).exists()
        }
        ran, said = [], []
        sweep.run(  # a damaged experiment.json: refused as the CLI refuses it, unless forced
            PLAN,
            out,
            force="experiment.json" in changed,
            progress=lambda d, t, g: ran.append(g.id),
            notice=said.append,
        )
        assert sorted(ran) == sorted(hit), (plan, said)
        assert len(said) == len(hit - never_run), said
        assert_same_rows(group_files.read(out), swept["table"])
    finally:
        shutil.rmtree(out.parent)


def test_report_on_a_damaged_group_exits_2_with_one_line(swept):
    out = copy_of(swept["dir"])
    path = sweep.group_file(out, PLAN.groups[1])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    result = subprocess.run(
        [sys.executable, "-m", "deeplinear.cli", "report", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert f"{path} does not match its checksum" in result.stderr
    assert "re-run 'deeplinear sweep" in result.stderr
    with pytest.raises(UsageError):
        write_report(out)

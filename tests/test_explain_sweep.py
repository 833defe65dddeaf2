"""``explain`` on a sweep directory: a verdict per seed of each group's best configuration, the
same verdict as explaining the equivalent run directory, and bad sweeps refused in one line."""

import json
import tomllib

import numpy as np
import pytest

from deeplinear import cli, sweep
from deeplinear.experiment import config as configs
from deeplinear.experiment import execution
from deeplinear.explain import explain
from deeplinear.store import groups as group_files
from deeplinear.store.results import run_series
from deeplinear.verdict import KINDS
from tiny_sweeps import spectral_sweep

SWEEP = spectral_sweep(seeds=2, targets="1e-6", steps=300)

RUN = """
seed = {seed}
steps = 300
record_every = 10
[problem]
kind = "spectral"
input = 5
output = 6
rank = 3
samples = "population"
condition_number = {kappa!r}
[model]
hidden = [3]
[init]
kind = "scaled_gaussian"
[[methods]]
name = "gd"
learning_rates = [{gd!r}]
[[methods]]
name = "lm"
learning_rates = [1.0]
steps = 20
"""

BUDGET = 5_000  # steps of continuation per run: enough to measure the κ = 10 GD runs' ETAs


@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain_sweep")
    plan = sweep.parse(tomllib.loads(SWEEP), source=SWEEP)
    sweep.run(plan, root / "sweep")
    (root / "sweep.toml").write_text(SWEEP)
    lines = []
    result = explain(root / "sweep", budget_steps=BUDGET, progress=lines.append)
    assert lines[0].startswith(f"explain: {root / 'sweep'}: 4 best configurations")
    assert "explain: rebuilding problem.condition_number=100|gd at η = 0.1 (2 × 300 steps)" in lines
    return root, plan, result, json.loads((root / "sweep" / "verdicts.json").read_text())


def first_below(loss, target):
    hit = np.flatnonzero(loss <= target * loss[0])
    return hit[0] if hit.size else np.inf


def test_one_verdict_per_seed_of_each_best_configuration(explained):
    root, plan, result, held = explained
    series = run_series(group_files.read(root / "sweep"))
    assert held["experiment"] == "sweep" and held["target"] == 1e-6  # the sweep's first target
    entries = {(json.dumps(v["axis"]), v["method"], v["seed"]): v for v in held["verdicts"]}
    assert len(entries) == len(held["verdicts"]) == 2 * 2 * 2
    for group in plan.groups:
        rates = sorted(
            {float(d["learning_rate"][0]) for d in series.values() if d["group"][0] == group.id}
        )

        # the best rate, another route: fewest median steps to 1e-6 over the seeds, ties
        # broken by the lower median final loss (NumPy, on the stored rows)
        def score(rate, group=group):
            runs = [
                d
                for d in series.values()
                if d["group"][0] == group.id and d["learning_rate"][0] == rate
            ]
            steps = np.median([first_below(d["loss"], 1e-6) for d in runs])
            return steps, np.median([d["loss"][-1] for d in runs])

        best = min(rates, key=score)
        for seed in group.seeds:
            entry = entries[json.dumps(dict(group.point)), group.method.name, seed]
            assert entry["group"] == group.id and entry["learning_rate"] == best
            assert entry["run"] == f"{group.label}/seed{seed}/{group.method.name}/{best:g}"
            assert entry["kind"] in KINDS and entry["headline"] and entry["evidence"]
            assert entry["floor_detail"]["value"] == pytest.approx(0.0, abs=1e-25)  # A exact
    printed = "\n".join(result.lines())
    assert "problem.condition_number=10|gd: best η = 0.1 by time to target" in printed
    assert printed.count("converged to the reachable minimum") == 4  # LM, both points and seeds


def test_the_same_verdict_as_the_equivalent_run_directory(explained):
    """Each seed of the sweep's best configuration, run by ``execution.execute`` from its own run
    file and explained as a run directory (with a saved state): the same kind, the same ETA."""
    root, _, _, held = explained
    ours = {v["run"]: v for v in held["verdicts"]}
    best_gd = {
        v["axis"]["problem.condition_number"]: v["learning_rate"]
        for v in held["verdicts"]
        if v["method"] == "gd"
    }
    for kappa in (10.0, 100.0):
        for seed in (0, 1):
            path = root / f"k{kappa:g}s{seed}.toml"
            path.write_text(RUN.format(seed=seed, kappa=kappa, gd=best_gd[kappa]))
            out = root / path.stem
            execution.execute(configs.load(path), out)
            theirs = explain(out, target=1e-6, budget_steps=BUDGET, figures=False)
            assert len(theirs.verdicts) == 2
            for verdict in theirs.verdicts:
                entry = ours[f"problem.condition_number={kappa:g}/{verdict.run}"]
                assert entry["kind"] == verdict.kind, (entry["headline"], verdict.headline)
                assert entry["eta_method"] == verdict.eta_method
                assert entry["step"] == verdict.step
                if verdict.eta_steps is not None:
                    np.testing.assert_allclose(entry["eta_steps"], verdict.eta_steps, rtol=1e-6)
                assert entry["excess_loss"] == pytest.approx(verdict.excess_loss, rel=1e-6)
    kinds = {v["kind"] for v in held["verdicts"]}
    assert {"converged", "converging linearly"} <= kinds  # the comparison is not vacuous
    assert any(v["eta_method"] == "measured" and v["step"] > 300 for v in held["verdicts"])


def refusal(capsys, *args) -> str:
    """``deeplinear explain ARGS`` in-process: exit 2 and one line on stderr, returned."""
    assert cli.main(["explain", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deeplinear: error: "), err
    return err[0]


def test_an_unfinished_sweep_and_a_damaged_group_are_refused(tmp_path, capsys):
    text = SWEEP.replace("seeds = 2", "seeds = 1").replace("steps = 300", "steps = 30")
    plan = sweep.parse(tomllib.loads(text), source=text)
    files = sweep.run(plan, tmp_path)
    (tmp_path / "verdicts.json").unlink(missing_ok=True)
    damaged = files[1].read_bytes()
    files[1].write_bytes(damaged[:-20] + bytes(20))
    message = refusal(capsys, str(tmp_path), "--no-figures")
    assert str(files[1]) in message and "checksum" in message
    files[1].unlink()
    group_files.checksum_file(files[1]).unlink()  # as a sweep stopped before this group
    message = refusal(capsys, str(tmp_path), "--no-figures")
    assert "unfinished sweep (3 of 4 groups done" in message and "deeplinear sweep" in message
    assert not (tmp_path / "verdicts.json").exists()


def test_a_budget_over_the_time_limit_is_refused(tmp_path, capsys):
    text = SWEEP.replace("seeds = 2", "seeds = 1").replace("steps = 300", "steps = 30")
    sweep.run(sweep.parse(tomllib.loads(text), source=text), tmp_path)
    message = refusal(capsys, str(tmp_path), "--budget", str(10**12))
    assert "explain of this sweep with --budget" in message and "--max-hours" in message


def test_the_command_line_explains_a_sweep(explained, capsys):
    """``deeplinear explain SWEEP_DIR``: a title per best configuration, its seeds' verdicts,
    ``verdicts.json`` (with --budget 0 the verdicts are extrapolated from the records alone)."""
    root = explained[0]
    assert cli.main(["explain", str(root / "sweep"), "--target", "1e-6", "--budget", "0"]) == 0
    out = capsys.readouterr().out
    held = json.loads((root / "sweep" / "verdicts.json").read_text())
    assert len(held["verdicts"]) == 8 and held["target"] == 1e-6
    for entry in held["verdicts"]:  # not continued: the evidence ends where the record ends
        assert entry["step"] == {"gd": 300, "lm": 20}[entry["method"]], entry["headline"]
    for entry in held["verdicts"]:
        assert f"{entry['run']}: {entry['headline']}" in out
    assert out.count("best η = ") == 4 and f"wrote {root / 'sweep' / 'verdicts.json'}" in out
    from deeplinear.report.sweep_report import explained
    from deeplinear.store.groups import read_groups

    groups = read_groups(root / "sweep")[1]  # judged on the group files the report reads
    assert held["judged"] == {g: meta["sha256"] for g, meta in groups.items()}
    assert sum(len(v) for v in explained(root / "sweep", groups).values()) == 8


def test_a_rerun_that_differs_only_at_round_off_is_not_a_drift():
    """The re-run check compares losses relative to max(loss, the floor's resolution): a loss
    near 1e-31 that comes back as 2e-31 is round-off, a 1e-6 change at 1e-2 is not."""
    from deeplinear.explain.sweep_directory import REBUILT, _drift

    stored = np.array([1.0, 1e-2, 1e-9, 1e-31])
    again = np.array([1.0, 1e-2, 1e-9, 2e-31])
    assert _drift(again, stored) > 0.9  # relative to the stored loss alone
    assert _drift(again, stored, resolution=1e-20) <= REBUILT
    moved = again.copy()
    moved[1] *= 1 + 1e-6
    assert _drift(moved, stored, resolution=1e-20) == pytest.approx(1e-6, rel=1e-6)
    assert _drift(np.array([np.nan]), np.array([1.0])) == 0.0  # nothing in common

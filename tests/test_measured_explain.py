"""``explain`` on completion runs and sweeps: the reachable floor, the fit and the recovery.

Each case's truth is known independently of the verdict (a row no observation touches, the noise
a rank-2 fit cannot absorb, the step at which a longer run actually reaches the target), and each
is one where a simple rule fails: "loss → 0 means recovered", "the loss stopped, so it is at the
floor", "the ETA of the loss is the ETA of the recovery".
"""

import json

import numpy as np
import pytest

from deeplinear import sweep
from deeplinear.experiment import config as configs
from deeplinear.experiment import execution
from deeplinear.explain import explain
from deeplinear.problems.measured import capacity
from deeplinear.report.sweep_report import write_report
from deeplinear.verdict import RECOVERY_KINDS

SHAPE, RANK, P = (30, 20), 2, 0.6  # every run here has these shapes: one compile each


def run_file(problem: str, method: str, rate: float, steps: int, init="spectral_estimate"):
    return f"""seed = 0
steps = {steps}
record_every = 10
checkpoints = 0
[problem]
kind = "completion"
{problem}
[model]
hidden = [{RANK}]
[init]
kind = "{init}"
[[methods]]
name = "{method}"
learning_rates = [{rate}]
"""


DRAWN = f"""rows = {SHAPE[0]}
cols = {SHAPE[1]}
rank = {RANK}
law = "linear"
probability = {P}
"""


def execute(tmp_path, name: str, text: str):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    config = configs.load(path)
    out = tmp_path / name
    result = execution.execute(config, out)
    return out, result


def verdicts(directory) -> dict:
    return json.loads((directory / "verdicts.json").read_text())


def test_fits_the_observations_but_does_not_recover(tmp_path):
    """Row 0 is never observed: its entries are free, so M is not determined (M with row 0 set
    to 0 has the same observations and rank ≤ 2). The loss reaches 0 (converged to the floor
    the truth attains), but W's row 0 stays at its initial 0 (no observation moves it): the
    recovery error stays at ‖M₀‖/‖M‖ and the recovery verdict says so."""
    rng = np.random.default_rng(3)
    U = np.linalg.qr(rng.standard_normal((SHAPE[0], RANK)))[0]
    V = np.linalg.qr(rng.standard_normal((SHAPE[1], RANK)))[0]
    M = (U * [1.0, 0.5]) @ V.T
    candidates = np.arange(SHAPE[1], SHAPE[0] * SHAPE[1])  # every entry but row 0's
    m = capacity(SHAPE, P)  # the drawn problems' padded size: the same compiled programs
    chosen = np.sort(rng.choice(candidates, m, replace=False))
    rows, cols = np.divmod(chosen, SHAPE[1])
    np.savez(tmp_path / "obs.npz", rows=rows, cols=cols, values=M[rows, cols], shape=SHAPE, truth=M)
    other = M.copy()
    other[0] = 0.0  # another interpolant of rank ≤ 2: M is not determined by the observations
    assert np.linalg.matrix_rank(other) <= RANK
    assert np.array_equal(other[rows, cols], M[rows, cols]) and not np.allclose(other, M)
    out, _ = execute(tmp_path, "free", run_file('path = "obs.npz"', "scaled-gd", 0.4, 500))
    explained = explain(out, budget_steps=2000, figures=False)
    record = verdicts(out)
    # said before any verdict: row 0 (and only it) holds fewer than r entries
    assert explained.lines()[0].startswith("not identifiable: row 0 with fewer than r = 2")
    counts = record["identifiability"]
    assert not counts["identifiable"] and counts["short_rows"] == [0] and counts["short_cols"] == []
    assert record["floor"]["value"] == 0.0 and record["floor"]["known"]
    (verdict,) = record["verdicts"]
    assert verdict["kind"] == "converged"
    recovery = verdict["recovery"]
    assert recovery["kind"] == "does not recover", recovery["headline"]
    assert "does not recover" in recovery["headline"]
    row_part = np.linalg.norm(M[0]) / np.linalg.norm(M)  # W's row 0 stays 0
    assert recovery["error"] == pytest.approx(row_part, rel=1e-6)


def test_a_well_posed_completion_is_fitted_and_recovered(tmp_path):
    """368 of 600 entries of a rank-2 30 × 20 matrix: ScaledGD recovers M to round-off; both
    verdicts say so (recovery to 1e-12, checked against M formed densely here)."""
    out, result = execute(tmp_path, "posed", run_file(DRAWN, "scaled-gd", 0.4, 500))
    explained = explain(out, budget_steps=0, figures=False, recovery_target=1e-12)
    assert verdicts(out)["identifiability"]["identifiable"]
    assert not any("identifiable" in line for line in explained.lines())
    (verdict,) = verdicts(out)["verdicts"]
    assert verdict["kind"] == "converged", verdict["headline"]
    recovery = verdict["recovery"]
    assert recovery["kind"] == "recovered" and recovery["error"] <= 1e-12
    weights = [np.asarray(w)[0] for w in result.batches[0][1].final_weights]
    W = weights[0] @ weights[1]
    M = result.setup.problem.dense_truth()
    assert np.linalg.norm(W - M) / np.linalg.norm(M) <= 1e-12
    assert recovery["error"] == pytest.approx(
        np.linalg.norm(W - M) / np.linalg.norm(M), rel=1e-3, abs=1e-15
    )


def test_noisy_completion_has_an_unknown_floor_and_no_false_convergence(tmp_path):
    """Label noise σ = 1e-3: a rank-2 fit of 368 noisy entries cannot reach 0 (it has 96
    degrees of freedom; the noise it cannot absorb is ≈ (m − 96)σ²), so the floor is unknown,
    reported so, and the run that stops there is not called converged."""
    out, result = execute(
        tmp_path, "noisy", run_file(DRAWN + "noise = 1e-3\n", "scaled-gd", 0.4, 500)
    )
    problem = result.setup.problem
    floor = problem.floor(result.setup.widths)
    assert not floor.known and floor.kinds == ("unknown",) and floor.value == 0.0
    assert floor.estimate == pytest.approx(problem.count * 1e-6)
    explain(out, budget_steps=3000, figures=False)
    record = verdicts(out)
    assert record["floor"]["known"] is False and "unknown" in record["floor"]["why"]
    (verdict,) = record["verdicts"]
    final = result.table.column("loss").to_numpy()[-1]
    dof = RANK * (sum(SHAPE) - RANK)
    assert final > 0.5 * (problem.count - dof) * 1e-6  # independently: far above round-off
    assert verdict["kind"] != "converged" and "unknown" in verdict["headline"]
    assert "local minimum" in verdict["headline"]  # zero gradient, Hessian ≥ 0: it stopped
    assert verdict["recovery"]["kind"] == "does not recover"
    assert verdict["recovery"]["error"] > 1e-4  # the noise's statistical error, not round-off


def test_a_slow_linear_recovery_has_an_eta_within_a_factor_of_two(tmp_path):
    """GD at κ = 20: the recovery error falls linearly by ~1 % per step. The ETA extrapolated
    from 2000 recorded steps to 1e-13 is checked against the step a 4000-step run of the same
    file actually reaches it at."""
    problem = DRAWN + "condition_number = 20\n"
    out, _ = execute(tmp_path, "slow", run_file(problem, "gd", 0.6, 2000))
    explain(out, budget_steps=0, figures=False, recovery_target=1e-13)
    recovery = verdicts(out)["verdicts"][0]["recovery"]
    assert recovery["kind"] == "recovering linearly", recovery["headline"]
    low, high = recovery["eta_steps"]
    _, longer = execute(tmp_path, "slow-long", run_file(problem, "gd", 0.6, 4000))
    error = longer.table.column("recovery_error").to_numpy()
    steps = longer.table.column("step").to_numpy()
    needed = steps[np.flatnonzero(error <= 1e-13)[0]] - 2000  # more steps after the record
    assert needed > 100  # the target lies well beyond the record
    assert needed / 2 <= low <= high <= 2 * needed


SWEEP = f"""seeds = 2
targets = [1e-6]
steps = 100
record_every = 10
[problem]
kind = "completion"
{DRAWN}
[model]
hidden = [{RANK}]
[init]
kind = "spectral_estimate"
[axes]
"problem.noise" = [0.0]
[[methods]]
name = "gd"
learning_rates = [0.4]
"""


def test_a_sweep_of_a_measured_problem_has_a_recovery_verdict_per_seed(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP)
    out = tmp_path / "sweep"
    sweep.run(sweep.load(path), out)
    explain(out, budget_steps=0)
    record = verdicts(out)
    assert record["recovery_target"] == pytest.approx(1e-3)  # √ the sweep's target
    assert len(record["verdicts"]) == 2  # 1 axis point × 2 seeds
    from deeplinear.store.frames import load

    frame = load(out)
    for verdict in record["verdicts"]:
        recovery = verdict["recovery"]
        assert recovery["kind"] in RECOVERY_KINDS and recovery["headline"]
        rows = frame[frame["run_id"] == verdict["run"]].sort_values("step")
        assert recovery["error"] == rows["recovery_error"].iloc[-1]  # judged on its own run
        assert verdict["floor_detail"]["known"] and verdict["floor_detail"]["value"] == 0.0
    page = write_report(out)  # the recovery section: the final error and effective-rank curves
    (row,) = json.loads((out / "summary.json").read_text())["rows"]
    finals = [r["recovery_error"].iloc[-1] for _, r in frame.sort_values("step").groupby("run_id")]
    assert row["final_recovery"]["median"] == pytest.approx(np.median(finals), rel=1e-12)
    # steps to the recovery target (default √ the loss target), from the frame independently
    (cell,) = row["recovery_targets"]
    assert cell["target"] == pytest.approx(1e-3)
    firsts = []
    for _, run in frame.sort_values("step").groupby("run_id"):
        hit = np.flatnonzero(run["recovery_error"].to_numpy() <= 1e-3)
        firsts.append(float(run["step"].to_numpy()[hit[0]]) if hit.size else np.inf)
    assert cell["solved"] == int(np.isfinite(firsts).sum())
    median = cell["steps"]["median"]
    assert (median is None and not np.isfinite(np.median(firsts))) or median == np.median(firsts)
    assert "recovery_steps@0.001" in (out / "summary.csv").read_text()
    assert (out / "recovery.png").is_file() and "final_recovery" in (
        out / "summary.csv"
    ).read_text()
    drawn_in_a_browser(page, ["recovery", "rank"])


def drawn_in_a_browser(page_path, ids):
    """Every chart of the page draws in Chromium with no console error; ``ids`` among them."""
    from playwright.sync_api import sync_playwright

    from test_report_browser import chromium

    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(page_path.as_uri())
            drawn = "[...document.querySelectorAll('.chart')].every(e => e.dataset.drawn)"
            page.wait_for_function(drawn, timeout=15_000)
            marks = dict(
                page.eval_on_selector_all(
                    ".chart", "es => es.map(e => [e.id, e.querySelectorAll('svg path').length])"
                )
            )
        finally:
            browser.close()
    assert not problems, problems
    for chart in ids:
        assert marks.get(chart, 0) > 0, marks


@pytest.mark.parametrize("given", [1.0, 1.5, 0.0, -1e-3])
def test_a_recovery_target_outside_zero_one_is_refused_in_one_line(given):
    from deeplinear.errors import UsageError
    from deeplinear.explain.judging import recovery_target_for

    with pytest.raises(UsageError) as caught:
        recovery_target_for(1e-10, given)
    assert "--recovery-target must be in (0, 1)" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert recovery_target_for(1e-10, None) == pytest.approx(1e-5)  # √target by default


def test_a_sweeps_recovery_targets_are_explains_default(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(
        SWEEP.replace("targets = [1e-6]", "targets = [1e-6]\nrecovery_targets = [2e-4]", 1)
    )
    out = tmp_path / "sweep"
    sweep.run(sweep.load(path), out)
    explain(out, budget_steps=0, figures=False)
    assert verdicts(out)["recovery_target"] == pytest.approx(2e-4)  # not √1e-6
    explain(out, budget_steps=0, figures=False, recovery_target=5e-2)
    assert verdicts(out)["recovery_target"] == pytest.approx(5e-2)  # the flag wins


def test_explain_and_the_report_default_to_one_recovery_target(tmp_path):
    """With two loss targets and no recovery_targets, explain of the sweep judges recovery
    against the error the report counts steps to (√ of the last target, 1e-4), not √ of the
    first (1e-2, explain's old default)."""
    from deeplinear.sweep.sweep_file import recovery_goals

    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP.replace("targets = [1e-6]", "targets = [1e-4, 1e-8]", 1))
    out = tmp_path / "sweep"
    plan = sweep.load(path)
    sweep.run(plan, out)
    explain(out, budget_steps=0, figures=False)
    assert recovery_goals(plan) == pytest.approx((1e-4,))
    assert verdicts(out)["recovery_target"] == pytest.approx(recovery_goals(plan)[-1])
    explain(out, budget_steps=0, figures=False, target=1e-6)  # an explicit loss target
    assert verdicts(out)["recovery_target"] == pytest.approx(1e-3)  # √ of it, as for a run


def test_a_sweep_says_which_seeds_cannot_determine_m_before_their_verdicts(tmp_path):
    """An axis over ρ: at 0.8 no method can recover M (77 entries for the 96 degrees of freedom
    of rank 2 at 30 × 20), and explain says so for each seed, before the group's verdicts; at
    ρ = 2 only a line with fewer than r entries could make it say so, and it names the lines."""
    path = tmp_path / "rho.toml"
    path.write_text(
        f"seeds = 2\ntargets = [1e-6]\nsteps = 20\nrecord_every = 10\n[problem]\n"
        f'kind = "completion"\nrows = {SHAPE[0]}\ncols = {SHAPE[1]}\nrank = {RANK}\n'
        f'oversampling = 2.0\n[model]\nhidden = [{RANK}]\n[init]\nkind = "spectral_estimate"\n'
        '[axes]\n"problem.oversampling" = [0.8, 2.0]\n[[methods]]\nname = "gd"\n'
        "learning_rates = [0.4]\n"
    )
    out = tmp_path / "rho"
    sweep.run(sweep.load(path), out)
    lines = explain(out, budget_steps=0, figures=False).lines()
    dof = RANK * (SHAPE[0] + SHAPE[1] - RANK)
    rho = round(0.8 * dof) / dof
    said = "\n".join(lines)
    for seed in (0, 1):
        assert f"seed {seed}: not identifiable: ρ = {rho:.3g} < 1" in said, said
    titled = [line for line in said.splitlines() if line.startswith("  seed ")]
    assert len(titled) == 2 and all("ρ = 0.802 < 1" in line for line in titled), titled
    for verdict in verdicts(out)["verdicts"]:
        counts = verdict["identifiability"]
        low = verdict["axis"]["problem.oversampling"] == 0.8
        assert counts["oversampling"] == pytest.approx(rho if low else 2.0, rel=1e-2)
        short = counts["short_rows"] or counts["short_cols"]
        assert counts["identifiable"] == (not low and not short)
        recovery = verdict["recovery"]
        if low:  # no ETA, no "stalled" or "too short" (it said "too short" here: run longer)
            assert recovery["eta_steps"] is None and recovery["kind"] in (
                "does not recover", "diverged", "unstable", "recovered"
            ), recovery  # fmt: skip
            if recovery["kind"] == "does not recover":
                assert "no method could: not identifiable" in recovery["headline"]

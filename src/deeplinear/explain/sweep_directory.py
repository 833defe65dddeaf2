"""``explain`` on a sweep directory: a verdict for every seed of each group's best configuration.

For each group (axis point × method) the best learning rate is the one the report shows: the
sweep's ``select`` on its first target. Every seed of that configuration is judged with the
machinery of a run directory (``explain``): against the reachable minimum of that seed's problem
at that axis point (``floors.reachable_minimum``), continued in segments within ``--budget``.

Sweeps save no states, so the continuation starts from a **rebuilt** run: the group's run file
for that seed (``Sweep.run_config``) re-run at the best learning rate for the recorded steps (all
seeds of a group in one batch, as the sweep ran them). The verdict then judges the sweep's own
record, continued from the rebuilt end; the rebuilt record is checked against the stored one
(relative difference of the losses, ``REBUILT``), and a disagreement is said in the evidence. Why
rebuild rather than extrapolate from the record alone: a continuation *measures* the ETA, finds
saddles and unstable crossings, and gives the same verdict as ``deeplinear run`` of that run file
followed by ``deeplinear explain`` (the test checks it); the rebuild costs the recorded steps of
the best configuration only (one learning rate of each grid), usually far less than the sweep.

``verdicts.json`` holds the verdict records of a run directory plus ``group`` (``Group.id``),
``axis`` (the point as {TOML path: value}), ``method``, ``learning_rate`` and ``seed``; on a
completion or sensing problem with a truth each has its ``recovery`` verdict (null otherwise).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from deeplinear.core import limits
from deeplinear.core.backend import jax
from deeplinear.diagnostics import probes, theory
from deeplinear.errors import UsageError
from deeplinear.experiment import budget, execution
from deeplinear.explain.judging import (
    Context,
    RunRecord,
    identifiability_of,
    judge_run,
    recovery_target_for,
)
from deeplinear.explain.run_directory import (
    Explanation,
    continue_member,
    theory_comparison,
)
from deeplinear.loop import runner
from deeplinear.methods import make_method
from deeplinear.store import directories as rundir
from deeplinear.store.groups import read_groups
from deeplinear.store.jsonfiles import dumps, jsonable
from deeplinear.store.results import run_series
from deeplinear.sweep.sweep_file import Sweep, load_stored
from deeplinear.sweep.tuning import best_settings, grid_extensions
from deeplinear.verdict import default_recovery_target

REBUILT = 1e-8  # largest relative loss difference between the rebuilt and the stored record


def is_sweep(directory: Path) -> bool:
    """Whether ``directory`` holds a sweep's files (``deeplinear sweep``), not a run's."""
    if rundir.holds_a_run(directory):
        return False  # a run directory, however damaged: explain's own checks name the fault
    return any((directory / name).exists() for name in ("sweep.toml", "manifest.json", "groups"))


def best_rates(table, plan: Sweep, metadata: dict) -> dict[str, float]:
    """Group id → its best learning rate by the sweep's ``select`` on its first target
    (``tuning.best_settings``: the report's choice, over the grid as extended)."""

    best = best_settings(table, plan.targets[0], plan.select, grid_extensions(metadata))
    return {entry.group: float(entry.learning_rate) for entry in best}


def _finished(directory: Path):
    """The sweep's table, group metadata and plan, refusing (one line) a sweep with a group not
    yet finished."""
    table, metadata = read_groups(directory)  # checksums, manifest, sweep file
    plan = load_stored(directory)
    missing = [g for g in plan.groups if g.id not in metadata]
    if missing:
        raise UsageError(
            f"{directory} is an unfinished sweep ({len(plan.groups) - len(missing)} of "
            f"{len(plan.groups)} groups done; {missing[0].name} is not): finish it with "
            f"'deeplinear sweep SWEEP --out {directory}', then explain it"
        )
    return table, metadata, plan


def _one_rate(config, rate: float):
    """``config`` with its one method at ``rate`` only."""
    spec = dataclasses.replace(config.methods[0], learning_rates=(rate,))
    return dataclasses.replace(config, methods=(spec,))


def check_budget(plan: Sweep, rates: dict[str, float], budget_steps: int) -> None:
    """Refuse, before any work, a rebuild and continuation over the memory or time limits
    (``limits.Limits``): per group, the recorded steps and the budget for every seed."""
    peak, seconds = 0.0, 0.0
    for group in plan.groups:
        config = _one_rate(plan.run_config(group, group.seeds[0]), rates[group.id])
        spec = config.methods[0]
        method = make_method(spec.name, **spec.hyperparameters)
        if not method.in_loop:  # out-of-loop peers and baselines are judged on their record
            continue
        estimate = budget.estimate_run(config, steps=spec.steps + budget_steps)
        compiling = budget.compile_seconds(method, budget.dims(config))
        peak = max(peak, estimate.bytes)
        seconds += compiling + len(group.seeds) * (estimate.seconds - compiling)
    limits.check(
        limits.Estimate(peak, seconds, "use a smaller sweep", "give a smaller --budget"),
        limits.Limits.from_env(),
        f"explain of this sweep with --budget {budget_steps}",
    )


def _rebuild(method, setups, config, rate: float):
    """Every seed's run at ``rate`` again, in one batch: (final weights, final states, curves)."""

    def stack(trees):
        return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)

    result = runner.run(
        method,
        stack([s.objective for s in setups]),
        stack([s.weights for s in setups]),
        [rate] * len(setups),
        config.methods[0].steps,
        record_every=config.record_every,
        probe=stack([s.probe for s in setups]),
        shared=False,
    )
    return result.final_weights, result.final_state, result.curves


def _gn_rate(method, weights, setup, loss: float, step: int, rate: float):
    """The Gauss-Newton predicted rate at the run's end, as a run directory's last checkpoint
    gives it (gradient-like methods, small models, a finite end)."""
    if not method.gauss_newton_rate or not execution.spectrum_fits(setup):  # as a run's
        return None
    if not np.isfinite(loss) or loss > 1e100:
        return None
    spectrum = probes.gauss_newton_spectrum(weights, setup.objective, step)
    if not np.all(np.isfinite(spectrum.eigenvalues)):
        return None
    return theory.gn_predicted_rate(spectrum.lambda_min, rate)


def _targets(plan: Sweep, target: float | None, recovery_target: float | None):
    """The loss target (default the sweep's first, checked to lie in (0, 1)) and the recovery
    target (default the sweep's last ``recovery_targets``, else √ of its last target)."""
    if recovery_target is None:  # the report's default too (``sweep.recovery_goals``)
        loss_targets = plan.targets if target is None else (target,)
        recovery_target = default_recovery_target(loss_targets, plan.recovery_targets)
    target = plan.targets[0] if target is None else target
    if not 0 < target < 1:
        raise UsageError(
            f"--target must be in (0, 1) (relative to the initial loss), got {target:g}"
            + (" (the sweep's first target): give --target" if target == plan.targets[0] else "")
        )
    return target, recovery_target_for(target, recovery_target)


def _group_runs(directory: Path, plan: Sweep, group, rate: float, series: dict):
    """A group's run files at ``rate`` (one per seed), their setups, and the runs' ids (within
    the group and in the sweep's rows), refusing a sweep whose rows lack one."""
    spec = group.method
    configs_ = [_one_rate(plan.run_config(group, seed), rate) for seed in group.seeds]
    setups = [execution.build(c) for c in configs_]
    local = [execution.run_id(c.seed, spec.name, rate, spec.hyperparameters) for c in configs_]
    ids = [f"{group.label}/{run_id}" for run_id in local]
    for run_id in ids:
        if run_id not in series:
            raise UsageError(
                f"{directory}: the sweep's rows have no run {run_id}: re-run it with "
                f"'deeplinear sweep SWEEP --out {directory} --force'"
            )
    return configs_, setups, local, ids


def _judge_member(method, rate, rebuilt, member, run, data, context, progress):
    """The verdict of one seed (``run``: its run file, setup, id in the sweep and in the group)
    and its theory comparison; continued from the rebuilt batch's ``member`` when ``rebuilt``."""
    config, setup, run_id, short = run
    floor = setup.floor
    comparison = theory_comparison(config, setup, {short: data})
    extend, gn_rate, drift = None, None, None
    if rebuilt is not None:
        drift = _drift(rebuilt[2][member].loss, data["loss"], floor.resolution)
        extend = continue_member(
            method, setup, rebuilt, member, rate, data["step"][-1], progress, run_id
        )
        ends = tuple(np.asarray(w)[member] for w in rebuilt[0])
        gn_rate = _gn_rate(method, ends, setup, data["loss"][-1], int(data["step"][-1]), rate)
    notes_ = ()
    if drift is not None and drift > REBUILT:
        notes_ = (
            f"the continuation starts from a re-run of the recorded steps whose losses "
            f"differ from the sweep's by up to {drift:.1e} (relative): its numbers are "
            "those of the re-run",
        )
    record = RunRecord(run_id, data, method, rate, setup, floor, extend, gn_rate, notes_)
    return judge_run(record, context, comparison), comparison


def _explain_group(directory, plan, group, rate, series, context, progress):
    """The verdicts of every seed of a group's best configuration, rebuilt at ``rate`` and
    continued: (verdicts, their records for ``verdicts.json``, theory notes by run id)."""
    say = progress or (lambda line: None)
    spec = group.method
    method = make_method(spec.name, **spec.hyperparameters)
    configs_, setups, local, ids = _group_runs(directory, plan, group, rate, series)
    finite = [bool(np.isfinite(series[i]["loss"][-1])) for i in ids]
    rebuilt = None
    if method.in_loop and any(finite) and context.budget_steps > 0:
        steps = configs_[0].methods[0].steps
        say(f"explain: rebuilding {group.name} at η = {rate:g} ({len(ids)} × {steps:,} steps)")
        rebuilt = _rebuild(method, setups, configs_[0], rate)
    verdicts, records, notes, lines = [], [], {}, []
    for member, run in enumerate(zip(configs_, setups, ids, local)):
        config, run_id = run[0], run[2]
        counts = identifiability_of(run[1])
        if counts is not None and not counts.identifiable:
            lines += [f"  seed {config.seed}: {line}" for line in counts.lines()]
        data = series[run_id]
        continued = rebuilt if finite[member] else None
        verdict, comparison = _judge_member(
            method, rate, continued, member, run, data, context, progress
        )
        if comparison.get("note") and comparison.get("applies"):
            notes[run_id] = comparison["note"]
        verdicts.append(verdict)
        records.append(
            {
                **verdict.record(),
                "group": group.id,
                "axis": dict(group.point),
                "method": spec.name,
                "learning_rate": rate,
                "seed": config.seed,
                "identifiability": None if counts is None else counts.record(),
            }
        )
    return verdicts, records, notes, lines


def _write_verdicts(
    directory: Path, plan: Sweep, context: Context, records, notes, judged, complete=True
) -> Path:
    """``verdicts.json``: the verdict records and the theory notes, with what they were judged
    against (``judged``: each group file's sha256); written after every group (``complete``
    false until the last), so an interrupted explain keeps the verdicts it finished."""
    payload = {
        "experiment": "sweep",
        "complete": complete,
        "judged": judged,
        "target": context.target,
        "relative_to": context.relative_to,
        "select": plan.select,
        "selected_on": plan.targets[0],  # the target the best learning rates were chosen on
        "recovery_target": context.recovery_target,
        "floor": None,  # one per axis point and seed: each verdict's floor_detail
        "verdicts": [jsonable(r, private=False) for r in records],
        "theory": {"notes": notes},
    }
    path = directory / "verdicts.json"
    rundir.write_atomic(path, dumps(payload, indent=2, default=str).encode())
    return path


def explain_sweep(
    directory: Path,
    *,
    target: float | None,
    relative_to: str,
    budget_steps: int,
    progress: Callable[[str], None] | None,
    recovery_target: float | None = None,
):
    """Verdicts for every seed of each group's best configuration; writes ``verdicts.json``.
    Runs of a measured problem with a truth get a recovery verdict too (``recovery_target``,
    default the sweep's last ``recovery_targets``, else √ of its last target, as the report)."""

    say = progress or (lambda line: None)
    table, metadata, plan = _finished(directory)
    target, recovery_target = _targets(plan, target, recovery_target)
    context = Context(target, relative_to, budget_steps, recovery_target)
    rates = best_rates(table, plan, metadata)
    check_budget(plan, rates, budget_steps)
    series = run_series(table)
    say(  # after the checks: a refused sweep gets its one line only
        f"explain: {directory}: {len(plan.groups)} best configurations × their seeds, "
        f"continued up to {budget_steps:,} steps"
    )
    verdicts, records, titles, notes, judged = [], [], {}, {}, {}
    for group in plan.groups:
        rate = rates[group.id]
        found = _explain_group(directory, plan, group, rate, series, context, progress)
        titles[len(verdicts)] = "\n".join(
            [
                f"{group.name}: best η = {rate:g} by {plan.select.replace('_', ' ')} "
                f"({plan.targets[0]:g}), {len(group.seeds)} seed{'s' * (len(group.seeds) > 1)}",
                *found[3],  # seeds whose Ω cannot determine M: said before their verdicts
            ]
        )
        verdicts += found[0]
        records += found[1]
        notes |= found[2]
        judged[group.id] = metadata[group.id]["sha256"]
        if group is not plan.groups[-1]:
            _write_verdicts(directory, plan, context, records, notes, judged, complete=False)
    path = _write_verdicts(directory, plan, context, records, notes, judged)
    theory_note = {"note": _theory_summary(notes)} if notes else {}
    return Explanation(verdicts, theory_note, [path], titles)


def _drift(again: np.ndarray, stored: np.ndarray, resolution: float = 0.0) -> float:
    """Largest relative difference of two loss records (over their common finite rows), each
    relative to the larger of the stored loss and ``resolution`` (the floor's round-off: two
    re-runs of a loss near 1e-31 differ by 100 % of it and agree to the loop's precision)."""
    n = min(len(again), len(stored))
    a, b = np.asarray(again[:n]), np.asarray(stored[:n])
    both = np.isfinite(a) & np.isfinite(b)
    if not both.any():
        return 0.0
    scale = np.maximum(np.abs(b[both]), max(resolution, np.finfo(np.float64).tiny))
    return float(np.max(np.abs(a[both] - b[both]) / scale))


def _theory_summary(notes: dict[str, str]) -> str:
    distinct = sorted(set(notes.values()))
    return (
        distinct[0] if len(distinct) == 1 else f"{len(notes)} runs compared: " + "; ".join(distinct)
    )

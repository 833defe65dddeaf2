"""``explain(DIR)``: verdicts for a results directory, a run's (``run_directory``) or a sweep's
(``sweep_directory``); both judge each run by ``judging.judge_run``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from deeplinear.errors import UsageError
from deeplinear.explain.run_directory import Explanation, explain_run
from deeplinear.explain.sweep_directory import explain_sweep, is_sweep
from deeplinear.store import locks


def explain(
    directory: str | Path,
    *,
    target: float | None = None,
    relative_to: str = "initial",
    budget_steps: int = 1_000_000,
    figures: bool = True,
    progress: Callable[[str], None] | None = None,
    recovery_target: float | None = None,
) -> Explanation:
    """Verdicts for every run in ``directory`` (written by ``deeplinear run``), or for every seed
    of each group's best configuration in a sweep directory (``sweep_verdicts``; no figures: the
    report draws the sweep).

    ``target`` (default 1e-10, or a sweep's first target) is relative to the initial loss, or
    with ``relative_to="excess"`` to the initial excess over the reachable minimum.
    ``progress`` receives a line every few seconds while a run is being continued; one with a
    ``steps(done, total)`` method (a ``core.progress.Progress``) gets a line per continued run
    and its steps after every chunk instead.
    ``recovery_target`` (default √target) is the recovery error ‖W − M‖_F/‖M‖_F the recovery
    verdict of a measured problem with a truth judges against.
    """
    directory = Path(directory)
    if relative_to not in ("initial", "excess"):
        raise UsageError(f"--relative-to must be 'initial' or 'excess', got {relative_to!r}")
    if budget_steps < 0:
        raise UsageError(f"--budget must be ≥ 0 steps, got {budget_steps}")

    with locks.writing(directory, None):  # verdicts.json and figures: one writer
        if is_sweep(directory):
            return explain_sweep(
                directory,
                target=target,
                relative_to=relative_to,
                budget_steps=budget_steps,
                progress=progress,
                recovery_target=recovery_target,
            )
        return explain_run(
            directory,
            target=target,
            relative_to=relative_to,
            budget_steps=budget_steps,
            figures=figures,
            progress=progress,
            recovery_target=recovery_target,
        )

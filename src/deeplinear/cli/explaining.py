"""``deeplinear explain``: verdicts for a run or sweep directory, its --budget checked against
the time limit first."""

from __future__ import annotations

from pathlib import Path

from deeplinear.cli.checks import apply_limits, use_cache, writable_directory
from deeplinear.errors import UsageError
from deeplinear.store.locks import writing


def explain_command(args) -> int:

    apply_limits(args)
    directory = writable_directory(args.directory, "explain", "verdicts.json and figures")
    with writing(directory):  # one writer: not while a run or sweep writes there
        _explain_budget(directory, args.budget)
        return _explain(args, directory)


def _explain(args, directory: Path) -> int:
    from deeplinear.core.progress import Progress
    from deeplinear.explain import explain

    with Progress() as progress:
        use_cache(args, progress.say)
        progress.begin(f"explain {args.directory}: reading and checking the results")
        result = explain(
            args.directory,
            target=args.target,
            relative_to=args.relative_to,
            budget_steps=args.budget,
            figures=not args.no_figures,
            progress=progress,  # lines, and the continued runs' steps
            recovery_target=args.recovery_target,
        )
    print("\n".join(result.lines()))
    print("\nwrote " + ", ".join(str(p) for p in result.files))
    return 0


def _explain_budget(directory: Path, steps: int) -> None:
    """Refuse, before any work, a --budget whose continuations would take over the time limit
    (when the directory's run file can be read; explain itself reports a damaged directory)."""
    from deeplinear.core.limits import Limits, check
    from deeplinear.experiment.budget import estimate_run
    from deeplinear.experiment.config import load
    from deeplinear.store import directories
    from deeplinear.store.results import read_table

    if steps == 0 or not (directory / "config.toml").is_file():
        return
    fix = "re-run the command that wrote it"
    try:  # every file checked before any is read
        held = directories.verified(directory, "run", fix)
        curves = directory / "curves.parquet"
        data = directories.verified_bytes(curves, held[directories.FILES][curves.name], fix)
        base_dir = read_table(curves, fix, data)[1].get("config_dir")
    except (UsageError, KeyError):  # explain names what is wrong with the directory
        return
    if not isinstance(base_dir, str):
        return
    try:
        config = load(directory / "config.toml", base_dir)
        estimate = estimate_run(config, steps=steps)
    except UsageError:
        return  # explain names what is wrong with the directory
    estimate = type(estimate)(
        estimate.bytes,
        estimate.seconds,
        estimate.memory_advice,
        "give a smaller --budget (0: extrapolate only)",
    )
    check(estimate, Limits.from_env(), f"explain with --budget {steps}")

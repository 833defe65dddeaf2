"""``deeplinear run`` (a run file) and ``deeplinear reproduce`` (the 2017 notebook)."""

from __future__ import annotations

import sys
from pathlib import Path

from deeplinear.cli.checks import apply_limits, use_cache, writable_parts
from deeplinear.store.locks import writing


def run_command(args) -> int:
    from deeplinear.core.limits import Limits, check
    from deeplinear.core.progress import Progress
    from deeplinear.experiment.budget import estimate_run
    from deeplinear.experiment.config import load
    from deeplinear.experiment.execution import build, check_methods, execute, experiment_identity
    from deeplinear.store.directories import claim

    apply_limits(args)
    config = load(args.config)
    out = args.out or str(Path("runs") / Path(args.config).stem)
    estimate = estimate_run(config)
    check(estimate, Limits.from_env(), f"run {args.config}")  # before --out is touched
    files = ["config.toml", "curves.parquet", "gn_spectrum.parquet"]
    files += [f"state/{index}.npz" for index in range(len(config.methods))]
    writable_parts(out, ["state"], files)
    with writing(out), Progress() as progress:  # one writer, from the claim to the last file
        setup = build(config)  # every array read and checked before --out is claimed
        check_methods(config, setup)  # a method the problem refuses: its one line, no estimate
        claim(out, experiment_identity(config), args.force)
        progress.say(f"estimated {estimate.describe()}")  # once every input is checked
        use_cache(args, progress.say)
        try:
            result = execute(
                config,
                out,
                force=True,
                progress=progress,  # lines, and each batch's steps after every chunk
                command=["deeplinear", *sys.argv[1:]],
                setup=setup,
            )
        except KeyboardInterrupt:  # SIGINT, SIGTERM: say where the work is kept
            _say_kept(out)
            raise
        progress.say("writing the summary")
        from deeplinear.notebook2017.summary import run_table

        setup = result.setup
        floor = setup.floor
        lines = run_table(result.table, result.final_losses, floor)
    problem = result.setup.problem
    print(f"{config.name or args.config}: {problem.name}, widths {result.setup.widths}, "
          f"{_conditioning(problem)}")  # fmt: skip
    from deeplinear.explain.judging import identifiability_of

    counts = identifiability_of(result.setup)  # as explain says it, before any verdict
    for line in [] if counts is None else counts.lines():
        print(line)
    for line in getattr(problem, "lines", list)():  # a ratings problem's split and baselines
        print(line)
    print("\n".join(lines))
    print(
        "(final loss: the final weights' loss in double-double near the reachable minimum "
        f"{floor.value:.2e}, else the loop's float64 value; * best loss within its round-off)"
    )
    for line in _held_out_lines(result.table):
        print(line)
    print(
        f"\nwrote {out}/curves.parquet, gn_spectrum.parquet, state/; next: deeplinear explain {out}"
    )
    return 0


def _say_kept(out: str) -> None:
    kept = Path(out) / "partial"
    if kept.is_dir() and any(kept.rglob("*.npz")):
        print(
            f"deeplinear: the finished batches and the last checkpoint are kept in {kept}: run "
            "the same command again to continue from them",
            file=sys.stderr,
            flush=True,
        )


def reproduce_command(args) -> int:
    from deeplinear.notebook2017.experiment import default_out, experiment_identity
    from deeplinear.store import directories

    out = args.out or str(default_out(args.seed))
    with writing(out):  # one writer, from the claim to the last file
        # Claim the directory before the heavy imports: a bad --out fails fast.
        directories.claim(out, experiment_identity(args.seed, args.rcond), args.force)
        return _reproduce(args, out)


def _reproduce(args, out: str) -> int:
    from deeplinear.core.progress import Progress
    from deeplinear.notebook2017.reproduce import reproduce
    from deeplinear.notebook2017.summary import summary_lines

    with Progress() as progress:
        use_cache(args, progress.say)
        result = reproduce(
            args.seed,
            out,
            rcond=args.rcond,
            force=True,  # claimed above
            check=args.check,
            progress=progress,
            command=["deeplinear", *sys.argv[1:]],
        )
        progress.say("writing the summary")
        lines = summary_lines(result)
    print("\n".join(lines))
    return 0


def _held_out_lines(table) -> list[str]:
    """A ratings run's RMSEs at its last record, per run (nothing for other problems)."""
    if "validation_rmse" not in table.column_names:
        return []
    from deeplinear.store.results import run_series

    out = ["RMSE at the last record (predictions clipped to the scale):"]
    for data in run_series(table).values():
        errors = ", ".join(
            f"{split} {float(data[f'{split}_rmse'][-1]):.4f}"
            for split in ("train", "validation", "test")
        )
        out.append(f"  {data['run'][0]}: {errors}")
    return out


def _conditioning(problem) -> str:
    """``true κ(A) = …`` of the target the run fits: A for a fully observed problem, M for a
    measured one (whose truth may not be given)."""
    from deeplinear.problems.measured import MeasuredProblem

    if not isinstance(problem, MeasuredProblem):
        return f"true κ(A) = {problem.condition_number:.3g}"
    if problem.kind == "ratings":
        return "no truth: judged on its held-out ratings"
    if not problem.has_truth:
        return "κ(M) unknown (no truth given)"
    return f"true κ(M) = {problem.condition_number:.3g} (over its rank {problem.rank})"

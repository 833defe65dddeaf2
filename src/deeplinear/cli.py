"""``deeplinear`` on the command line: a thin layer over the Python API.

Arguments are checked before JAX is imported, so bad input fails in milliseconds with one line
and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from .errors import UsageError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer below 2**32, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="deeplinear", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    rep = commands.add_parser(
        "reproduce",
        help="re-run the 2017 notebook's experiment",
        description="Re-run the notebook's experiment with its own random draws; write "
        "curves.parquet and both figures to --out and print a summary.",
    )
    rep.add_argument("--seed", type=_seed, default=0, help="NumPy legacy seed (default 0)")
    rep.add_argument("--out", help="results directory (default runs/reproduce-seed<N>)")
    rep.add_argument(
        "--rcond",
        choices=("modern", "2017", "both"),
        default="modern",
        help="LM's lstsq cut-off: modern NumPy (default), the notebook's 2017 rcond=-1, or both",
    )
    rep.add_argument("--force", action="store_true", help="replace a different experiment in --out")
    rep.add_argument("--check", action="store_true", help="also run the notebook in plain NumPy")
    run = commands.add_parser(
        "run",
        help="run the experiment a TOML run file describes",
        description="Run every method of a run file; write curves.parquet (with diagnostics), "
        "gn_spectrum.parquet, the final states and a copy of the run file into --out.",
    )
    run.add_argument("config", help="the run file (TOML), e.g. examples/seed.toml")
    run.add_argument("--out", help="results directory (default runs/<run file name>)")
    run.add_argument("--force", action="store_true", help="replace a different experiment in --out")
    exp = commands.add_parser(
        "explain",
        help="verdicts for the runs in a results directory",
        description="Classify each run (converged, converging linearly, sublinear, plateau, "
        "saddle, oscillating, unstable, stalled, diverged) against the reachable minimum of its "
        "problem, estimate when it reaches --target (or say it cannot), and say how.",
    )
    exp.add_argument("directory", help="a directory written by 'deeplinear run'")
    exp.add_argument(
        "--target",
        type=_positive_float,
        default=1e-10,
        help="target loss relative to the initial loss (default 1e-10)",
    )
    exp.add_argument(
        "--relative-to",
        choices=("initial", "excess"),
        default="initial",
        help="what --target is relative to: the initial loss (default), or the initial excess "
        "over the reachable minimum (for problems whose minimum is not 0: noise, width below rank)",
    )
    exp.add_argument(
        "--budget",
        type=_positive_int,
        default=1_000_000,
        help="most steps to continue each run to measure the ETA (default 1e6; 0: "
        "extrapolate only)",
    )
    exp.add_argument("--no-figures", action="store_true", help="print the verdicts only")
    commands.add_parser("methods", help="list every method with its hyperparameters")
    swp = commands.add_parser(
        "sweep",
        help="run a sweep file (axes × methods × grids × seeds), resumable",
        description="Run every group of a sweep file not yet in --out; a second run resumes.",
    )
    swp.add_argument("sweep_file", help="the sweep file (TOML), e.g. examples/seed_fair.toml")
    swp.add_argument("--out", help="results directory (default runs/<sweep file name>)")
    swp.add_argument("--force", action="store_true", help="replace a different sweep in --out")
    swp.add_argument(
        "--ray",
        metavar="local|HOST:PORT",
        help="run the groups on a Ray cluster: a new local one, or the head at HOST:PORT",
    )
    rpt = commands.add_parser("report", help="write report.html for a sweep directory")
    rpt.add_argument("directory", help="a directory written by 'deeplinear sweep'")
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value}")
    return value


def _run(args) -> int:
    from pathlib import Path

    from ._backend import enable_compilation_cache
    from .config import load
    from .rundir import claim
    from .runfile import execute, experiment_identity

    config = load(args.config)
    out = args.out or str(Path("runs") / Path(args.config).stem)
    claim(out, experiment_identity(config), args.force)
    enable_compilation_cache()
    result = execute(
        config,
        out,
        force=True,
        progress=lambda message: print(message, file=sys.stderr, flush=True),
        command=["deeplinear", *sys.argv[1:]],
    )
    from .summary import run_table

    problem = result.setup.problem
    print(
        f"{config.name or args.config}: {problem.name}, widths {result.setup.widths}, "
        f"true κ(A) = {problem.condition_number:.3g}"
    )
    print("\n".join(run_table(result.table)))
    print(
        f"\nwrote {out}/curves.parquet, gn_spectrum.parquet, state/; next: deeplinear explain {out}"
    )
    return 0


def _explain(args) -> int:
    from ._backend import enable_compilation_cache
    from .explain import explain

    enable_compilation_cache()
    result = explain(
        args.directory,
        target=args.target,
        relative_to=args.relative_to,
        budget_steps=args.budget,
        figures=not args.no_figures,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print("\n".join(result.lines()))
    print("\nwrote " + ", ".join(str(p) for p in result.files))
    return 0


def _methods(args) -> int:
    import dataclasses

    from .methods import METHODS

    for name, cls in METHODS.items():
        fields = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls)) or "—"
        print(
            f"{name:<10} {cls.description}\n{'':<10} hyperparameters: learning_rate, {fields}"
            f"\n{'':<10} reference: {cls.reference}"
        )
    return 0


def _sweep(args) -> int:
    from pathlib import Path

    from . import rundir, sweep

    plan = sweep.load(args.sweep_file)
    if args.ray and args.ray != "local":
        sweep.check_ray_address(args.ray)  # before anything is started or written
    out = Path(args.out or Path("runs") / Path(args.sweep_file).stem)
    rundir.claim(out, {"experiment": "sweep", "sweep_sha256": plan.digest}, args.force)
    from ._backend import enable_compilation_cache

    enable_compilation_cache()

    import time

    start, first = time.monotonic(), {}

    size = {g.id: len(g.seeds) * len(g.method.learning_rates) for g in plan.groups}
    runs_total = sum(size.values())

    def progress(done, total, group):
        first.setdefault("done", done - 1)  # groups finished before this run (resumed)
        first["runs"] = first.get("runs", 0) + size[group.id]
        ran = done - first["done"]
        left = (time.monotonic() - start) / ran * (total - done)
        label = group.id.rsplit("|", 1)[0]
        print(
            f"[{done}/{total}] {label}: {first['runs']} of {runs_total} runs done here, "
            f"ETA {left:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    files = sweep.run(plan, out, ray=args.ray, progress=progress)
    print(f"{len(files)} groups in {out}/groups; next: deeplinear report {out}")
    return 0


def _report(args) -> int:
    from .report import write_report

    print(f"wrote {write_report(args.directory)}")
    return 0


def _reproduce(args) -> int:
    from . import rundir
    from .experiment import default_out, experiment_identity

    out = args.out or str(default_out(args.seed))
    # Claim the directory before the heavy imports: a bad --out fails fast.
    rundir.claim(out, experiment_identity(args.seed, args.rcond), args.force)

    from ._backend import enable_compilation_cache
    from .reproduce import reproduce
    from .summary import summary_lines

    enable_compilation_cache()
    result = reproduce(
        args.seed,
        out,
        rcond=args.rcond,
        force=True,  # claimed above
        check=args.check,
        progress=lambda message: print(message, file=sys.stderr, flush=True),
        command=["deeplinear", *sys.argv[1:]],
    )
    print("\n".join(summary_lines(result)))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        commands = {
            "reproduce": _reproduce,
            "run": _run,
            "explain": _explain,
            "methods": _methods,
            "sweep": _sweep,
            "report": _report,
        }
        return commands[args.command](args)
    except UsageError as error:
        print(f"deeplinear: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("deeplinear: interrupted; files already written are complete", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

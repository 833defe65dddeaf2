"""The command line's arguments: the parser (one function per subcommand), the types that check
each value before anything is imported, and ``--version``."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from deeplinear.errors import UsageError

DESCRIPTION = "``deeplinear`` on the command line: a thin layer over the Python API."
MAX_NAME_BYTES = 255  # one path component (NAME_MAX on Linux and macOS)
MAX_PATH_BYTES = 4000  # a little under PATH_MAX (4096)

CACHE_HELP = """\
compilation cache: compiled programs are kept in $XDG_CACHE_HOME/deeplinear/jax
(~/.cache/deeplinear/jax by default), so a second run starts without compiling. Set
DEEPLINEAR_JAX_CACHE to another folder, or turn the cache off with --no-cache or
DEEPLINEAR_JAX_CACHE=off. An unwritable cache folder gives a warning, not an error.

progress: on a terminal a status line; otherwise plain lines on stderr, with a line for any
silence over 5 s (DEEPLINEAR_PROGRESS_SECONDS)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise UsageError(f"{message} (see '{self.prog} --help')")


class _Version(argparse.Action):
    """--version: asks git only when given (every other command starts without it)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, **kw):
        super().__init__(option_strings, dest, nargs=0, default=default, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """``deeplinear``'s parser: its subcommands in the order ``--help`` lists them."""
    parser = _Parser(
        prog="deeplinear",
        description=DESCRIPTION,
        epilog=CACHE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action=_Version, help="print the installed version and git revision, then exit"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_reproduce(commands)
    _add_run(commands)
    _add_explain(commands)
    commands.add_parser("methods", help="list every method with its hyperparameters")
    _add_sweep(commands)
    _add_report(commands)
    return parser


def _add_reproduce(commands) -> None:
    rep = commands.add_parser(
        "reproduce",
        help="re-run the 2017 notebook's experiment",
        description="Re-run the notebook's experiment with its own random draws; write "
        "curves.parquet and both figures to --out and print a summary.",
    )
    rep.add_argument("--seed", type=_seed, default=0, help="NumPy legacy seed (default 0)")
    rep.add_argument("--out", type=_out, help="results directory (default runs/reproduce-seed<N>)")
    rep.add_argument(
        "--rcond",
        choices=("modern", "2017", "both"),
        default="modern",
        help="LM's lstsq cut-off: modern NumPy (default), the notebook's 2017 rcond=-1, or both",
    )
    rep.add_argument("--force", action="store_true", help="replace a different experiment in --out")
    rep.add_argument("--check", action="store_true", help="also run the notebook in plain NumPy")
    _cache_argument(rep)


def _add_run(commands) -> None:
    run = commands.add_parser(
        "run",
        help="run the experiment a TOML run file describes",
        description="Run every method of a run file; write curves.parquet (with diagnostics), "
        "gn_spectrum.parquet, the final states and a copy of the run file into --out.",
    )
    run.add_argument("config", help="the run file (TOML), e.g. examples/seed.toml")
    run.add_argument("--out", type=_out, help="results directory (default runs/<run file name>)")
    run.add_argument("--force", action="store_true", help="replace a different experiment in --out")
    _limit_arguments(run)
    _cache_argument(run)


def _add_explain(commands) -> None:
    exp = commands.add_parser(
        "explain",
        help="verdicts for the runs in a results directory",
        description="Classify each run (converged, converging linearly, sublinear, plateau, "
        "saddle, oscillating, unstable, stalled, diverged) against the reachable minimum of its "
        "problem, estimate when it reaches --target (or say it cannot), and say how. On a sweep "
        "directory: every seed of each method's best configuration at each axis point.",
    )
    exp.add_argument(
        "directory", help="a directory written by 'deeplinear run' or 'deeplinear sweep'"
    )
    exp.add_argument(
        "--target",
        type=_positive_float,
        default=None,
        help="target loss relative to the initial loss (default 1e-10; for a sweep, its first "
        "target)",
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
    exp.add_argument(
        "--recovery-target",
        type=_positive_float,
        default=None,
        help="the recovery error ‖W − M‖_F/‖M‖_F that a completion or sensing run's recovery "
        "verdict judges against, in (0, 1) (default: a sweep's last recovery_targets, else "
        "the square root of the loss target)",
    )
    exp.add_argument("--no-figures", action="store_true", help="print the verdicts only")
    _limit_arguments(exp)
    _cache_argument(exp)


def _add_sweep(commands) -> None:
    swp = commands.add_parser(
        "sweep",
        help="run a sweep file (axes × methods × grids × seeds), resumable",
        description="Run every group of a sweep file not yet in --out; a second run resumes.",
    )
    swp.add_argument("sweep_file", help="the sweep file (TOML), e.g. examples/seed_fair.toml")
    swp.add_argument("--out", type=_out, help="results directory (default runs/<sweep file name>)")
    swp.add_argument("--force", action="store_true", help="replace a different sweep in --out")
    _limit_arguments(swp)
    _cache_argument(swp)
    swp.add_argument(
        "--stall-seconds",
        type=_positive_float,
        metavar="S",
        help="stop a group that makes no progress (no chunk of steps done) for S seconds, "
        "keeping the finished groups (default 600)",
    )
    swp.add_argument(
        "--ray",
        metavar="local|HOST:PORT",
        help="run the groups on a Ray cluster: a new local one, or the head at HOST:PORT",
    )


def _add_report(commands) -> None:
    rpt = commands.add_parser(
        "report",
        help="write report.html for a sweep directory",
        description="Summarize a sweep directory written by 'deeplinear sweep': the best "
        "learning rate of each method at each axis point (flagged when it sits on its grid's "
        "edge), time to target with confidence intervals, performance profiles and curves. "
        "Prints the summary table and writes report.html (one self-contained interactive page, "
        "no network needed), summary.csv, summary.json and static figures into the directory.",
    )
    rpt.add_argument("directory", help="a directory written by 'deeplinear sweep'")


def _cache_argument(command) -> None:
    command.add_argument(
        "--no-cache",
        action="store_true",
        help="compile without the persistent compilation cache (default: on, in "
        "~/.cache/deeplinear/jax or DEEPLINEAR_JAX_CACHE; see 'deeplinear --help')",
    )


def _limit_arguments(command) -> None:
    command.add_argument(
        "--max-memory",
        type=_positive_float,
        metavar="GIB",
        help="refuse anything estimated to need more memory (default: half of this machine's; "
        "or set DEEPLINEAR_MAX_MEMORY_GIB)",
    )
    command.add_argument(
        "--max-hours",
        type=_positive_float,
        metavar="H",
        help="refuse anything estimated to take longer (default 1; or set DEEPLINEAR_MAX_HOURS)",
    )


def version() -> str:
    """``deeplinear X.Y.Z`` and, in a git checkout, its revision."""
    import subprocess
    from importlib import metadata

    try:
        installed = metadata.version("deeplinear")
    except metadata.PackageNotFoundError:
        installed = "unknown (not installed)"
    text = f"deeplinear {installed}"
    here = Path(__file__).resolve().parent.parent  # the deeplinear package

    def git(*words: str) -> str:
        out = subprocess.run(["git", *words], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else ""

    try:  # only the checkout this package runs from (not a repository it is installed inside)
        top = git("rev-parse", "--show-toplevel")
        if not top or Path(top).resolve() / "src" / "deeplinear" != here:
            return text
        revision = git("describe", "--always", "--dirty", "--abbrev=12")
    except (OSError, subprocess.TimeoutExpired):
        return text
    return f"{text} (git {revision})" if revision else text


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer below 2**32, got {value}")
    return value


def _out(text: str) -> str:
    """An --out path the file system can hold: no component over 255 bytes."""
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    try:
        encoded = os.fsencode(text)
    except UnicodeError:
        raise argparse.ArgumentTypeError(f"cannot be encoded as a file name: {text!r}") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise argparse.ArgumentTypeError(
            f"is {len(encoded)} bytes long, over {MAX_PATH_BYTES}: choose a shorter path"
        )
    for part in Path(text).parts:
        if len(os.fsencode(part)) > MAX_NAME_BYTES:
            raise argparse.ArgumentTypeError(
                f"has a name of {len(os.fsencode(part))} bytes ({part[:20]}…), over the "
                f"{MAX_NAME_BYTES} a file system allows: choose a shorter name"
            )
    return text


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or not value > 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value}")
    return value

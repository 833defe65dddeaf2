"""``deeplinear`` on the command line: a thin layer over the Python API.

Arguments are checked before JAX is imported, so bad input fails in milliseconds with one line
and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

from deeplinear.errors import UsageError

EXIT_USAGE = 2
EXIT_STOPPED = 1  # a sweep group stalled (--stall-seconds) or its worker died
GRACE_SECONDS = 10.0  # a signal the command cannot take (stuck in native code) ends it this late
MAX_NAME_BYTES = 255  # one path component (NAME_MAX on Linux and macOS)
MAX_PATH_BYTES = 4000  # a little under PATH_MAX (4096)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise UsageError(f"{message} (see '{self.prog} --help')")


class _Version(argparse.Action):
    """--version: asks git only when given (every other command starts without it)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, **kw):
        super().__init__(option_strings, dest, nargs=0, default=default, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        print(_version())
        parser.exit()


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer below 2**32, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="deeplinear",
        description=__doc__.splitlines()[0],
        epilog=CACHE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action=_Version, help="print the installed version and git revision, then exit"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
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
    commands.add_parser("methods", help="list every method with its hyperparameters")
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
    return parser


CACHE_HELP = """\
compilation cache: compiled programs are kept in $XDG_CACHE_HOME/deeplinear/jax
(~/.cache/deeplinear/jax by default), so a second run starts without compiling. Set
DEEPLINEAR_JAX_CACHE to another folder, or turn the cache off with --no-cache or
DEEPLINEAR_JAX_CACHE=off. An unwritable cache folder gives a warning, not an error.

progress: on a terminal a status line; otherwise plain lines on stderr, with a line for any
silence over 5 s (DEEPLINEAR_PROGRESS_SECONDS)."""


def _cache_argument(command) -> None:
    command.add_argument(
        "--no-cache",
        action="store_true",
        help="compile without the persistent compilation cache (default: on, in "
        "~/.cache/deeplinear/jax or DEEPLINEAR_JAX_CACHE; see 'deeplinear --help')",
    )


def _use_cache(args, say) -> None:
    """The compilation cache unless --no-cache; through the environment, so that a sweep's
    worker processes follow the same choice."""
    from deeplinear.core.backend import CACHE_ENV, enable_compilation_cache

    if getattr(args, "no_cache", False):
        os.environ[CACHE_ENV] = "off"
    if enable_compilation_cache(warn=say) is None:
        os.environ[CACHE_ENV] = "off"  # unusable: the workers need not warn again


def _version() -> str:
    """``deeplinear X.Y.Z`` and, in a git checkout, its revision."""
    import subprocess
    from importlib import metadata

    try:
        version = metadata.version("deeplinear")
    except metadata.PackageNotFoundError:
        version = "unknown (not installed)"
    text = f"deeplinear {version}"
    here = Path(__file__).resolve().parent

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


def _apply_limits(args) -> None:
    """--max-memory and --max-hours, through the environment ``limits.Limits`` reads (so that a
    sweep's Ray workers see them too)."""
    from deeplinear.core.limits import MEMORY_ENV, TIME_ENV

    if getattr(args, "max_memory", None) is not None:
        os.environ[MEMORY_ENV] = repr(args.max_memory)
    if getattr(args, "max_hours", None) is not None:
        os.environ[TIME_ENV] = repr(args.max_hours)


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


def _writable_parts(out, folders=(), files=()) -> None:
    """Refuse, before anything runs, an --out whose subfolders or files cannot take the
    results (a read-only folder, a folder where a file goes and the reverse)."""
    for name in files:
        if (Path(out) / name).is_dir():
            raise UsageError(
                f"--out {out}: {Path(out) / name} is a folder where a file goes: remove it or "
                "choose another --out"
            )
    for name in folders:
        folder = Path(out) / name
        if not (folder.exists() or folder.is_symlink()):
            continue
        if not folder.is_dir():
            raise UsageError(
                f"--out {out}: {folder} is not a folder: remove it or choose another --out"
            )
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UsageError(
                f"--out {out}: {folder} is not writable: make it writable (chmod u+w "
                f"{folder}) or choose another --out"
            )


def _writable_directory(directory, command: str, writes: str) -> Path:
    """The results directory of explain/report: an existing folder this user can write into."""
    path = Path(directory)
    if not path.exists():
        raise UsageError(
            f"{command} {directory}: not a results directory (it does not exist): check the path"
        )
    if not path.is_dir():
        raise UsageError(
            f"{command} {directory}: not a results directory (a file): give the directory"
        )
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(
            f"{command} {directory}: the directory is not writable and {command} writes {writes} "
            f"into it: make it writable (chmod u+w {directory})"
        )
    return path


def _ray_installed() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        return False


def _run(args) -> int:
    from deeplinear.core.limits import Limits, check
    from deeplinear.core.progress import Progress
    from deeplinear.experiment.budget import estimate_run
    from deeplinear.experiment.config import load
    from deeplinear.experiment.execution import execute, experiment_identity
    from deeplinear.store.directories import claim

    _apply_limits(args)
    config = load(args.config)
    out = args.out or str(Path("runs") / Path(args.config).stem)
    estimate = estimate_run(config)
    check(estimate, Limits.from_env(), f"run {args.config}")  # before --out is touched
    files = ["config.toml", "curves.parquet", "gn_spectrum.parquet"]
    files += [f"state/{index}.npz" for index in range(len(config.methods))]
    _writable_parts(out, ["state"], files)
    claim(out, experiment_identity(config), args.force)
    with Progress() as progress:
        progress.say(f"estimated {estimate.describe()}")
        _use_cache(args, progress.say)
        result = execute(
            config,
            out,
            force=True,
            progress=progress.say,
            command=["deeplinear", *sys.argv[1:]],
        )
        progress.say("writing the summary")
        from deeplinear.notebook2017.summary import run_table

        setup = result.setup
        floor = setup.problem.floor(setup.widths, setup.objective)
        lines = run_table(result.table, result.final_losses, floor)
    problem = result.setup.problem
    print(
        f"{config.name or args.config}: {problem.name}, widths {result.setup.widths}, "
        f"true κ(A) = {problem.condition_number:.3g}"
    )
    print("\n".join(lines))
    print(
        "(final loss: the final weights' loss in double-double near the reachable minimum "
        f"{floor.value:.2e}, else the loop's float64 value; * best loss within its round-off)"
    )
    print(
        f"\nwrote {out}/curves.parquet, gn_spectrum.parquet, state/; next: deeplinear explain {out}"
    )
    return 0


def _explain_budget(directory: Path, steps: int) -> None:
    """Refuse, before any work, a --budget whose continuations would take over the time limit
    (when the directory's run file can be read; explain itself reports a damaged directory)."""
    import json

    import pyarrow.parquet as pq

    from deeplinear.core.limits import Limits, check
    from deeplinear.experiment.budget import estimate_run
    from deeplinear.experiment.config import load
    from deeplinear.store.results import METADATA_KEY

    if steps == 0 or not (directory / "config.toml").is_file():
        return
    try:
        metadata = json.loads(
            (pq.read_schema(directory / "curves.parquet").metadata or {})[METADATA_KEY]
        )
        base_dir = metadata.get("config_dir") if isinstance(metadata, dict) else None
    except Exception:  # unreadable curves: explain refuses the directory itself
        base_dir = None
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


def _explain(args) -> int:
    from deeplinear.core.progress import Progress
    from deeplinear.explain import explain

    _apply_limits(args)
    directory = _writable_directory(args.directory, "explain", "verdicts.json and figures")
    _explain_budget(directory, args.budget)
    with Progress() as progress:
        _use_cache(args, progress.say)
        progress.begin(f"explain {args.directory}: reading and checking the results")
        result = explain(
            args.directory,
            target=args.target,
            relative_to=args.relative_to,
            budget_steps=args.budget,
            figures=not args.no_figures,
            progress=progress.say,
            recovery_target=args.recovery_target,
        )
    print("\n".join(result.lines()))
    print("\nwrote " + ", ".join(str(p) for p in result.files))
    return 0


def _methods(args) -> int:
    from deeplinear.methods import METHODS, declarations

    pad = " " * 11
    for name, cls in METHODS.items():
        print(f"{name:<10} {cls.description}")
        print(f"{pad}learning_rates: a list of finite numbers > 0")
        for field, (default, spec) in declarations(cls).items():
            print(f"{pad}{field} = {default!r}: {spec.describe()}")
        columns = ", ".join(f"{column} ({kind})" for column, kind in cls.columns.items())
        print(f"{pad}records: {columns or 'no columns of its own'}")
        loop = "yes" if cls.in_loop else "no (from Python, one run after another)"
        print(f"{pad}in the compiled loop: {loop}")
        print(f"{pad}Gauss-Newton rate predicts it: {'yes' if cls.gauss_newton_rate else 'no'}")
        print(f"{pad}reference: {cls.reference}")
    return 0


def _sweep(args) -> int:
    from deeplinear.core.limits import Limits, check
    from deeplinear.sweep import core as sweep

    _apply_limits(args)
    plan = sweep.load(args.sweep_file)  # and the memory of its largest group
    cost = sweep.estimate(plan)
    check(cost, Limits.from_env(), f"sweep {args.sweep_file}")
    if args.ray and not _ray_installed():
        raise UsageError(
            f"--ray {args.ray} needs Ray, which is not installed: pip install 'deeplinear[ray]', "
            "or run without --ray"
        )
    if args.ray and args.ray != "local":
        sweep.check_ray_address(args.ray)  # before anything is started or written
    out = Path(args.out or Path("runs") / Path(args.sweep_file).stem)
    _writable_parts(out, ["groups"], ["manifest.json", "sweep.toml"])
    sweep.claim(out, plan, args.force)
    from deeplinear.core.progress import Progress

    with Progress() as progress:
        progress.say(f"estimated {cost.describe()} (the largest group's memory)")
        _use_cache(args, progress.say)
        counter = _SweepCounter(plan, out, progress)
        stall = args.stall_seconds or sweep.STALL_SECONDS
        files = sweep.run(
            plan,
            out,
            ray=args.ray,
            progress=counter,
            notice=lambda line: progress.say(f"deeplinear: {line}"),
            stall_seconds=stall,
        )
    from deeplinear.store.groups import group_runs

    runs = sum(group_runs(f) for f in files)  # what groups/ holds, grid extensions included
    planned = counter.total_runs
    added = f", {runs - planned} of them added by grid extension" if runs > planned else ""
    print(
        f"{len(files)} groups, {runs} runs{added}, in {out}/groups; next: deeplinear report {out}"
    )
    return 0


class _SweepCounter:
    """The sweep's progress line after each group: runs done by this invocation, runs of groups
    finished before it (a resume), and an ETA from this invocation's pace."""

    def __init__(self, plan, out: Path, progress):
        from deeplinear.store.groups import group_runs, verify_group
        from deeplinear.sweep.core import group_file

        self.progress, self.start = progress, time.monotonic()
        self.size = {g.id: len(g.seeds) * len(g.method.learning_rates) for g in plan.groups}
        self.total_runs = sum(self.size.values())
        self.runs_of = lambda group: group_runs(group_file(out, group))  # extensions included
        finished = [g for g in plan.groups if verify_group(group_file(out, g)) is None]
        self.groups_before = len(finished)
        self.runs_before = sum(self.size[g.id] for g in finished)
        self.runs_here = 0
        self.added = 0  # runs a grid extension added past the planned grid (this invocation)
        if finished:
            progress.say(
                f"resuming: {self.groups_before} of {len(plan.groups)} groups "
                f"({self.runs_before} of {self.total_runs} runs) done before"
            )

    def __call__(self, done: int, total: int, group) -> None:
        planned = self.size.get(group.id, 0)
        self.runs_here += planned
        self.added += max(self.runs_of(group) - planned, 0)
        ran = max(done - self.groups_before, 1)
        left = (time.monotonic() - self.start) / ran * (total - done)
        before = f", {self.runs_before} before" if self.runs_before else ""
        added = f", +{self.added} added by grid extension" if self.added else ""
        self.progress.count(
            done,
            total,
            f"[{done}/{total}] {group.name}: {self.runs_here} of {self.total_runs} runs done "
            f"here{added}{before}, ETA {left:.0f} s",
        )


def _report(args) -> int:
    from deeplinear.report.sweep_report import write_report

    _writable_directory(
        args.directory, "report", "report.html, summary.csv, summary.json and its figures"
    )
    path = write_report(args.directory, out=sys.stdout)
    print(f"wrote {path}, {path.parent / 'summary.csv'}, {path.parent / 'summary.json'} and the "
          "figures (PNG, SVG)")  # fmt: skip
    return 0


def _reproduce(args) -> int:
    from deeplinear.notebook2017.experiment import default_out, experiment_identity
    from deeplinear.store import directories

    out = args.out or str(default_out(args.seed))
    # Claim the directory before the heavy imports: a bad --out fails fast.
    directories.claim(out, experiment_identity(args.seed, args.rcond), args.force)

    from deeplinear.core.progress import Progress
    from deeplinear.notebook2017.reproduce import reproduce
    from deeplinear.notebook2017.summary import summary_lines

    with Progress() as progress:
        _use_cache(args, progress.say)
        result = reproduce(
            args.seed,
            out,
            rcond=args.rcond,
            force=True,  # claimed above
            check=args.check,
            progress=progress.say,
            command=["deeplinear", *sys.argv[1:]],
        )
        progress.say("writing the summary")
        lines = summary_lines(result)
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit status: 0; 1 when a sweep group stalled or its worker died; 2 for bad
    input; 130 on SIGINT (Ctrl-C) and 143 on SIGTERM — each failure with one line on stderr.

    SIGINT and SIGTERM raise in the command, which unwinds: results files are written atomically,
    so those finished are complete and none is half-written. As the ``deeplinear`` command
    (``argv`` None): a failed or interrupted command ends the process without the interpreter's
    shutdown (which would wait for XLA work still in flight, or crash tearing it down); a signal
    once a command succeeded (during that shutdown, where it used to print ``Exception ignored
    in threading._shutdown`` and exit 0) ends it at once; one the command cannot take (stuck in
    native code) ends it ``GRACE_SECONDS`` later; a second signal ends it at once.
    """
    if threading.current_thread() is not threading.main_thread():
        return _command(argv)
    console = argv is None
    state = {"handled": False}

    def interrupt(signum, frame):
        if state["handled"]:
            _exit_now(signum)  # a second signal: the user insists
        state["handled"] = True
        raise _Interrupted(signum)

    previous = {number: signal.getsignal(number) for number in _SIGNALS}
    watcher = _watch_native_waits(state) if console else contextlib.nullcontext()
    with watcher:
        for number in _SIGNALS:
            signal.signal(number, interrupt)
        try:
            code = _command(argv)
        finally:
            for number in _SIGNALS:  # from here on (shutdown): end at once, files are complete
                signal.signal(number, _exit_now if console else previous[number])
    if console and code != 0:  # interrupted or stopped: XLA work may still be in flight, and
        _flush()  # the interpreter's shutdown would wait for it (forever, if it hangs) or crash
        os._exit(code)
    return code


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised in the main thread, where the command unwinds."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _interrupted_line(signum: int) -> str:
    return (
        f"deeplinear: interrupted ({signal.Signals(signum).name}); files already written are "
        "complete"
    )


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _exit_now(signum, frame=None) -> None:
    """End the process now with 128 + the signal's number, after one line and flushing."""
    _flush()
    with contextlib.suppress(Exception):
        print(_interrupted_line(signum), file=sys.stderr, flush=True)
    os._exit(128 + signum)


@contextlib.contextmanager
def _watch_native_waits(state):
    """Python runs signal handlers in the main thread between bytecodes, so a command stuck in
    native code (a hung XLA call) would never see one: a thread reads the signal numbers
    Python's wakeup fd gets and ends the process if the handler has not run GRACE_SECONDS later."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    try:
        old = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    except ValueError:  # not the main thread after all
        os.close(read)
        os.close(write)
        yield
        return

    def watch():
        while True:
            try:
                numbers = os.read(read, 16)
            except OSError:
                return
            if not numbers:
                return
            signum = next((n for n in numbers if n in _SIGNALS), None)
            if signum is None:
                continue
            deadline = time.monotonic() + GRACE_SECONDS
            while time.monotonic() < deadline and not state["handled"]:
                time.sleep(0.1)
            if not state["handled"]:
                _exit_now(signum)

    threading.Thread(target=watch, name="deeplinear-signal-watch", daemon=True).start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(old)
        os.close(write)  # the thread's read returns b"" and it ends


def _command(argv: list[str] | None) -> int:
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
    except KeyboardInterrupt as error:
        signum = getattr(error, "signum", signal.SIGINT)
        print(_interrupted_line(signum), file=sys.stderr, flush=True)
        return 128 + signum
    except RuntimeError as error:
        from deeplinear.sweep.watchdog import STOPPED

        if not isinstance(error, STOPPED):
            raise
        print(f"deeplinear: error: {error}", file=sys.stderr)
        return EXIT_STOPPED


if __name__ == "__main__":
    sys.exit(main())

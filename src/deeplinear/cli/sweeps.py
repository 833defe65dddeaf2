"""``deeplinear sweep`` (a sweep file, resumable, here or on Ray, with its progress line) and
``deeplinear report`` (report.html for a sweep directory)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from deeplinear.cli.checks import apply_limits, use_cache, writable_directory, writable_parts
from deeplinear.core.words import counted
from deeplinear.errors import UsageError
from deeplinear.store.locks import writing


def ray_installed() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        return False


def sweep_command(args) -> int:
    from deeplinear import sweep
    from deeplinear.core.limits import Limits, check

    apply_limits(args)
    plan = sweep.load(args.sweep_file)  # and the memory of its largest group
    cost = sweep.estimate(plan)
    check(cost, Limits.from_env(), f"sweep {args.sweep_file}")
    if args.ray and not ray_installed():
        raise UsageError(
            f"--ray {args.ray} needs Ray, which is not installed: pip install 'deeplinear[ray]', "
            "or run without --ray"
        )
    if args.ray and args.ray != "local":
        sweep.check_ray_address(args.ray)  # before anything is started or written
    sweep.check_supported(plan)  # every method on its point's problem, before the estimate
    out = Path(args.out or Path("runs") / Path(args.sweep_file).stem)
    writable_parts(out, ["groups"], ["manifest.json", "sweep.toml"])
    with writing(out):  # one writer, from the claim to the last group
        sweep.claim(out, plan, args.force)
        return _sweep(args, plan, cost, out)


def _sweep(args, plan, cost, out: Path) -> int:
    from deeplinear import sweep
    from deeplinear.core.progress import Progress

    with Progress() as progress:
        progress.say(f"estimated {cost.describe()} (the largest group's memory)")
        use_cache(args, progress.say)
        counter = _SweepCounter(plan, out, progress)
        progress.begin("sweep: starting (the worker's imports, the first group's compile)")
        stall = args.stall_seconds or sweep.STALL_SECONDS
        files = sweep.run(
            plan,
            out,
            ray=args.ray,
            progress=counter,
            notice=lambda line: progress.say(f"deeplinear: {line}"),
            stall_seconds=stall,
            steps=counter.steps,
        )
    from deeplinear.store.groups import group_runs

    runs = sum(group_runs(f) for f in files)  # what groups/ holds, grid extensions included
    planned = counter.total_runs
    added = f", {runs - planned} of them added by grid extension" if runs > planned else ""
    print(
        f"{counted(len(files), 'group')}, {counted(runs, 'run')}{added}, in {out}/groups; "
        f"next: deeplinear report {out}"
    )
    return 0


class _SweepCounter:
    """The sweep's progress line after each group: runs done by this invocation, runs of groups
    finished before it (a resume), and an ETA from this invocation's pace."""

    def __init__(self, plan, out: Path, progress):
        from deeplinear.store.groups import group_runs, verify_group
        from deeplinear.sweep.sweep_file import group_file

        self.progress, self.start = progress, time.monotonic()
        self.size = {g.id: len(g.seeds) * len(g.method.learning_rates) for g in plan.groups}
        self.total_runs = sum(self.size.values())
        self.runs_of = lambda group: group_runs(group_file(out, group))  # extensions included
        finished = [g for g in plan.groups if verify_group(group_file(out, g)) is None]
        self.groups_before = len(finished)
        self.runs_before = sum(self.size[g.id] for g in finished)
        self.runs_here = 0
        self.added = 0  # runs a grid extension added past the planned grid (this invocation)
        self.running = None  # the group whose steps the progress line counts
        if finished:
            progress.say(
                f"resuming: {self.groups_before} of {len(plan.groups)} groups "
                f"({self.runs_before} of {counted(self.total_runs, 'run')}) done before"
            )

    def steps(self, group, done: int, total: int) -> None:
        """A chunk of ``group``'s batch done: ``done`` of its ``total`` steps (the heartbeat and
        the status line say them, with the rate and the ETA)."""
        if group.id != self.running:
            self.running = group.id
            self.progress.begin(f"{group.name}: {counted(self.size.get(group.id, 0), 'run')}")
        self.progress.steps(done, total)

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
            f"[{done}/{total}] {group.name}: {self.runs_here} of "
            f"{counted(self.total_runs, 'run')} done "
            f"here{added}{before}, ETA {left:.0f} s",
        )


def report_command(args) -> int:
    from deeplinear.core.progress import Progress
    from deeplinear.report.sweep_report import write_report

    writable_directory(
        args.directory, "report", "report.html, summary.csv, summary.json and its figures"
    )
    # plain heartbeat lines on stderr (no status line: the report prints its table on stdout)
    with Progress(interactive=False) as progress:
        progress.begin(f"report {args.directory}: reading the groups, drawing the figures")
        path = write_report(args.directory, out=sys.stdout)
    print(f"wrote {path}, {path.parent / 'summary.csv'}, {path.parent / 'summary.json'} and the "
          "figures (SVG, PNG, PDF; figures.json: their captions)")  # fmt: skip
    return 0

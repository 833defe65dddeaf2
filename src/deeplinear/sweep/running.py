"""Running a sweep (``run``): every group not yet on disk, here, in a worker process under the
watchdog, or as Ray tasks; the directory claimed first (``claim``), its manifest and copy of the
sweep file written, and each finished group written as it arrives.

Each finished group is one Parquet file under ``groups/``, written atomically, so ``kill -9`` at
any moment loses only the unfinished group and never duplicates rows; the manifest lists what
the sweep contains.

Group files are not trusted blindly: after each one its sha256 is written beside it
(``groups/_<name>.sha256``, ``sha256sum``'s format). A resume recomputes every group whose file
does not match (and says so); ``read`` (and so ``report``) refuses it in one line.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from deeplinear.errors import UsageError
from deeplinear.store import directories, locks
from deeplinear.store.directories import write_atomic
from deeplinear.store.groups import NOT_WRITTEN, checksum_file, verify_group, write_group
from deeplinear.store.jsonfiles import dumps
from deeplinear.store.results import provenance, sealed, unsealed
from deeplinear.sweep.group_run import GROUP_KEY, run_group
from deeplinear.sweep.sweep_file import Group, Sweep, group_file, parse
from deeplinear.sweep.watchdog import (
    GroupStalledError,
    Worker,
    WorkerDiedError,
    portable_extensions,
    register_extensions,
)

METADATA = b"deeplinear"  # results.METADATA_KEY: a file's provenance (JSON)
STALL_SECONDS = 600.0  # ``deeplinear sweep``: a group silent this long is stopped (--stall-seconds)


def _group_bytes(
    source: str, base_dir: str, index: int, stall_seconds: float | None, methods=()
) -> tuple[str, bytes]:
    """A Ray task: register the driver's registered ``methods``, rebuild the sweep from its text
    (configs are data), run one group (under the watchdog, in a worker of its own, unless
    ``stall_seconds`` is None), Parquet with its sha256 (``results.sealed``)."""

    register_extensions(methods)
    plan = parse(tomllib.loads(source), source=source, base_dir=Path(base_dir))
    if stall_seconds is None:
        table = run_group(plan, plan.groups[index])
    else:
        with Worker(plan, stall_seconds, run_group, methods) as worker:
            table = worker.run(index)
    return sealed(table)


def check_ray_address(address: str) -> None:
    """Fail fast, in one line, when a Ray head does not answer at ``host:port``."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray {address!r} must be 'local' or HOST:PORT of a Ray head node")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as error:
        raise UsageError(
            f"--ray {address}: no Ray head answers there ({error.strerror or error}); "
            "start one with 'ray start --head' or use --ray local"
        ) from None


def claim(directory: str | Path, sweep: Sweep, force: bool = False) -> Path:
    """Claim ``directory`` for ``sweep`` (``directories.claim``): a directory of another
    experiment (another sweep, a run, a reproduction) or with files not written by deeplinear is
    refused in one line; ``force`` replaces another sweep's directory (its groups that are not
    this sweep's are removed) and a folder deeplinear did not write, never another kind of
    experiment's (``deeplinear sweep --force`` alike)."""
    experiment = {"experiment": "sweep", "sweep_sha256": sweep.digest}
    if force and Path(directory).is_dir():
        held = directories.held(directory)
        if held is not None and held.get("experiment") != "sweep":
            raise UsageError(
                f"--out {directory} holds a {held.get('experiment')!r} experiment, not a sweep "
                "(force replaces only another sweep): choose another --out"
            )
    return directories.claim(directory, experiment, force)


def run(
    sweep: Sweep,
    directory: str | Path,
    *,
    force: bool = False,
    ray: str | None = None,
    progress: Callable[[int, int, Group], None] | None = None,
    notice: Callable[[str], None] | None = None,
    stall_seconds: float | None = None,
    steps: Callable[[Group, int, int], None] | None = None,
) -> list[Path]:
    """Run every group not yet on disk; return the group files (old and new).

    ``ray``: None runs here; "local" starts a local Ray cluster; "HOST:PORT" joins one (every
    worker needs deeplinear installed). Files are written here, by this process, atomically.
    ``stall_seconds``: run the groups in a worker process (``_watchdog``) and stop with
    ``GroupStalledError``, naming the group, when it makes no progress (no chunk of steps done)
    for that long; None runs them in this process, unwatched (so does a non-POSIX system). The
    ``deeplinear sweep`` command watches by default (``STALL_SECONDS``). ``directory`` is
    claimed as ``deeplinear sweep`` claims ``--out`` (``claim``): another experiment's is refused;
    ``force`` replaces another sweep's, never a run's or a reproduction's.
    A group whose file does not match its checksum is run again; ``notice`` (default: a line on
    stderr) says which. Methods given to ``register`` go to the worker and to Ray's tasks with
    the sweep (by reference); one that another process cannot import is refused before anything
    runs (one line). ``steps(group, done, total)``: the steps of the batch a group runs, after
    every chunk (here and in the worker; not from Ray's tasks).
    """

    directory = Path(directory)
    if os.name != "posix":  # the watchdog's worker needs POSIX pipes: unwatched elsewhere
        stall_seconds = None
    methods = ()
    if ray is not None or stall_seconds is not None:
        where = "a Ray task" if ray is not None else "the sweep's worker process"
        methods = portable_extensions(where)  # methods and problem kinds
    say = notice or (lambda line: print(f"deeplinear: {line}", file=sys.stderr, flush=True))
    with locks.writing(directory):  # one writer for the life of the sweep
        claim(directory, sweep, force)
        return _run(sweep, directory, ray, progress, say, stall_seconds, methods, steps)


def _run(sweep, directory, ray, progress, say, stall_seconds, methods, steps) -> list[Path]:
    files = [group_file(directory, g) for g in sweep.groups]
    for path in [directory / "manifest.json", directory / "sweep.toml", *files,
                 *map(checksum_file, files)]:  # fmt: skip
        if path.is_dir() and not path.is_symlink():  # before any group runs
            raise UsageError(f"{path} is a folder, not a file: remove it, then run the sweep again")
    manifest = _start(directory, sweep)
    _remove_stale(directory, files)
    todo = _unfinished(files, say)
    finish = _Finish(sweep, files, progress, done=len(files) - len(todo))
    if ray is None and stall_seconds is None:
        for index in todo:
            counted = _counter(steps, sweep.groups[index])
            finish(index, run_group(sweep, sweep.groups[index], beat=counted))
    elif ray is None:
        if todo:
            with Worker(sweep, stall_seconds, run_group, methods) as worker:
                for index in todo:
                    finish(index, worker.run(index, _counter(steps, sweep.groups[index])))
    else:
        _run_on_ray(sweep, ray, todo, finish, stall_seconds, methods)
    return _recorded(directory, sweep, manifest, files)


def _counter(steps, group: Group) -> Callable[..., None] | None:
    """``steps`` for one group: a beat with a count (steps done, total) passed on, one without
    (a seed done) dropped."""
    if steps is None:
        return None
    return lambda *count: steps(group, *count) if len(count) == 2 else None


def _start(directory: Path, sweep: Sweep) -> dict:
    """``groups/``, ``manifest.json`` (what the sweep contains) and ``sweep.toml`` (its text)
    written in the claimed ``directory``; returns the manifest."""
    (directory / "groups").mkdir(parents=True, exist_ok=True)
    manifest = {
        "sweep_sha256": sweep.digest,
        "base_dir": str(Path(sweep.base_dir).resolve()),  # relative paths (report's .npz data)
        "groups": [
            {
                "id": g.id,
                "file": str(group_file(directory, g).relative_to(directory)),
                "point": dict(g.point),
                "method": g.method.name,
            }
            for g in sweep.groups
        ],
    }
    write_atomic(directory / "manifest.json", dumps(manifest, indent=2, default=str).encode())
    write_atomic(directory / "sweep.toml", sweep.source.encode())
    return manifest


def _remove_stale(directory: Path, files: list[Path]) -> None:
    """Group files and checksums in ``groups/`` that are not this sweep's removed."""
    keep = set(files) | {checksum_file(f) for f in files}
    for stale in set((directory / "groups").glob("*.parquet")) - keep:
        stale.unlink()  # a replaced (--force) sweep's groups: not this sweep's rows
    for stale in set((directory / "groups").glob("_*.sha256")) - keep:
        stale.unlink()


def _unfinished(files: list[Path], say: Callable[[str], None]) -> list[int]:
    """Resume: the indices of the groups to run, skipping the finished groups whose files
    match their checksums; a file that does not is named."""
    todo = []
    for index, path in enumerate(files):
        reason = verify_group(path)
        if reason is not None:
            todo.append(index)
        if reason not in (None, NOT_WRITTEN):
            say(f"{path} {reason}: running its group again")
    return todo


@dataclass
class _Finish:
    """Writes a finished group's file (its table's ``GROUP_KEY`` metadata moved into the file's
    provenance) and reports the progress."""

    sweep: Sweep
    files: list[Path]
    progress: Callable[[int, int, Group], None] | None
    done: int

    def __call__(self, index: int, table: pa.Table) -> None:
        held = (table.schema.metadata or {}).get(GROUP_KEY)
        extra = json.loads(held) if held else {}
        metadata = provenance(sweep=self.sweep.digest, group=self.sweep.groups[index].id, **extra)
        write_group(self.files[index], table, metadata)
        self.done += 1
        if self.progress:
            self.progress(self.done, len(self.files), self.sweep.groups[index])


def _run_on_ray(sweep: Sweep, ray: str, todo, finish, stall_seconds, methods) -> None:
    """The groups ``todo`` as Ray tasks ("local" or a head at HOST:PORT), each finished as it
    arrives; a stalled or dead worker cancels the rest and is raised."""
    import ray as ray_module

    if ray != "local":
        check_ray_address(ray)
    ray_module.init(
        address=None if ray == "local" else ray,
        include_dashboard=False,
        log_to_driver=False,
        ignore_reinit_error=True,
    )
    try:
        task = ray_module.remote(max_retries=0)(_group_bytes)
        args = (sweep.source, str(sweep.base_dir))
        pending = {task.remote(*args, i, stall_seconds, methods): i for i in todo}
        while pending:
            ready, _ = ray_module.wait(list(pending), num_returns=1)
            index = pending.pop(ready[0])
            try:
                table = unsealed(ray_module.get(ready[0]), f"the Ray task of group {index}")
            except (GroupStalledError, WorkerDiedError) as error:  # Ray's wrapper keeps the class
                for ref in pending:
                    ray_module.cancel(ref, force=True)
                raise getattr(error, "cause", error) from None
            finish(index, table)
    finally:
        ray_module.shutdown()


def _recorded(directory: Path, sweep: Sweep, manifest: dict, files: list[Path]) -> list[Path]:
    """The sweep's metadata after its groups ran: ``manifest.json``'s entry of each finished
    group whose grid could be extended gets its ``grid_extension`` (from the group file)."""
    if not any(g.extensions for g in sweep.groups):
        return files
    for entry, group, path in zip(manifest["groups"], sweep.groups, files):
        if group.extensions and verify_group(path) is None:
            held = json.loads((pq.read_schema(path).metadata or {}).get(METADATA, b"{}"))
            if isinstance(held.get("grid_extension"), dict):
                entry["grid_extension"] = held["grid_extension"]
    write_atomic(directory / "manifest.json", dumps(manifest, indent=2, default=str).encode())
    return files

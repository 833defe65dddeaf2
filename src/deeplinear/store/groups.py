"""A sweep directory's group files: each written atomically with its sha256 beside it, under the
folder's lock, and read back only when ``experiment.json``, ``sweep.toml`` and ``manifest.json``
name one sweep and every file matches its checksum."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from deeplinear.errors import UsageError
from deeplinear.store import directories
from deeplinear.store.directories import write_atomic
from deeplinear.store.results import read_table, write_table

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None


NOT_WRITTEN = "is not written yet"  # ``verify_group``: neither the file nor its checksum exists
GROUP_FILE = re.compile(r"groups/[0-9a-f]{10}\.parquet")


def checksum_file(path: Path) -> Path:
    """A group file's checksum: ``_<name>.sha256`` beside it (``_``: not part of the dataset)."""
    return path.with_name(f"_{path.stem}.sha256")


@contextlib.contextmanager
def _locked(folder: Path, shared: bool = False):
    """The group folder's lock, so that a group file and its checksum change together even when
    two sweeps write into one ``--out``."""
    fd = None
    with contextlib.suppress(OSError):  # e.g. a read-only folder: nothing can be written anyway
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if fd is not None and fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)


def group_runs(path: Path) -> int:
    """How many runs a group file holds (its grid extension's included)."""
    column = pq.read_table(path, columns=["run_id"]).column("run_id")
    return len(pc.unique(column))


def write_group(path: Path, table: pa.Table, metadata: dict) -> None:
    """Write a group file, then its sha256 beside it (each atomically)."""

    with _locked(path.parent):
        digest = write_table(table, path, metadata)
        write_atomic(checksum_file(path), f"{digest}  {path.name}\n".encode())


def verify_group(path: Path) -> str | None:
    """None when the group file at ``path`` matches its checksum; else why it cannot be trusted
    (``NOT_WRITTEN`` for a group not run yet)."""
    check = checksum_file(path)
    with _locked(path.parent, shared=True):
        if not path.exists():
            return "is missing (its checksum is there)" if check.exists() else NOT_WRITTEN
        try:
            digest, name = check.read_text().split()
        except FileNotFoundError:
            return f"has no checksum ({check})"
        except (OSError, ValueError):  # ValueError: not two words, or not UTF-8
            return f"has an unreadable checksum ({check})"
        if name != path.name or len(digest) != 64:
            return f"has an unreadable checksum ({check})"
        try:
            actual = directories.sha256_file(path)
        except OSError as error:
            return f"cannot be read ({error.strerror or error})"
    if actual != digest:
        return "does not match its checksum (damaged, truncated or replaced since it was written)"
    return None


def _digest(path: Path, fix: str) -> str:
    """The sha256 a verified group file's checksum file names (changed since: refused)."""
    try:
        return checksum_file(path).read_text().split()[0]
    except (OSError, ValueError, IndexError):
        check = checksum_file(path)
        raise UsageError(f"{path} has an unreadable checksum ({check}): {fix}") from None


def read(directory: str | Path) -> pa.Table:
    """Every finished group's rows, as one table (also readable as a Parquet dataset).

    Nothing is trusted blindly: ``experiment.json``, ``sweep.toml`` and ``manifest.json`` must
    name the same sweep, and every group file present must match its checksum and hold its
    group; anything else is refused in one line naming the file and the fix.
    """
    return read_groups(directory)[0]


def read_groups(directory: str | Path) -> tuple[pa.Table, dict[str, dict]]:
    """``read``'s table, and each finished group's file metadata (provenance) with its file's
    ``sha256``, by group id."""

    directory = Path(directory)
    fix = f"re-run 'deeplinear sweep SWEEP --out {directory}' to run its group again"
    tables, metadata, listed = [], {}, _listed_groups(directory)
    unlisted = sorted(set((directory / "groups").glob("*.parquet")) - {p for _, p in listed})
    if unlisted:
        raise UsageError(f"{unlisted[0]} is not a group of this sweep (manifest.json): {fix}")
    finished = []
    for group_id, path in listed:  # every group file checked before any is parsed
        reason = verify_group(path)
        if reason == NOT_WRITTEN:
            continue  # not run yet (or failed): the report covers the finished groups
        if reason is not None:
            raise UsageError(f"{path} {reason}: {fix}")
        finished.append((group_id, path))
    for group_id, path in finished:
        digest = _digest(path, fix)
        data = directories.verified_bytes(path, digest, fix)  # the bytes checked
        table, held = read_table(path, fix, data)
        metadata[group_id] = {**held, "sha256": digest}  # what a verdict of it was judged on
        if metadata[group_id].get("group") != group_id or "group" not in table.column_names:
            raise UsageError(f"{path} does not hold the group manifest.json names: {fix}")
        tables.append(table)
    if not tables:
        raise UsageError(f"{directory} holds no finished groups: run 'deeplinear sweep' first")
    return pa.concat_tables(tables, promote_options="default"), metadata


def _listed_groups(directory: Path) -> list[tuple[str, Path]]:
    """(group id, file) of every group ``manifest.json`` lists, once ``experiment.json``,
    ``sweep.toml`` and ``manifest.json`` are found to name one sweep."""
    fix = f"re-run 'deeplinear sweep SWEEP --out {directory} --force' (finished groups are kept)"
    if directories.holds_a_run(directory):
        raise UsageError(
            f"{directory} holds a run's results, not a sweep's: 'deeplinear explain {directory}' "
            "judges a run; report reads what 'deeplinear sweep SWEEP --out DIR' writes"
        )
    if not (directory / "sweep.toml").is_file() and not (directory / "groups").is_dir():
        raise UsageError(f"{directory} holds no finished groups: run 'deeplinear sweep' first")
    held = _json(directory / directories.MANIFEST, fix)
    digest = held.get("sweep_sha256") if held.get("experiment") == "sweep" else None
    if not isinstance(digest, str):
        raise UsageError(f"{directory / directories.MANIFEST} does not name a sweep: {fix}")
    try:
        source = (directory / "sweep.toml").read_bytes()
    except OSError as error:
        path = directory / "sweep.toml"
        raise UsageError(f"{path} cannot be read ({error.strerror or error}): {fix}") from None
    if hashlib.sha256(source).hexdigest()[:16] != digest:
        raise UsageError(
            f"{directory / 'sweep.toml'} was changed after the sweep (experiment.json names "
            f"another sweep file): restore it, or {fix}"
        )
    listing = _json(directory / "manifest.json", fix)
    groups = listing.get("groups")
    if listing.get("sweep_sha256") != digest or not isinstance(groups, list):
        raise UsageError(f"{directory / 'manifest.json'} does not list this sweep's groups: {fix}")
    out = []
    for entry in groups:
        file = entry.get("file") if isinstance(entry, dict) else None
        group_id = entry.get("id") if isinstance(entry, dict) else None
        if not (
            isinstance(file, str)
            and GROUP_FILE.fullmatch(file)
            and isinstance(group_id, str)
            and group_id.endswith("|" + file[len("groups/") : -len(".parquet")])
        ):
            raise UsageError(f"{directory / 'manifest.json'} lists a malformed group: {fix}")
        out.append((group_id, directory / file))
    return out


def _json(path: Path, fix: str) -> dict:
    try:
        held = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise UsageError(f"{path} is missing: {fix}") from None
    except (OSError, ValueError):
        held = None
    if not isinstance(held, dict):
        raise UsageError(f"{path} is unreadable (not a JSON object): {fix}")
    return held

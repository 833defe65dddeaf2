"""Any results directory as one data frame: ``load(DIR, frame="pandas" | "polars" | "arrow")``.

A directory is one of three kinds, told apart by what it holds: a run (``deeplinear run``:
``curves.parquet``, ``experiment.json`` naming a ``run``), a reproduction (``deeplinear
reproduce``: the same table, ``experiment.json`` naming a ``reproduce``) or a sweep (``deeplinear
sweep``: ``groups/``, read through ``groups.read``, which verifies every group file). Its rows are
the tidy results table (``results``); its provenance (``provenance(DIR)``: package versions, git
revision, problem, experiment identity, sweep name) comes with it: pandas keeps it in
``DataFrame.attrs["deeplinear"]``, an Arrow table in its schema metadata (key ``deeplinear``, as
JSON); polars frames hold no metadata, so ``provenance(DIR)`` returns it for them. pandas and
polars are optional (``pip install 'deeplinear[frames]'``). No JAX is imported.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pyarrow as pa

from deeplinear.errors import UsageError
from deeplinear.store import directories
from deeplinear.store.groups import read_groups
from deeplinear.store.results import METADATA_KEY, read_table

FRAMES = ("pandas", "polars", "arrow")
INSTALL = "pip install 'deeplinear[frames]'"


def load(directory: str | Path, frame: str = "pandas"):
    """The rows of the results directory ``directory`` as a ``frame`` data frame, with its
    provenance attached where the frame library can hold it (see the module docstring)."""
    if frame not in FRAMES:
        raise UsageError(f"frame must be one of {', '.join(FRAMES)}, got {frame!r}")
    library = None if frame == "arrow" else _library(frame)  # before reading anything
    table, metadata = _read(Path(directory))
    if frame == "arrow":
        return table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata).encode()})
    if frame == "polars":
        return library.from_arrow(table)
    out = table.to_pandas()
    out.attrs["deeplinear"] = metadata
    return out


def provenance(directory: str | Path) -> dict:
    """What produced the results in ``directory``: its Parquet metadata (versions, git revision,
    command, problem, experiment identity); for a sweep, the sweep's name and identity and each
    group's metadata under ``groups``."""
    return _read(Path(directory))[1]


def kind(directory: str | Path) -> str:
    """``run``, ``reproduce`` or ``sweep``, as the directory's ``experiment.json`` names it; else
    a one-line UsageError naming ``directory`` (a missing manifest is refused, not guessed)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(
            f"{directory} is not a directory: give a results directory (deeplinear run, "
            "reproduce or sweep --out)"
        )
    held = directories.held(directory)
    if held is None or held.get("experiment") not in KINDS:
        what = "unreadable" if (directory / directories.MANIFEST).exists() else "missing"
        raise UsageError(
            f"{directory} is not a results directory: expected {directories.MANIFEST} naming "
            f"a deeplinear run, reproduce or sweep ({what}; damaged, or never written by "
            "deeplinear): re-run the command that wrote it"
        )
    return held["experiment"]


KINDS = ("run", "reproduce", "sweep")


def _read(directory: Path) -> tuple[pa.Table, dict]:
    if kind(directory) == "sweep":
        return _read_sweep(directory)
    fix = f"re-run the command that wrote {directory}"
    held = directories.verified(directory, ("run", "reproduce"), fix)  # every file, first
    path = directory / "curves.parquet"
    digest = held[directories.FILES].get("curves.parquet")
    if digest is None:
        raise UsageError(f"{directory / directories.MANIFEST} lists no curves.parquet: {fix}")
    return read_table(path, fix, directories.verified_bytes(path, digest, fix))


def _read_sweep(directory: Path) -> tuple[pa.Table, dict]:
    import tomllib

    table, groups = read_groups(directory)  # verifies the manifest and every group file
    try:
        name = tomllib.loads((directory / "sweep.toml").read_text()).get("name", "")
    except (OSError, ValueError):
        name = ""
    first = next(iter(groups.values()), {})
    shared = {
        key: first.get(key)
        for key in ("versions", "python", "platform", "hardware", "git_revision")
    }
    held = directories.held(directory) or {}
    metadata = {**shared, "experiment": held, "sweep": held.get("sweep_sha256"), "name": name}
    metadata["groups"] = groups
    return table.replace_schema_metadata(None), metadata


def _library(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise UsageError(f"frame={name!r} needs {name}: {INSTALL}") from None

"""The tidy results table: one row per (run, recorded step), written as Parquet.

Columns: ``run_id`` (unique), ``run`` (legend label), ``method``, ``variant``, ``learning_rate``
(nominal), ``seed``, ``step`` (updates applied; 0 = initial weights), ``loss`` (sum of squares,
no ½), ``grad_norm``, ``loss_notebook`` (the notebook's buggy LM loss), ``seconds`` (wall time
since the run's batch started, compile excluded), ``compile_seconds`` and ``batch_size`` (runs
that shared one compiled program and its wall time). Provenance goes in the file's metadata under
the key ``deeplinear`` as JSON.
"""

from __future__ import annotations

import io
import json
import platform
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .rundir import write_atomic
from .runner import Curve

SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("run", pa.string()),
        ("method", pa.string()),
        ("variant", pa.string()),
        ("learning_rate", pa.float64()),
        ("seed", pa.int64()),
        ("step", pa.int64()),
        ("loss", pa.float64()),
        ("grad_norm", pa.float64()),
        ("loss_notebook", pa.float64()),
        ("seconds", pa.float64()),
        ("compile_seconds", pa.float64()),
        ("batch_size", pa.int64()),
    ]
)
METADATA_KEY = b"deeplinear"


@dataclass(frozen=True)
class RunInfo:
    """What identifies a run in the table."""

    run_id: str
    run: str
    method: str
    learning_rate: float
    seed: int
    variant: str = ""
    compile_seconds: float = 0.0
    batch_size: int = 1


PER_RUN = ("run_id", "run", "method", "variant", "learning_rate", "seed", "compile_seconds",
           "batch_size")  # fmt: skip
PER_STEP = ("step", "loss", "grad_norm", "loss_notebook", "seconds")


def curves_table(runs: list[tuple[RunInfo, Curve]]) -> pa.Table:
    """Stack runs into the tidy table (one row per run and recorded step)."""
    ids = [info.run_id for info, _ in runs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"run_id values must be unique, got {ids}")
    owner = pa.array(np.repeat(np.arange(len(runs)), [len(c.steps) for _, c in runs]))
    columns = {}
    for name in PER_RUN:  # one value per run, repeated over its rows
        values = pa.array([getattr(info, name) for info, _ in runs], type=SCHEMA.field(name).type)
        columns[name] = values.take(owner)
    for name in PER_STEP:
        parts = [
            np.asarray(getattr(curve, name if name != "step" else "steps")) for _, curve in runs
        ]
        columns[name] = pa.array(np.concatenate(parts) if parts else [], SCHEMA.field(name).type)
    table = pa.Table.from_arrays([columns[name] for name in SCHEMA.names], schema=SCHEMA)
    rows = [len(curve.steps) for _, curve in runs]
    for name in sorted({key for _, curve in runs for key in curve.extras}):
        parts = [curve.extras.get(name) for _, curve in runs]
        if all(p is None or np.ndim(p) == 1 for p in parts):  # one number per row
            values = [np.full(n, np.nan) if p is None else p for p, n in zip(parts, rows)]
            column = pa.array(np.concatenate(values).astype(np.float64), pa.float64())
        else:  # a vector per row (per mode, per layer)
            column = _list_column(parts, rows)
        table = table.append_column(name, column)
    return table


def _list_column(parts, rows) -> pa.Array:
    """Per-row vectors (e.g. one value per mode) as an Arrow list column; missing runs are null."""
    values, offsets, valid = [], [0], []
    for part, n in zip(parts, rows):
        if part is None:
            offsets += [offsets[-1]] * n
            valid += [False] * n
            continue
        part = np.asarray(part, dtype=np.float64).reshape(n, -1)
        values.append(part.ravel())
        offsets += (offsets[-1] + part.shape[1] * np.arange(1, n + 1)).tolist()
        valid += [True] * n
    flat = pa.array(np.concatenate(values) if values else [], pa.float64())
    mask = pa.array(~np.asarray(valid, dtype=bool))
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), flat, mask=mask)


def provenance(command: list[str] | None = None, **extra) -> dict:
    """Package versions, git revision, platform, time and command line, for the file metadata."""
    versions = {}
    for package in ("deeplinear", "jax", "jaxlib", "optax", "numpy", "scipy", "pyarrow"):
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "versions": versions,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_revision": _git_revision(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command if command is not None else sys.argv,
        **extra,
    }


def _git_revision() -> str | None:
    source = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def write_table(table: pa.Table, path, metadata: dict) -> None:
    """Write ``table`` to ``path`` atomically, with ``metadata`` as JSON in the file's metadata."""
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata).encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    write_atomic(path, buffer.getvalue())


def read_table(path) -> tuple[pa.Table, dict]:
    """The table at ``path`` and its deeplinear metadata."""
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(METADATA_KEY, b"{}")
    return table, json.loads(raw)


def run_series(table: pa.Table) -> dict[str, dict[str, np.ndarray]]:
    """Each run's columns as NumPy arrays, keyed by ``run_id``, in table order.

    List columns (diagnostics with one value per mode or layer) become 2-d arrays.
    """
    columns = {name: _to_numpy(table.column(name)) for name in table.column_names}
    ids = columns["run_id"]
    order = list(dict.fromkeys(ids))  # first-appearance order
    position = {run_id: i for i, run_id in enumerate(order)}
    codes = np.fromiter((position[i] for i in ids), dtype=np.int64, count=len(ids))
    rows = np.argsort(codes, kind="stable")  # each run's rows, in table order
    bounds = np.searchsorted(codes[rows], np.arange(len(order) + 1))
    return {
        run_id: {name: values[rows[bounds[i] : bounds[i + 1]]] for name, values in columns.items()}
        for i, run_id in enumerate(order)
    }


def _to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    if not pa.types.is_list(column.type):
        return column.to_numpy(zero_copy_only=False)
    column = column.combine_chunks()
    if column.null_count == 0:
        values = column.flatten().to_numpy(zero_copy_only=False)
        return values.reshape(len(column), -1) if len(column) else values.reshape(0, 0)
    rows = column.to_pylist()
    width = next((len(v) for v in rows if v is not None), 0)
    return np.array([v if v is not None else [np.nan] * width for v in rows], dtype=np.float64)

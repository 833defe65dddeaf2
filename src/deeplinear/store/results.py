"""The tidy results table: one row per (run, recorded step), written as Parquet.

Columns: ``run_id`` (unique), ``run`` (legend label), ``method``, ``variant``, ``learning_rate``
(nominal), ``seed``, ``step`` (updates applied; 0 = initial weights), ``loss`` (sum of squares,
no ½), ``grad_norm``, ``loss_notebook`` (the notebook's buggy LM loss), ``seconds`` (wall time
since the run's batch started, compile excluded), ``compile_seconds`` and ``batch_size`` (runs
that shared one compiled program and its wall time). Provenance goes in the file's metadata under
the key ``deeplinear`` as JSON.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from deeplinear.errors import UsageError
from deeplinear.store.directories import write_atomic
from deeplinear.store.jsonfiles import dumps

if TYPE_CHECKING:
    from deeplinear.loop.runner import BatchResult

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
class Curve:
    """One run's recorded series; ``steps[i]`` updates had been applied at row ``i``.

    ``extras`` holds what a probe measured at the same rows (arrays with a leading row axis).
    """

    steps: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    loss_notebook: np.ndarray
    seconds: np.ndarray  # wall time since the start of the batch, compile time excluded
    extras: dict = field(default_factory=dict)

    @property
    def diverged_at(self) -> int | None:
        """The step of the first non-finite loss, or None."""
        return None if np.isfinite(self.loss[-1]) else int(self.steps[-1])


@dataclass(frozen=True, kw_only=True)
class RunInfo:
    """What identifies a run in the table. ``compile_seconds`` and ``batch_size`` describe the
    batch the run belonged to: ``batch_table`` fills them from the batch's result."""

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


def batch_table(infos: Sequence[RunInfo], result: BatchResult) -> pa.Table:
    """The table of one batch (``runner.BatchResult``): ``infos[i]`` names ``result.curves[i]``;
    every run gets the batch's compile time and size."""
    return batches_table([(infos, result)])


def batches_table(batches: Iterable[tuple[Sequence[RunInfo], BatchResult]]) -> pa.Table:
    """Several batches as one table, in order (a column one batch lacks is NaN or null in its
    rows): the one path from runner results to the tidy table."""
    runs = []
    for infos, result in batches:
        if len(infos) != len(result.curves):
            raise ValueError(f"{len(infos)} run identities for {len(result.curves)} curves")
        size, seconds = len(result.curves), float(result.compile_seconds)
        runs += [
            (replace(info, compile_seconds=seconds, batch_size=size), curve)
            for info, curve in zip(infos, result.curves)
        ]
    return curves_table(runs)


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
    """Package versions, git revision, platform, hardware, time and command line, for the file
    metadata."""
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
        "hardware": hardware(),
        "git_revision": _git_revision(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command if command is not None else sys.argv,
        **extra,
    }


def hardware() -> str:
    """``Intel(R) Xeon(R) … × 2 cores, 24 GiB; 1 × NVIDIA H100 80GB HBM3`` (the accelerators only
    when JAX is already loaded: reading tables must not load it)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{model} × {os.cpu_count()} cores"
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        text += f", {pages / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        pass
    jax = sys.modules.get("jax")
    if jax is not None:
        devices = [d for d in jax.devices() if d.platform != "cpu"]
        if devices:
            text += f"; {len(devices)} × {devices[0].device_kind}"
    return text


def _git_revision() -> str | None:
    source = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def write_table(table: pa.Table, path, metadata: dict) -> str:
    """Write ``table`` to ``path`` atomically, with ``metadata`` as JSON in the file's metadata.

    Returns the file's sha256 (hex), for the manifest written after it.
    """
    table = table.replace_schema_metadata({METADATA_KEY: dumps(metadata).encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return write_atomic(path, buffer.getvalue())


def sealed(table: pa.Table) -> tuple[str, bytes]:
    """``table`` as Parquet bytes with their sha256, to send to another process (the sweep's
    worker, a Ray task); ``unsealed`` checks them on arrival."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    data = buffer.getvalue()
    return hashlib.sha256(data).hexdigest(), data


def unsealed(message, what: str) -> pa.Table:
    """The table ``sealed`` made, once its bytes match their sha256; else a one-line
    UsageError naming ``what`` sent it (a truncated or damaged transfer)."""
    try:
        digest, data = message
        if hashlib.sha256(data).hexdigest() != digest:
            raise ValueError("checksum")
        return pq.read_table(pa.BufferReader(data))
    except (TypeError, ValueError, pa.ArrowException):
        raise UsageError(
            f"the results {what} sent do not match their checksum (a damaged transfer): run "
            "the sweep again (finished groups are kept)"
        ) from None


def read_table(
    path, fix: str = "re-run the command that wrote it", data: bytes | None = None
) -> tuple[pa.Table, dict]:
    """The table at ``path`` (parsed from ``data``, its verified contents, where given) and its
    deeplinear metadata.

    A file that is not a readable Parquet file, lacks the results columns or has no deeplinear
    metadata is refused with a one-line UsageError naming it and ending with ``fix``.
    """
    try:
        table = pq.read_table(path if data is None else pa.BufferReader(data))
    except FileNotFoundError:
        raise UsageError(f"{path} is missing: {fix}") from None
    except (OSError, ValueError, pa.ArrowException) as error:  # ArrowInvalid is a ValueError
        reason = " ".join(str(error).split())[:200]
        raise UsageError(f"{path} is not a readable Parquet file ({reason}): {fix}") from None
    try:
        metadata = json.loads((table.schema.metadata or {})[METADATA_KEY])
    except (KeyError, ValueError):
        metadata = None
    if not isinstance(metadata, dict):
        raise UsageError(f"{path} has no readable deeplinear metadata: {fix}")
    missing = [name for name in SCHEMA.names if name not in table.column_names]
    if missing:
        raise UsageError(f"{path} is not a results table (no column {missing[0]!r}): {fix}")
    return table, metadata


def run_series(table: pa.Table) -> dict[str, dict[str, np.ndarray]]:
    """Each run's columns as NumPy arrays, keyed by ``run_id``, in table order.

    List columns (diagnostics with one value per mode or layer) become 2-d arrays as wide as the
    run's own rows: runs of a sweep may differ in depth or width (an axis), their rows never.
    """
    columns = {name: _to_numpy(table.column(name)) for name in table.column_names}
    widths = {
        name: _lengths(table.column(name).combine_chunks())
        for name in table.column_names
        if pa.types.is_list(table.schema.field(name).type)
    }
    ids = columns["run_id"]
    order = list(dict.fromkeys(ids))  # first-appearance order
    position = {run_id: i for i, run_id in enumerate(order)}
    codes = np.fromiter((position[i] for i in ids), dtype=np.int64, count=len(ids))
    rows = np.argsort(codes, kind="stable")  # each run's rows, in table order
    bounds = np.searchsorted(codes[rows], np.arange(len(order) + 1))

    def part(name, values, own):
        if name not in widths:
            return values[own]
        width = int(widths[name][own].max()) if own.size else 0
        return values[own, :width]

    return {
        run_id: {
            name: part(name, values, rows[bounds[i] : bounds[i + 1]])
            for name, values in columns.items()
        }
        for i, run_id in enumerate(order)
    }


def _to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """A column as NumPy; a list column as a 2-d array, its rows shorter than the longest (null
    rows, or fewer layers or modes at another axis point of a sweep) padded with NaN."""
    if not pa.types.is_list(column.type):
        return column.to_numpy(zero_copy_only=False)
    column = column.combine_chunks()
    lengths = _lengths(column)
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    width = int(lengths.max()) if len(lengths) else 0
    if column.null_count == 0 and np.all(lengths == width):
        return flat.reshape(len(column), width)
    out = np.full((len(column), width), np.nan)
    starts = np.cumsum(lengths) - lengths
    out[
        np.repeat(np.arange(len(column)), lengths),
        np.arange(len(flat)) - np.repeat(starts, lengths),
    ] = flat
    return out


def _lengths(column: pa.Array) -> np.ndarray:
    """Each row's list length (0 for a null row)."""
    return column.value_lengths().fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)

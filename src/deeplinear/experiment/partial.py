"""What an interrupted run keeps: each finished batch, and checkpoints of a long one.

While ``deeplinear run`` works, ``DIR/partial/<run file's sha256>/`` holds every method's batch
once it has finished (``batch-I.npz``: curves, final weights and state, spectra) and, every
``CHECKPOINT_SECONDS`` (``DEEPLINEAR_CHECKPOINT_SECONDS``) inside a long batch, the loop where it
stands (``checkpoint-I.npz``: its carry, the records so far, timings). Each is written atomically
with a JSON sidecar written after it (its sha256, the deeplinear and JAX versions that made it),
so Ctrl-C, SIGTERM, kill -9 or a crash lose at most the last seconds of one batch. Running the
same run file again (same ``--out``) takes the finished batches as they are and continues the
checkpointed one with the same chunks and compiled programs: the rows an uninterrupted run gives.
A file that does not match its checksum, or was made by another version, is not used (the batch
runs again). The folder goes away with the old experiment once the run's files are in place.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from deeplinear.core.backend import jax
from deeplinear.errors import UsageError
from deeplinear.loop import runner
from deeplinear.loop.programs import BatchResult, Checkpoints, Drive
from deeplinear.store import directories
from deeplinear.store.arrays import NotPlainError, tree_bytes, tree_from
from deeplinear.store.jsonfiles import dumps
from deeplinear.store.results import Curve

FOLDER = "partial"
CHECKPOINT_SECONDS = 30.0
CURVE_FIELDS = ("steps", "loss", "grad_norm", "loss_notebook", "seconds")


def checkpoint_seconds() -> float:
    """``DEEPLINEAR_CHECKPOINT_SECONDS`` (> 0), else ``CHECKPOINT_SECONDS``."""
    raw = os.environ.get("DEEPLINEAR_CHECKPOINT_SECONDS")
    if raw is None:
        return CHECKPOINT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise UsageError(
            f"DEEPLINEAR_CHECKPOINT_SECONDS must be a number of seconds > 0, got {raw!r}"
        )
    return value


class Kept:
    """The finished batches and checkpoints of one run file in ``out``."""

    def __init__(self, out: Path, config_sha256: str):
        self.folder = Path(out) / FOLDER / config_sha256
        self.every = checkpoint_seconds()
        self.kept: list[int] = []  # batches taken from an interrupted run
        self.continued: list[int] = []  # batches continued from a checkpoint

    def batch(self, index: int, method, setup, rates) -> tuple[BatchResult, list[dict]] | None:
        """Batch ``index`` as an interrupted run finished it, with its spectra rows; else None."""
        tree = self._read(f"batch-{index}")
        if tree is None:
            return None
        try:
            result = _batch_of(tree, method, setup, rates)
        except (KeyError, TypeError, ValueError, pa.ArrowException):
            return None
        if result is not None:
            self.kept.append(index)
        return result

    def checkpoints(self, index: int) -> Checkpoints:
        """The checkpoints of batch ``index``: the one left, and a writer every ``self.every``."""
        saved = None
        tree = self._read(f"checkpoint-{index}")
        with contextlib.suppress(KeyError, TypeError, ValueError):
            if tree is not None:
                saved = (str(tree["path"]), _drive_of(tree))
                self.continued.append(index)
        last = [time.monotonic()]

        def save(path: str, driven: Drive) -> None:
            if time.monotonic() - last[0] < self.every:
                return
            try:
                leaves = jax.tree_util.tree_leaves(driven.carry)
                pieces = jax.tree_util.tree_map(lambda *x: np.concatenate(x, 1), *driven.pieces)
            except (TypeError, ValueError):
                return  # records this format cannot hold: no checkpoint
            tree = {
                "path": path,
                "carry": [np.asarray(x) for x in leaves],
                "pieces": pieces,
                "times": np.asarray(driven.times),
                "sizes": np.asarray(driven.sizes),
                "numbers": np.asarray([driven.compile_seconds, driven.records_done]),
            }
            self._write(f"checkpoint-{index}", tree)
            last[0] = time.monotonic()

        return Checkpoints(saved, save)

    def keep(self, index: int, result: BatchResult, spectra: list[dict]) -> None:
        """Write batch ``index`` (its ``weights`` extras dropped: the spectra hold what they
        gave), then drop its checkpoint."""
        curves = [
            {
                **{name: getattr(curve, name) for name in CURVE_FIELDS},
                "extras": {k: v for k, v in curve.extras.items() if k != "weights"},
            }
            for curve in result.curves
        ]
        buffer = pa.BufferOutputStream()
        pq.write_table(_spectra_table(spectra), buffer)
        tree = {
            "curves": curves,
            "final_weights": [np.asarray(w) for w in result.final_weights],
            "final_state": None
            if result.final_state is None
            else [np.asarray(x) for x in jax.tree_util.tree_leaves(result.final_state)],
            "seconds": np.asarray([result.compile_seconds, result.run_seconds]),
            "spectra": np.frombuffer(buffer.getvalue().to_pybytes(), dtype=np.uint8),
        }
        if self._write(f"batch-{index}", tree):
            for suffix in (".json", ".npz"):
                with contextlib.suppress(OSError):
                    (self.folder / f"checkpoint-{index}{suffix}").unlink()

    def _write(self, name: str, tree) -> bool:
        try:
            data = tree_bytes(tree)
        except (NotPlainError, TypeError, ValueError):
            return False  # a method state this format cannot hold: the batch is not kept
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            digest = directories.write_atomic(self.folder / f"{name}.npz", data)
            sidecar = {"sha256": digest, "versions": _versions()}
            directories.write_atomic(self.folder / f"{name}.json", dumps(sidecar).encode())
        except OSError:
            return False  # a full disk: the run goes on, unkept
        return True

    def _read(self, name: str):
        try:
            sidecar = json.loads((self.folder / f"{name}.json").read_bytes())
            if sidecar.get("versions") != _versions():
                return None  # made by another deeplinear or JAX: run it again
            data = directories.verified_bytes(self.folder / f"{name}.npz", sidecar["sha256"], "")
            return tree_from(data)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, UsageError,
                zipfile.BadZipFile):  # fmt: skip
            return None


def _versions() -> dict:
    out = {}
    for package in ("deeplinear", "jax", "jaxlib", "numpy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def _spectra_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows) if rows else pa.table({"run_id": pa.array([], pa.string())})


def _batch_of(tree, method, setup, rates) -> tuple[BatchResult, list[dict]] | None:
    curves = [
        Curve(*(np.asarray(c[name]) for name in CURVE_FIELDS), extras=dict(c["extras"]))
        for c in tree["curves"]
    ]
    if len(curves) != len(rates):
        return None
    final_weights = tuple(jax.numpy.asarray(w) for w in tree["final_weights"])
    if [w.shape[1:] for w in final_weights] != [np.shape(w) for w in setup.weights]:
        return None
    state = None
    if tree["final_state"] is not None:
        template = runner.start_state(method, setup.objective, setup.weights, rates)[1]
        leaves, structure = jax.tree_util.tree_flatten(template)
        saved = tree["final_state"]
        if len(saved) != len(leaves) or any(
            np.shape(a) != np.shape(b) for a, b in zip(saved, leaves)
        ):
            return None
        state = jax.tree_util.tree_unflatten(structure, [jax.numpy.asarray(x) for x in saved])
    compile_seconds, run_seconds = (float(x) for x in tree["seconds"])
    spectra = pq.read_table(pa.BufferReader(tree["spectra"].tobytes())).to_pylist()
    result = BatchResult(curves, final_weights, state, compile_seconds, run_seconds)
    return result, spectra


def _drive_of(tree) -> Drive:
    compile_seconds, done = tree["numbers"]
    return Drive(
        carry=list(tree["carry"]),
        pieces=[tree["pieces"]],
        times=[float(t) for t in tree["times"]],
        sizes=[int(s) for s in tree["sizes"]],
        compile_seconds=float(compile_seconds),
        records_done=int(done),
    )

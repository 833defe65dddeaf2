"""A results directory and the experiment it belongs to (no heavy imports: the CLI checks early).

A directory is claimed by writing ``experiment.json`` (what experiment it holds) before any
result. Re-running the same experiment replaces its own files; a different experiment is refused
unless forced. Every file is written atomically (temporary file, then ``os.replace``), so an
interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from .errors import UsageError

MANIFEST = "experiment.json"


def claim(directory: str | os.PathLike, experiment: dict, force: bool = False) -> Path:
    """Create ``directory`` if needed and mark it as holding ``experiment``.

    Refuses, with a one-line UsageError, a path that is a file or cannot be written, and a
    directory holding another experiment (or files not written by deeplinear) unless ``force``.
    """
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {path} is a file, not a directory: choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = error.strerror or str(error)
        raise UsageError(
            f"--out {path} cannot be created ({reason}): choose another --out"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"--out {path} is not writable: choose another --out")
    manifest = path / MANIFEST
    if not force:
        if manifest.exists():
            try:
                held = json.loads(manifest.read_text())
            except (OSError, ValueError):
                held = None
            if held != experiment:
                raise UsageError(
                    f"--out {path} holds a different experiment ({_describe(held)}): "
                    "choose another --out or pass --force to replace it"
                )
        elif any(path.iterdir()):
            raise UsageError(
                f"--out {path} is not empty and was not written by deeplinear: "
                "choose another --out or pass --force"
            )
    write_atomic(manifest, (json.dumps(experiment, indent=2, sort_keys=True) + "\n").encode())
    return path


def _describe(experiment) -> str:
    if not isinstance(experiment, dict):
        return "unreadable experiment.json"
    return ", ".join(f"{k}={v}" for k, v in sorted(experiment.items()))


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

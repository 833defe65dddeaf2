"""What the commands share before they start: the checks of output and results directories, and
the limits and compilation cache the arguments set (through the environment, so that a sweep's
worker processes follow them)."""

from __future__ import annotations

import os
from pathlib import Path

from deeplinear.errors import UsageError


def writable_parts(out, folders=(), files=()) -> None:
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


def writable_directory(directory, command: str, writes: str) -> Path:
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


def apply_limits(args) -> None:
    """--max-memory and --max-hours, through the environment ``limits.Limits`` reads (so that a
    sweep's Ray workers see them too)."""
    from deeplinear.core.limits import MEMORY_ENV, TIME_ENV

    if getattr(args, "max_memory", None) is not None:
        os.environ[MEMORY_ENV] = repr(args.max_memory)
    if getattr(args, "max_hours", None) is not None:
        os.environ[TIME_ENV] = repr(args.max_hours)


def use_cache(args, say) -> None:
    """The compilation cache unless --no-cache; through the environment, so that a sweep's
    worker processes follow the same choice."""
    from deeplinear.core.backend import CACHE_ENV, enable_compilation_cache

    if getattr(args, "no_cache", False):
        os.environ[CACHE_ENV] = "off"
    if enable_compilation_cache(warn=say) is None:
        os.environ[CACHE_ENV] = "off"  # unusable: the workers need not warn again

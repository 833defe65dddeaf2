"""One writer per results directory: an exclusive lock held while a command writes there.

``writing(DIR, what)`` takes the lock of ``DIR`` for the life of a ``with`` block (``run``,
``reproduce``, ``sweep``, ``explain``): a second process that asks for it, with ``--force`` or
not, is refused in one line naming the holder's pid and command. The lock is an ``flock`` on a
file that never moves — ``.NAME.deeplinear.lock`` beside ``DIR`` (``replace`` exchanges ``DIR``
itself, so a file inside it would move with the old experiment), or inside ``DIR`` where its
parent cannot be written (then ``replace`` writes in place) — so the operating system releases
it when the process ends, however it ends: the lock of a dead process is taken over. Within one
process the lock is re-entrant (a command that calls another writer of the same directory).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from deeplinear.errors import UsageError

try:
    import fcntl
except ImportError:  # not POSIX: no lock (one writer is then the user's care)
    fcntl = None

SUFFIX = ".deeplinear.lock"
_HELD: dict[str, list] = {}  # lock file → [fd or None, depth], for this process
_GUARD = threading.Lock()


def lock_file(directory: str | os.PathLike) -> Path:
    """Where ``directory``'s lock lives (see the module docstring)."""
    path = Path(os.path.realpath(directory))
    if os.access(path.parent, os.W_OK | os.X_OK):
        return path.parent / f".{path.name}{SUFFIX}"
    return path / SUFFIX  # (ignored by ``directories`` as content)


def holder(directory: str | os.PathLike) -> str | None:
    """``pid N (command)`` of the process that holds ``directory``'s lock, or None if free."""
    path = lock_file(directory)
    if fcntl is None or not path.is_file():
        return None
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _who(path)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    return None


@contextlib.contextmanager
def writing(directory: str | os.PathLike, what: str | None = None) -> Iterator[None]:
    """Hold ``directory``'s writer lock in this block; refuse (UsageError, one line) if another
    process holds it. ``what``: the command, recorded beside the pid for whoever is refused."""
    if fcntl is None:
        yield
        return
    path = lock_file(directory)
    key = str(path)
    with _GUARD:
        entry = _HELD.get(key)
        if entry is not None:
            entry[1] += 1
        else:
            _HELD[key] = [_acquire(path, directory, what), 1]
    try:
        yield
    finally:
        with _GUARD:
            entry = _HELD[key]
            entry[1] -= 1
            if entry[1] == 0:
                del _HELD[key]
                if entry[0] is not None:
                    os.close(entry[0])  # releases the lock


def _acquire(path: Path, directory, what: str | None) -> int | None:
    """The locked file's descriptor; None where no lock file can be made (a folder that cannot
    be created or written: the claim that follows refuses it in its own words)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UsageError(
            f"--out {directory} is being written by another deeplinear process "
            f"({_who(path) or 'pid unknown'}): wait for it to finish (or stop it), or choose "
            "another --out"
        ) from None
    command = what or " ".join(["deeplinear", *sys.argv[1:]])
    with contextlib.suppress(OSError):  # who holds it, for whoever is refused
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {command}\n".encode(), 0)
    return fd


def _who(path: Path) -> str | None:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return None
    pid, _, command = text.partition(" ")
    if not pid.isdigit():
        return None
    return f"pid {pid}" + (f": {command[:120]}" if command else "")

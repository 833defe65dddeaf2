"""A results directory and the experiment it belongs to (no heavy imports: the CLI checks early).

A directory is claimed by writing ``experiment.json`` (what experiment it holds) before any
result. Re-running the same experiment replaces its own files; a different experiment is refused
unless forced. Every file is written atomically (temporary file, then ``os.replace``), so an
interrupted run never leaves a half-written file.

Stored state is never trusted blindly. A ``run`` experiment is written whole by ``replace``: its
files go into a sibling temporary folder, ``experiment.json`` (the identity plus the sha256 of
every file) is written there last, and the two folders are exchanged in one rename — an
interruption leaves the old experiment or the new one, never a mix. A reader checks the manifest
(``read_manifest``) and every listed file against its checksum (``check_file``) before trusting
any of it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from deeplinear.errors import UsageError
from deeplinear.store import locks
from deeplinear.store.jsonfiles import dumps

MANIFEST = "experiment.json"
FILES = "files"  # experiment.json's key: relative path → sha256 of every file of the experiment
# experiments written whole by ``replace`` (staged in a sibling folder, swapped in when complete):
# ``claim`` only checks the directory for them and never touches an existing one
STAGED = frozenset({"run", "reproduce"})
STAGE = ".deeplinear-"  # sibling folders ``.<name>.deeplinear-<pid>-…`` while replacing


def claim(directory: str | os.PathLike, experiment: dict, force: bool = False) -> Path:
    """Create ``directory`` if needed and mark it as holding ``experiment``.

    Refuses, with a one-line UsageError, a path that is a file or cannot be written, and a
    directory holding another experiment (or files not written by deeplinear) unless ``force``.
    For an experiment in ``STAGED`` (``run``) a directory holding anything is left untouched:
    ``replace`` swaps the new experiment in once it is complete.
    """
    path = Path(directory)
    recover(path)
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
            held = identity(_read_json(manifest))
            if held != experiment:
                raise UsageError(
                    f"--out {path} holds a different experiment ({_describe(held)}): "
                    "choose another --out or pass --force to replace it"
                )
        elif _holds_anything(path):
            raise UsageError(
                f"--out {path} is not empty and was not written by deeplinear: "
                "choose another --out or pass --force"
            )
    if experiment.get("experiment") in STAGED and _holds_anything(path):
        return path  # ``replace`` swaps the new experiment in when it is complete
    _write_manifest(path, experiment)
    return path


def holds_a_run(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a run's results (``deeplinear run``/``reproduce``: its
    ``config.toml`` or ``curves.parquet``), however damaged, rather than a sweep's."""
    return any((Path(directory) / name).exists() for name in ("config.toml", "curves.parquet"))


def _holds_anything(path: Path) -> bool:
    """Whether ``path`` holds a file or folder (its writer lock, ``locks``, does not count)."""
    return any(entry.name != locks.SUFFIX for entry in path.iterdir())


def held(directory: str | os.PathLike) -> dict | None:
    """The experiment ``directory``'s ``experiment.json`` names (``identity``); None if it has
    none or it is unreadable."""
    return identity(_read_json(Path(directory) / MANIFEST))


def identity(held) -> dict | None:
    """What experiment an ``experiment.json`` names (without its checksums); None if unreadable."""
    if not isinstance(held, dict):
        return None
    return {k: v for k, v in held.items() if k != FILES}


def _read_json(path: Path):
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def _write_manifest(folder: Path, experiment: dict, files: dict | None = None) -> None:
    held = dict(experiment) if files is None else {**experiment, FILES: dict(sorted(files.items()))}
    write_atomic(folder / MANIFEST, (dumps(held, indent=2, sort_keys=True) + "\n").encode())


def replace(
    directory: str | os.PathLike, experiment: dict, write: Callable[[Path], dict[str, str]]
) -> Path:
    """Put a complete experiment into ``directory``, replacing what it held, in one step.

    ``write(folder)`` writes the experiment's files into ``folder`` and returns their sha256
    (relative path → hex digest, as ``write_atomic`` returns). The folder is a fresh sibling of
    ``directory``; ``experiment.json`` with the identity and the checksums is written into it last,
    then the two are exchanged in one rename (Linux ``renameat2(RENAME_EXCHANGE)``, macOS
    ``renamex_np(RENAME_SWAP)``; elsewhere two renames, undone by the next ``recover`` if cut
    between them) and the old experiment is removed. A directory not written by deeplinear
    (claimed with ``--force``) is never removed: the files are written into it, the manifest last;
    so are they where the parent folder is not writable (then an interruption leaves no manifest:
    refused as incomplete, never mixed).
    """
    path = Path(os.path.realpath(directory))
    recover(path)
    owned = not path.exists() or (path / MANIFEST).is_file() or not _holds_anything(path)
    stage = None
    if owned and os.access(path.parent, os.W_OK | os.X_OK):  # else (a mount point): in place
        stage = path.parent / f".{path.name}{STAGE}{os.getpid()}-{secrets.token_hex(4)}"
        os.mkdir(stage)  # the umask's mode, as ``claim``'s mkdir
        with contextlib.suppress(OSError):
            os.chmod(stage, path.stat().st_mode & 0o7777)  # the replaced folder's mode
    if stage is None:
        with contextlib.suppress(FileNotFoundError):
            (path / MANIFEST).unlink()  # an interrupted write in place is incomplete, not mixed
        path.mkdir(parents=True, exist_ok=True)
        _write_manifest(path, experiment, write(path))
        return path
    try:
        _write_manifest(stage, experiment, write(stage))
        if path.exists():
            here = _cwd()
            _exchange(stage, path)  # from here on ``stage`` holds the old experiment
            if here is not None and (here + os.sep).startswith(str(path) + os.sep):
                _enter(here, path)  # a process working inside ``directory`` follows it
        else:
            os.rename(stage, path)
    except BaseException:
        _remove(stage)
        raise
    _fsync_directory(path.parent)
    with contextlib.suppress(OSError):  # the new experiment is in place: the old one can wait
        _remove(stage)  # (for ``recover``, once this process has ended)
    return path


def verified(directory: str | os.PathLike, kinds: str | tuple[str, ...], fix: str) -> dict:
    """The ``experiment.json`` of ``directory`` once every file it lists matches its sha256.

    The one gate of every reader of a run or a reproduction (``explain``, ``dl.load``, the
    budget check): nothing in the directory is parsed before this returns, and a missing or
    unreadable manifest is a refusal, never a bypass (``read_manifest``, ``check_file``). Read a
    listed file's contents with ``verified_bytes``, which checks them again as they are read.
    """
    held = read_manifest(directory, kinds, fix)
    for name, digest in held[FILES].items():
        check_file(Path(directory) / name, digest, fix)
    return held


def verified_bytes(path: Path, digest: str, fix: str) -> bytes:
    """The contents of ``path``, refused (one line, ending with ``fix``) unless their sha256 is
    ``digest``: the bytes parsed are the bytes checked, whatever happens to the file after."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path} is missing (its checksum is listed): {fix}") from None
    except OSError as error:
        raise UsageError(f"{path} cannot be read ({error.strerror or error}): {fix}") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise UsageError(
            f"{path} does not match its checksum (damaged, truncated or replaced since it was "
            f"written): {fix}"
        )
    return data


def read_manifest(directory: str | os.PathLike, kinds: str | tuple[str, ...], fix: str) -> dict:
    """The ``experiment.json`` of ``directory``, checked for form: it must name an experiment
    of ``kinds`` and list a sha256 for every file (``check_file`` checks each). Anything else —
    no or an unreadable manifest, another kind of experiment, no checksums (an interrupted or
    older run) — is refused with a one-line UsageError naming the file and ending with ``fix``."""
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    path = Path(directory)
    recover(path)
    file = path / MANIFEST
    if not file.is_file():
        raise UsageError(f"{file} is missing: {fix}")
    held = _read_json(file)
    if not isinstance(held, dict):
        raise UsageError(f"{file} is unreadable (not a JSON object): {fix}")
    if held.get("experiment") not in kinds:
        wanted = " or ".join(repr(k) for k in kinds)
        raise UsageError(
            f"{file} names a {held.get('experiment')!r} experiment, not a {wanted} one: {fix}"
        )
    files = held.get(FILES)
    if not isinstance(files, dict) or not all(
        _plain(name) and isinstance(digest, str) and len(digest) == 64
        for name, digest in files.items()
    ):
        raise UsageError(
            f"{file} lists no valid checksums (an interrupted run, or one written by an older "
            f"deeplinear): {fix}"
        )
    return held


def _plain(name) -> bool:
    """A relative path inside the directory (no absolute path, no '..')."""
    if not isinstance(name, str) or not name:
        return False
    parts = Path(name).parts
    return not Path(name).is_absolute() and ".." not in parts and name != MANIFEST


def check_file(path: Path, digest: str, fix: str) -> None:
    """Refuse ``path`` (one line, ending with ``fix``) unless its sha256 is ``digest``."""
    try:
        actual = sha256_file(path)
    except FileNotFoundError:
        raise UsageError(f"{path} is missing (its checksum is listed): {fix}") from None
    except OSError as error:
        raise UsageError(f"{path} cannot be read ({error.strerror or error}): {fix}") from None
    if actual != digest:
        raise UsageError(
            f"{path} does not match its checksum (damaged, truncated or replaced since it was "
            f"written): {fix}"
        )


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stages(path: Path) -> list[tuple[Path, int]]:
    """Leftover sibling folders of ``replace`` for ``path``, with the process that made them."""
    out = []
    prefix = f".{path.name}{STAGE}"
    with contextlib.suppress(OSError):
        for entry in path.parent.iterdir():
            if entry.name.startswith(prefix):
                pid = entry.name[len(prefix) :].split("-", 1)[0]
                if pid.isdigit():
                    out.append((entry, int(pid)))
    return out


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


def recover(directory: str | os.PathLike) -> None:
    """Clean up after a ``replace`` that was killed: folders of dead processes are removed; if
    ``directory`` itself is gone (cut between two renames), the old experiment is put back."""
    path = Path(os.path.realpath(directory))
    for entry, pid in _stages(path):
        if _alive(pid):
            continue
        if entry.name.endswith(".old"):  # the old experiment, moved aside by the fallback
            if path.exists() and _holds_anything(path):
                _remove(entry)  # the swap went through: the new one is in place
            else:
                with contextlib.suppress(OSError):  # (over an empty folder: a claim since)
                    os.rename(entry, path)
            continue
        _remove(entry)


def remove(path: Path) -> None:
    """Remove the file or folder ``path`` (read-only folders too); nothing if it is absent."""
    _remove(path)


def _remove(path: Path) -> None:
    def writable(function, name, _):  # a read-only folder (e.g. state/): make it deletable
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(name), 0o700)
            function(name)

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, onerror=writable)  # (``onexc`` from Python 3.12)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _libc():
    with contextlib.suppress(OSError, TypeError):
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    return None


def _exchange(a: Path, b: Path) -> None:
    """Swap the folders ``a`` and ``b`` in one step where the system can; else two renames."""
    libc, codes = _libc(), (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP)
    swap = getattr(libc, "renameat2", None)
    args = (-100, os.fsencode(a), -100, os.fsencode(b), 2)  # AT_FDCWD, RENAME_EXCHANGE
    if swap is None:
        swap = getattr(libc, "renamex_np", None)  # macOS
        args = (os.fsencode(a), os.fsencode(b), 2)  # RENAME_SWAP
    if swap is not None:
        if swap(*args) == 0:
            return
        code = ctypes.get_errno()
        if code not in codes:
            raise OSError(code, os.strerror(code), str(b))
    aside = a.with_name(a.name + ".old")  # ``recover`` puts it back if we are killed here
    os.rename(b, aside)
    try:
        os.rename(a, b)
    except BaseException:
        os.rename(aside, b)
        raise
    os.rename(aside, a)


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:
        return None


def _enter(here: str, path: Path) -> None:
    for folder in (here, path):
        with contextlib.suppress(OSError):
            os.chdir(folder)
            return


def _fsync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _describe(experiment) -> str:
    if not isinstance(experiment, dict):
        return "unreadable experiment.json"
    return ", ".join(f"{k}={v}" for k, v in sorted(experiment.items()))


def _umask() -> int:
    """The process's umask: from /proc on Linux (no window in which another thread could create
    a file under a different mask), else read by setting it and setting it back at once."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The file gets the mode an ordinary ``open`` would give it, 0666 & ~umask (``mkstemp``'s
    0600 would hide results from collaborators). Returns the sha256 of ``data`` (hex), for a
    manifest written after the file.
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise UsageError(f"{path} is a folder, not a file: remove it, then run the command again")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())  # the data is on disk before the name points to it
        os.replace(tmp, path)
        return hashlib.sha256(data).hexdigest()
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

"""Sweep groups run in a worker process that the sweep can stop: the watchdog.

A compiled XLA call cannot be interrupted from Python, so one group that hangs (a deadlock in a
native library, a wedged thread pool) would hang the whole sweep. ``Worker`` runs groups one after
another in a separate, new process (JAX's threads do not survive a fork) that sends a
heartbeat whenever a chunk of steps, a seed or a group finishes. When none arrives for
``stall_seconds`` the worker is killed and ``GroupStalledError`` names the group; the groups
finished before it are already on disk (the sweep writes each one atomically as it arrives).

The worker keeps its compiled programs from group to group, ignores Ctrl-C (the sweep stops it)
and exits when the sweep's process is gone, even if it was killed with ``kill -9``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import pyarrow as pa

from deeplinear.core.backend import enable_compilation_cache
from deeplinear.errors import UsageError
from deeplinear.methods import METHODS
from deeplinear.methods import register as register_method
from deeplinear.problems import kinds
from deeplinear.store.results import sealed, unsealed


class GroupStalledError(RuntimeError):
    """A group sent no heartbeat for ``seconds``: its worker was killed."""

    def __init__(self, label: str, seconds: float):
        self.label, self.seconds = label, seconds
        super().__init__(
            f"group {label} made no progress for {seconds:g} s and was stopped; the groups "
            "finished before it are kept: re-run the same command to resume, or raise "
            "--stall-seconds if its steps are only slow"
        )

    def __reduce__(self):  # picklable (a Ray task raises it on the driver)
        return GroupStalledError, (self.label, self.seconds)


class WorkerDiedError(RuntimeError):
    """The worker process ended in the middle of a group (killed, out of memory, a crash)."""

    def __init__(self, label: str, exitcode: int | None):
        self.label, self.exitcode = label, exitcode
        how = f"exit status {exitcode}"
        if exitcode == -signal.SIGKILL:
            how = "killed by SIGKILL, e.g. for lack of memory"
        elif exitcode is not None and exitcode < 0:
            how = f"killed by signal {-exitcode}"
        super().__init__(
            f"the worker running group {label} died ({how}); the groups finished before it "
            "are kept: re-run the same command to resume"
        )

    def __reduce__(self):
        return WorkerDiedError, (self.label, self.exitcode)


STOPPED = (GroupStalledError, WorkerDiedError)  # ``deeplinear sweep``: one line, exit status 1
STARTUP_SECONDS = 300.0  # a worker's start (interpreter, imports, the sweep) may take this long


def _label(group) -> str:
    return group.name


def portable_extensions(where: str) -> tuple[type, ...]:
    """The methods and problem kinds given to ``register`` in this process, for another (the
    worker, a Ray task) to register before any group: each importable there by reference, else
    a one-line refusal before anything runs (``where`` names who needs them)."""
    return (*METHODS.portable(where), *kinds.portable(where))


def register_extensions(classes) -> None:
    """Register here what ``portable_extensions`` sent: methods and problem kinds alike."""
    for cls in classes:
        if isinstance(cls, type) and issubclass(cls, kinds.AbstractProblemKind):
            kinds.register(cls)
        else:
            register_method(cls)


class Worker:
    """A worker process that runs ``sweep``'s groups on request, under a watchdog.

    ``with Worker(sweep, stall_seconds, run_group) as worker: table = worker.run(index)``, where
    ``run_group(sweep, group, beat=...)`` (an importable function: it is sent by name) makes the
    group's table. The worker is a
    fresh interpreter running this module (not ``multiprocessing``, which would import the
    caller's ``__main__`` again), talking over two pipes; POSIX only. It gets this process's
    ``sys.path`` (after its own deeplinear) and registers ``methods`` (classes given to
    ``register`` here, sent by reference: ``METHODS.portable`` checks them) before any group.
    """

    def __init__(self, sweep, stall_seconds: float, run_group, methods=()):
        if not stall_seconds > 0:
            raise UsageError(f"stall_seconds must be > 0, got {stall_seconds!r}")
        self.sweep, self.stall_seconds = sweep, float(stall_seconds)
        to_worker, from_worker = os.pipe(), os.pipe()
        package = str(Path(__file__).resolve().parents[2])  # this deeplinear, whatever sys.path
        code = (
            f"import sys; sys.path.insert(0, {package!r});"
            " from deeplinear.sweep.watchdog import _child;"
            f" _child({to_worker[0]}, {from_worker[1]}, {os.getpid()})"
        )
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code],
                pass_fds=(to_worker[0], from_worker[1]),
                stdin=subprocess.DEVNULL,
            )
        finally:
            os.close(to_worker[0])
            os.close(from_worker[1])
        self._outbox = Connection(to_worker[1], readable=False)
        self._inbox = Connection(from_worker[0], writable=False)
        self._send(list(sys.path), None)  # first: the modules the next message names
        self._send((sweep, run_group, tuple(methods)), None)
        self._ready = False  # the worker has imported the lab and taken the sweep

    def _await_ready(self, group) -> None:
        """Wait for the worker's start (an interpreter, the lab's imports, the sweep), which the
        stall clock of its first group must not count: up to ``STARTUP_SECONDS`` (or the stall
        limit, if longer), named as its first group's when it dies or never gets there."""
        limit = max(STARTUP_SECONDS, self.stall_seconds)
        if not self._inbox.poll(limit):
            self.stop()
            raise GroupStalledError(_label(group), limit)
        try:
            message = self._inbox.recv()
        except (EOFError, OSError):
            raise WorkerDiedError(_label(group), self._ended()) from None
        self._ready = message == ("ready",)

    def _send(self, message, group) -> None:
        try:
            self._outbox.send(message)
        except OSError:
            label = "(starting)" if group is None else _label(group)
            raise WorkerDiedError(label, self._ended()) from None

    def run(self, index: int, steps: Callable[[int, int], None] | None = None) -> pa.Table:
        """Group ``index``'s table; else GroupStalledError, WorkerDiedError or the group's own
        error (a UsageError as it is; others with the worker's traceback as a note).
        ``steps(done, total)``: the steps of the batch it runs, after every chunk."""
        group = self.sweep.groups[index]
        if not self._ready:
            self._await_ready(group)
        self._send(index, group)
        while True:
            if not self._inbox.poll(self.stall_seconds):
                self.stop()
                raise GroupStalledError(_label(group), self.stall_seconds)
            try:
                message = self._inbox.recv()
            except (EOFError, OSError):
                raise WorkerDiedError(_label(group), self._ended()) from None
            if message[0] == "beat" and len(message) == 3 and steps is not None:
                steps(*message[1:])
            if message[0] == "done":
                return unsealed(message[1], f"the worker running group {_label(group)}")
            if message[0] == "error":
                _, error, remote = message
                if not isinstance(error, UsageError):
                    error.add_note(f"in the worker running group {_label(group)}:\n{remote}")
                raise error

    def _ended(self) -> int | None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        return self.process.returncode

    def stop(self) -> None:
        """Kill the worker now (it holds no files: the sweep writes them) and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._outbox.close()
        self._inbox.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None and exc[0] is None:
            with contextlib.suppress(OSError):
                self._outbox.send(None)  # done: let it exit by itself
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
        self.stop()


def _child(inbox_fd: int, outbox_fd: int, parent: int) -> None:
    """The worker's main: receive the sweep, then run each group index received, sending
    heartbeats while it runs and its table (Parquet) or its error when it ends."""
    for number in (signal.SIGINT, signal.SIGTERM):  # the sweep's to handle: it stops this one
        signal.signal(number, signal.SIG_IGN)
    _exit_with(parent)
    inbox, outbox = Connection(inbox_fd, writable=False), Connection(outbox_fd, readable=False)

    enable_compilation_cache()
    sys.path.extend(p for p in inbox.recv() if p not in sys.path)
    try:
        sweep, run_group, methods = inbox.recv()
        register_extensions(methods)
        failed = None
    except Exception as error:  # a class that does not unpickle here: each group says so
        failed = UsageError(
            f"the sweep's worker could not take the registered methods ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}): define them at the top level "
            "of an importable module"
        )

    def beat(*count: int) -> None:  # (steps done, steps) after a chunk; () after a seed
        outbox.send(("beat", *(int(n) for n in count)))

    outbox.send(("ready",))
    while (index := inbox.recv()) is not None:
        beat()
        try:
            if failed is not None:
                raise failed
            table = run_group(sweep, sweep.groups[index], beat=beat)
            outbox.send(("done", sealed(table)))
        except Exception as error:  # the sweep raises it, with this traceback as a note
            remote = traceback.format_exc()
            try:
                outbox.send(("error", error, remote))
            except Exception:  # not picklable: its text
                outbox.send(("error", RuntimeError(f"{type(error).__name__}: {error}"), remote))


def _exit_with(parent: int) -> None:
    """End this process when ``parent`` ends: Linux's parent-death signal, and a thread that
    polls (it runs while the main thread waits in XLA, which releases the GIL)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent ended before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="deeplinear-parent-watch", daemon=True).start()

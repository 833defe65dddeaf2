"""``deeplinear`` on the command line: a thin layer over the Python API.

Arguments are checked before JAX is imported, so bad input fails in milliseconds with one line
and exit status 2.

The package: ``parser`` (the arguments and the types that check them), ``checks`` (output and
results directories, limits, the compilation cache), one module per command family (``runs``:
run and reproduce; ``explaining``: explain; ``sweeps``: sweep and report; ``listing``: methods),
each importing the API inside its command; here ``main``: dispatch, exit statuses and signals.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sys
import threading
import time

from deeplinear.cli import explaining, listing, runs, sweeps
from deeplinear.cli.parser import build_parser
from deeplinear.errors import UsageError

EXIT_USAGE = 2
EXIT_STOPPED = 1  # a sweep group stalled (--stall-seconds) or its worker died
GRACE_SECONDS = 10.0  # a signal the command cannot take (stuck in native code) ends it this late
UNWIND_SECONDS = 30.0  # a signal taken but lost (raised where it is ignored) ends it this late
_UNWOUND = threading.Event()  # the command's interrupt reached ``_command``: it is unwinding


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit status: 0; 1 when a sweep group stalled or its worker died; 2 for bad
    input; 130 on SIGINT (Ctrl-C) and 143 on SIGTERM — each failure with one line on stderr.

    SIGINT and SIGTERM raise in the command, which unwinds: results files are written atomically,
    so those finished are complete and none is half-written. As the ``deeplinear`` command
    (``argv`` None): a failed or interrupted command ends the process without the interpreter's
    shutdown (which would wait for XLA work still in flight, or crash tearing it down); a signal
    once a command succeeded (during that shutdown, where it used to print ``Exception ignored
    in threading._shutdown`` and exit 0) ends it at once; one the command cannot take (stuck in
    native code) ends it ``GRACE_SECONDS`` later, one whose exception was lost (raised inside a
    callback whose exceptions Python ignores) ``UNWIND_SECONDS`` later; a second signal ends it
    at once.
    """
    if threading.current_thread() is not threading.main_thread():
        return _command(argv)
    console = argv is None
    state = {"handled": False}

    def interrupt(signum, frame):
        if state["handled"]:
            _exit_now(signum)  # a second signal: the user insists
        state["handled"], state["signum"] = True, signum
        raise _Interrupted(signum)

    previous = {number: signal.getsignal(number) for number in _SIGNALS}
    unraisable = sys.unraisablehook

    def lost(record):
        """An interrupt raised inside a callback whose exceptions Python ignores (XLA's garbage-
        collector callback): no traceback; delivered again, as if the signal came now, once the
        callback has returned, so the command unwinds as from any other signal."""
        if not isinstance(record.exc_value, _Interrupted):
            unraisable(record)
            return
        state["handled"] = False
        signum = record.exc_value.signum
        threading.Timer(0.01, _thread.interrupt_main, args=(signum,)).start()

    watcher = _watch_native_waits(state) if console else contextlib.nullcontext()
    with watcher:
        for number in _SIGNALS:
            signal.signal(number, interrupt)
        sys.unraisablehook = lost
        try:
            code = _command(argv)
            if state["handled"] and not _UNWOUND.is_set():  # its exception was swallowed
                print(_interrupted_line(state["signum"]), file=sys.stderr, flush=True)
                code = 128 + state["signum"]
        finally:
            sys.unraisablehook = unraisable
            for number in _SIGNALS:  # from here on (shutdown): end at once, files are complete
                signal.signal(number, _exit_now if console else previous[number])
    if console and code != 0:  # interrupted or stopped: XLA work may still be in flight, and
        _flush()  # the interpreter's shutdown would wait for it (forever, if it hangs) or crash
        os._exit(code)
    return code


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised in the main thread, where the command unwinds."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _interrupted_line(signum: int) -> str:
    return (
        f"deeplinear: interrupted ({signal.Signals(signum).name}); files already written are "
        "complete"
    )


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _exit_now(signum, frame=None) -> None:
    """End the process now with 128 + the signal's number, after one line and flushing."""
    _flush()
    with contextlib.suppress(Exception):
        print(_interrupted_line(signum), file=sys.stderr, flush=True)
    os._exit(128 + signum)


@contextlib.contextmanager
def _watch_native_waits(state):
    """Python runs signal handlers in the main thread between bytecodes, so a command stuck in
    native code (a hung XLA call) would never see one: a thread reads the signal numbers
    Python's wakeup fd gets and ends the process if the handler has not run GRACE_SECONDS later."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    try:
        old = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    except ValueError:  # not the main thread after all
        os.close(read)
        os.close(write)
        yield
        return

    def watch():
        while True:
            try:
                numbers = os.read(read, 16)
            except OSError:
                return
            if not numbers:
                return
            signum = next((n for n in numbers if n in _SIGNALS), None)
            if signum is None:
                continue
            deadline = time.monotonic() + GRACE_SECONDS
            while time.monotonic() < deadline and not state["handled"]:
                time.sleep(0.1)
            if not state["handled"]:
                _exit_now(signum)
            # the handler ran, but its exception can be swallowed where Python ignores
            # exceptions (a garbage-collector callback of XLA's): the command never unwinds
            deadline = time.monotonic() + UNWIND_SECONDS
            while time.monotonic() < deadline and not _UNWOUND.is_set():
                time.sleep(0.1)
            if not _UNWOUND.is_set():
                _exit_now(signum)

    threading.Thread(target=watch, name="deeplinear-signal-watch", daemon=True).start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(old)
        os.close(write)  # the thread's read returns b"" and it ends


def _command(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        commands = {  # looked up at each call: a test may replace a command
            "reproduce": runs.reproduce_command,
            "run": runs.run_command,
            "explain": explaining.explain_command,
            "methods": listing.methods_command,
            "sweep": sweeps.sweep_command,
            "report": sweeps.report_command,
        }
        return commands[args.command](args)
    except UsageError as error:
        print(f"deeplinear: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as error:
        _UNWOUND.set()
        signum = getattr(error, "signum", signal.SIGINT)
        print(_interrupted_line(signum), file=sys.stderr, flush=True)
        return 128 + signum
    except RuntimeError as error:
        from deeplinear.sweep.watchdog import STOPPED

        if not isinstance(error, STOPPED):
            raise
        print(f"deeplinear: error: {error}", file=sys.stderr)
        return EXIT_STOPPED

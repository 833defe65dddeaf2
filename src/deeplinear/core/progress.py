"""Progress on stderr for the command line: a tqdm status line on a terminal, plain lines
otherwise (so CI logs and redirected output stay readable: no carriage returns, no bars).

A command's lines (phases, compile times, sweep groups) go through ``Progress.say``. When nothing
has been said for ``HEARTBEAT_SECONDS`` a heartbeat says the phase is still going and for how long
(``… gd: 4 runs × 3000 steps — 12 s so far``), and again after each such silence, so no command
is silent for longer on a log (the README's promise; the intervals used to double up to a
minute); on a terminal the status line's clock ticks instead. ``Progress.count`` moves a bar
for counted work (sweep groups); ``Progress.steps`` counts the steps of the batch running now
(the loop calls it after every chunk), and the heartbeat and the status line carry them with
the rate and an ETA (``… gd: 3 runs × 4000 steps — 1,000/4,000 steps, 250 steps/s, ETA 12 s —
4 s so far``). The rate is measured from the batch's first chunk on (its compile and first
chunk not counted), so no ETA is given before a second chunk has finished.

tqdm (not rich): one small, dependency-free, long-maintained package whose ``tqdm.write`` keeps a
status line below the printed lines; nothing here needs rich's layout engine.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

HEARTBEAT_SECONDS = 5.0  # silence longer than this gets a line saying what is still running
HEARTBEAT_ENV = "DEEPLINEAR_PROGRESS_SECONDS"  # overrides HEARTBEAT_SECONDS (tests, CI)


def _heartbeat_seconds() -> float:
    text = os.environ.get(HEARTBEAT_ENV, "")
    try:
        value = float(text)
    except ValueError:
        return HEARTBEAT_SECONDS
    return value if value > 0 else HEARTBEAT_SECONDS


def _terminal_size_known(stream) -> bool:
    """Whether the terminal reports its size (tqdm then follows it); one of unknown size (0×0:
    a bare pty) would make tqdm cut every line to nothing, so 80×24 is assumed there."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return size.columns > 0 and size.lines > 0


@dataclass
class _Steps:
    """A batch's steps: ``done`` of ``total`` now, and ``done`` and the time at its first chunk
    (where its rate is measured from)."""

    total: int
    done: int
    first: int
    since: float
    now: float

    def rate(self) -> float | None:
        """Steps per second since the first chunk (None before a second chunk finished)."""
        elapsed = self.now - self.since
        if self.done <= self.first or elapsed <= 0:
            return None
        return (self.done - self.first) / elapsed

    def text(self) -> str:
        """``1,000/4,000 steps, 250 steps/s, ETA 12 s`` (no rate or ETA before one is known);
        ``4,000 steps done, 250 steps/s`` once the batch has finished (what follows it: a
        compile, the files)."""
        rate = self.rate()
        speed = [] if rate is None else [_rate(rate)]
        if self.done >= self.total:
            return ", ".join([f"{self.total:,} steps done", *speed])
        eta = [] if rate is None else [f"ETA {_seconds((self.total - self.done) / rate)}"]
        return ", ".join([f"{self.done:,}/{self.total:,} steps", *speed, *eta])


def _rate(rate: float) -> str:
    """``32.8 steps/s``, ``1,250 steps/s``."""
    return f"{rate:.3g} steps/s" if rate < 100 else f"{rate:,.0f} steps/s"


def _seconds(value: float) -> str:
    """``12 s``, ``3 min 20 s``, ``2 h 5 min``."""
    value = max(0, round(value))
    if value < 100:
        return f"{value} s"
    if value < 6000:
        return f"{value // 60} min {value % 60} s"
    return f"{value // 3600} h {value % 3600 // 60} min"


def steps_of(progress) -> Callable[[int, int], None] | None:
    """The step counter of ``progress`` (a ``Progress``'s ``steps``, or that of any line
    callback with such a method); None for a plain callback of lines."""
    steps = getattr(progress, "steps", None)
    return steps if callable(steps) else None


class Progress:
    """What a command is doing, on ``stream`` (stderr), as a context manager.

    ``interactive`` (default: ``stream.isatty()``) draws a tqdm status line; otherwise every
    message is a plain line and silences are broken by heartbeat lines.
    """

    def __init__(self, stream=None, *, interactive: bool | None = None, heartbeat=None):
        self.stream = stream if stream is not None else sys.stderr
        if interactive is None:
            isatty = getattr(self.stream, "isatty", None)
            interactive = bool(isatty and isatty())
        self.interactive = interactive
        self.heartbeat = _heartbeat_seconds() if heartbeat is None else heartbeat
        self._lock = threading.RLock()
        self._phase, self._count = "", None
        self._steps: _Steps | None = None
        self._drawn = 0.0  # when the status line was last drawn
        self._phase_start = self._last = time.monotonic()
        self._bar = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Progress:
        if self.interactive:
            from tqdm import tqdm

            known = _terminal_size_known(self.stream)
            self._bar = tqdm(
                total=None,
                file=self.stream,
                leave=False,
                dynamic_ncols=known,
                ncols=None if known else 80,
                nrows=None if known else 24,
                bar_format="{desc}",
            )
        self._thread = threading.Thread(target=self._beat, name="deeplinear-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def __call__(self, line: str) -> None:
        self.say(line)

    def say(self, line: str) -> None:
        """Print ``line``; it becomes the phase the heartbeat names."""
        self._show(line, None)

    def begin(self, phase: str) -> None:
        """Name what runs now for the heartbeat and the status line, printing nothing (so a
        command that fails at once still says one line only). The heartbeat's silence is counted
        from the last line printed, not from here."""
        with self._lock:
            self._phase, self._count, self._steps = phase.strip(), None, None
            self._phase_start = time.monotonic()
            self._draw()

    def steps(self, done: int, total: int) -> None:
        """``done`` of the ``total`` steps of the current phase's batch (after a chunk), printing
        nothing: the heartbeat and the status line say them, with the rate and the ETA. A count
        that restarts (or another total) is another batch: its rate is measured afresh."""
        with self._lock:
            now = time.monotonic()
            held = self._steps
            if held is None or held.total != total or done <= held.done:
                self._steps = _Steps(int(total), int(done), int(done), now, now)
            else:
                held.done, held.now = int(done), now
            if now - self._drawn >= 0.2 or done >= total:  # chunks of a fast batch: 100 a second
                self._draw()

    def count(self, done: int, total: int, line: str) -> None:
        """Counted work: ``done`` of ``total`` finished; ``line`` says what (printed as well)."""
        self._show(line, (done, total))

    def _show(self, line: str, count) -> None:
        with self._lock:
            self._phase, self._count, self._steps = line.strip(), count, None
            self._phase_start = self._last = time.monotonic()
            self._draw(refresh=False)  # the status line under ``line`` is already the new one
            self._write(line)

    def _write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def _draw(self, refresh: bool = True) -> None:
        if self._bar is None:
            return
        self._drawn = time.monotonic()
        elapsed = time.monotonic() - self._phase_start
        text = f"{self._phase[:80]} — {elapsed:.0f} s"
        if self._steps is not None:
            done, total = self._steps.done, self._steps.total
            width = 20
            filled = round(width * min(done / max(total, 1), 1.0))
            text = f"[{'#' * filled}{'.' * (width - filled)}] {self._steps.text()} · {text}"
        elif self._count is not None:
            done, total = self._count
            width = 20
            filled = round(width * done / max(total, 1))
            text = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} · {text}"
        self._bar.set_description_str(text, refresh=refresh)

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, self.heartbeat / 4)):
            with self._lock:
                if self._bar is not None:
                    self._draw()  # the status line's clock ticks
                    continue
                now = time.monotonic()
                if now - self._last < self.heartbeat:
                    continue
                phase = self._phase or "working"
                steps = "" if self._steps is None else f" — {self._steps.text()}"
                self._write(f"  … {phase}{steps} — {now - self._phase_start:.0f} s so far")
                self._last = now

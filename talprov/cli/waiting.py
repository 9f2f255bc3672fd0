"""What a ``--wait`` shows while it waits, and how Ctrl-C ends it.

A wait's progress line says the current state and the time waited so far. On a
terminal it is rewritten in place, and its time ticks every second (a line that
stayed at ``[0m00s]`` for 30 s looked hung, QA); a log or a pipe gets a new line
when the state changes and every :data:`HEARTBEAT` seconds otherwise, so that it
is not flooded.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator

from talprov.cli.app import carried_on_by, json_logging, say
from talprov.cli.numbers import WAIT_SECONDS
from talprov.cli.statusline import STATUS_LINE
from talprov.stopping import end_echoed_line, interrupted_exit_code, interrupted_message

#: Seconds between repeated progress lines in a log while nothing changes.
HEARTBEAT = 30.0
#: Seconds between redraws of a terminal's progress line (its time ticks).
TICK = 1.0

#: --timeout's help wherever a command can --wait.
WAIT_TIMEOUT_HELP = ("Seconds to --wait, all of it (a pass still running then is broken off); "
                     "the [XmYYs] of its progress lines is the time since the wait started. "
                     f"{WAIT_SECONDS.range_text().capitalize()}.")


def _stderr_is_plain_terminal() -> bool:
    """Whether stderr is a terminal that gets plain lines (not JSON log records)."""
    try:
        return sys.stderr.isatty() and not json_logging()
    except (AttributeError, ValueError):
        return False


class WaitProgress:
    """Progress lines of a long wait: the current state with the time waited so far.

    ``clock`` gives the seconds the line counts (the runtime's clock). On a plain
    terminal (stderr, decided when the wait starts) the line is rewritten in place
    and :meth:`tick` (every :data:`TICK` seconds within :meth:`ticking`) redraws
    it with the time now; elsewhere it is printed when it changes and every
    :data:`HEARTBEAT` seconds otherwise. Thread-safe: the ticker redraws from its
    own thread.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._start = clock()
        self._terminal = _stderr_is_plain_terminal()
        self._lock = threading.Lock()
        self._last_line: str | None = None
        self._last_at = self._start

    def elapsed(self) -> float:
        """Seconds since the wait started."""
        return self._clock() - self._start

    def _stamp(self, now: float) -> str:
        minutes, seconds = divmod(int(now - self._start), 60)
        return f" [{minutes}m{seconds:02d}s]"

    def show(self, line: str, *, request_id: str | None = None) -> None:
        """Show the state ``line``: on a terminal in place of the last one (a
        changed state keeps the last one above it); elsewhere when it changed or
        :data:`HEARTBEAT` seconds passed."""
        with self._lock:
            now = self._clock()
            if self._terminal:
                if line != self._last_line:
                    STATUS_LINE.end(sys.stderr)  # the last state stays above
                self._last_line = line
                STATUS_LINE.rewrite(line, sys.stderr, tail=self._stamp(now))
                return
            if line == self._last_line and now - self._last_at < HEARTBEAT:
                return
            self._last_line, self._last_at = line, now
            say(line + self._stamp(now), request_id=request_id)

    def tick(self) -> None:
        """On a terminal, redraw the shown line with the time waited now; else
        nothing (a log gets the heartbeat of :meth:`show` only)."""
        with self._lock:
            if self._terminal and self._last_line is not None:
                STATUS_LINE.rewrite(self._last_line, sys.stderr,
                                    tail=self._stamp(self._clock()))

    @contextlib.contextmanager
    def ticking(self, every: float = TICK) -> Iterator[None]:
        """:meth:`tick` every ``every`` seconds (wall time) while the block runs,
        from a daemon thread, on a terminal only. A block that ends normally ends
        the line, so that what is printed next starts a line of its own; one
        broken off (Ctrl-C) leaves it to the interruption's line."""
        if not self._terminal:
            yield
            return
        stop = threading.Event()
        ticker = threading.Thread(target=self._tick_until, args=(stop, every),
                                  name="talprov-wait-ticker", daemon=True)
        ticker.start()
        try:
            yield
        except BaseException:
            stop.set()
            ticker.join()
            raise
        stop.set()
        ticker.join()
        STATUS_LINE.end(sys.stderr)

    def _tick_until(self, stop: threading.Event, every: float) -> None:
        while not stop.wait(every):
            self.tick()


@contextlib.contextmanager
def interruptible(what: str) -> Iterator[None]:
    """Turn Ctrl-C during a wait into one line saying that ``what`` stays recorded
    and who carries it on, and exit 130 (the shell's code for SIGINT; 143 for SIGTERM)."""
    try:
        yield
    except KeyboardInterrupt as exc:
        end_echoed_line(exc, line_open=STATUS_LINE.close())
        say(interrupted_message(exc, f"{what} is recorded; {carried_on_by()}"))
        sys.exit(interrupted_exit_code(exc))

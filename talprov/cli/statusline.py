"""The one line of a terminal's stderr that a ``--wait`` rewrites in place.

On a terminal a wait's progress line is redrawn where it stands (its time waited
ticks); every other line written to stderr -- a status line, a warning, a log
record from any thread, the interruption's line -- must first end it, or it would
be glued to its end. :data:`STATUS_LINE` is that line's state, shared by everything
that writes to stderr in this process; a log or a pipe never gets one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from typing import TextIO

#: Moves to the start of the line and clears what an older, longer text left.
_REWRITE = "\r{text}\x1b[K"


class StatusLine:
    """Whether a line is being rewritten in place, and the lock every writer to
    stderr holds so that no line is written into the middle of it."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._open = False

    def rewrite(self, text: str, stream: TextIO, *, tail: str = "") -> None:
        """Show ``text`` and then ``tail`` as the terminal's last line, in place of
        the one shown before (no newline: the line stays open). ``text`` is cut to
        leave ``tail`` in the terminal's width: a line that wrapped could not be
        rewritten in place. ``stream`` must be a terminal."""
        width = _width(stream)
        if width is not None and len(text) + len(tail) >= width:
            text = text[:max(0, width - len(tail) - 2)] + "…"
        text += tail
        with self._lock:
            stream.write(_REWRITE.format(text=text))
            stream.flush()
            self._open = True

    def end(self, stream: TextIO) -> None:
        """End the open line, if any, so that what comes next starts a line of
        its own. Idempotent."""
        with self.writing(stream):
            pass

    @contextlib.contextmanager
    def writing(self, stream: TextIO) -> Iterator[None]:
        """Around a write of whole lines to ``stream``: the open line is ended
        first, and nothing is rewritten until the write is over."""
        with self._lock:
            if self._open:
                stream.write("\n")
                self._open = False
            yield

    def close(self) -> bool:
        """Forget the open line without writing anything; whether there was one
        (the interruption's line then starts with the newline that ends it)."""
        with self._lock:
            was_open, self._open = self._open, False
            return was_open


def _width(stream: TextIO) -> int | None:
    """The columns of the terminal ``stream`` writes to; None when not known."""
    try:
        return os.get_terminal_size(stream.fileno()).columns or None
    except (AttributeError, OSError, ValueError):  # not a file, or not a terminal
        return None


class LineEndingHandler(logging.StreamHandler[TextIO]):
    """A log handler on stderr that ends :data:`STATUS_LINE` before each record,
    holding its lock while it writes, so that a record from any thread starts a
    line of its own."""

    def emit(self, record: logging.LogRecord) -> None:
        with STATUS_LINE.writing(self.stream):
            super().emit(record)


#: The status line of this process's stderr.
STATUS_LINE = StatusLine()

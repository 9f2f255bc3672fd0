"""A deadline and a cancel switch for the store queries of one API call.

The API runs store queries on behalf of any token holder, read-only ones
included; a query that the database cannot answer quickly must not run on after
the caller is gone, nor for minutes while it is still there. :func:`guarded`
puts a :class:`QueryGuard` in the current context; every transaction opened
while it is there (``talprov.store.engine.transaction``) obeys it:

- PostgreSQL: ``SET LOCAL statement_timeout`` to the time left, and the
  driver's cancel request when :meth:`QueryGuard.cancel` is called;
- SQLite: a progress handler that interrupts the statement once the deadline
  passed or the guard was cancelled (SQLite has no statement timeout).

Workers run without a guard: their queries are the service's own.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: SQLite calls the progress handler every this many virtual machine instructions.
SQLITE_PROGRESS_STEPS = 1000

_current: ContextVar[QueryGuard | None] = ContextVar("talprov_query_guard", default=None)


class QueryGuard:
    """When the queries of one call must stop: a deadline, or a cancel from outside.

    Thread-safe: :meth:`cancel` is called from the event loop while the query
    runs in a worker thread.
    """

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._deadline = clock() + seconds
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._interrupts: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def seconds_left(self) -> float:
        """Time left before the deadline (never negative)."""
        return max(0.0, self._deadline - self._clock())

    def should_stop(self) -> bool:
        """True once the deadline passed or :meth:`cancel` was called."""
        return self._cancelled.is_set() or self._clock() >= self._deadline

    def cancel(self) -> None:
        """Stop the running query (if any) and every later one. Idempotent."""
        self._cancelled.set()
        with self._lock:
            interrupts = list(self._interrupts)
        for interrupt in interrupts:
            # The connection may be closing already; the flag still stops it.
            with contextlib.suppress(Exception):
                interrupt()

    @contextmanager
    def interruptible(self, interrupt: Callable[[], None]) -> Iterator[None]:
        """While inside, :meth:`cancel` also calls ``interrupt`` (the driver's
        cancel of the connection in use)."""
        with self._lock:
            self._interrupts.append(interrupt)
        try:
            if self._cancelled.is_set():
                interrupt()
            yield
        finally:
            with self._lock:
                self._interrupts.remove(interrupt)


def current_guard() -> QueryGuard | None:
    """The guard of the running call, if any."""
    return _current.get()


@contextmanager
def guarded(guard: QueryGuard | None) -> Iterator[QueryGuard | None]:
    """Store queries in this context (and in threads started from it with its
    context copied, as FastAPI does for sync routes) obey ``guard`` (``None``:
    no deadline, as the workers' queries)."""
    token = _current.set(guard)
    try:
        yield guard
    finally:
        _current.reset(token)

"""A thread pool that an interruption does not wait for.

``concurrent.futures.ThreadPoolExecutor`` joins its threads twice: leaving its
``with`` block waits for every call in them, and the interpreter's exit joins
them again (its threads are not daemons; concurrent.futures registers the join
to run at exit). A cloud call that never returns (an endpoint that accepts and
never answers) then held Ctrl-C, SIGTERM or a ``--wait`` deadline for as long as
the HTTP client's read timeout, ten minutes.

:class:`DaemonPool` runs the same calls in daemon threads. Left normally, or by
an ``Exception``, it waits for them as ``ThreadPoolExecutor`` does, so a pass
that is not interrupted behaves exactly as before. Left by an interruption (an
exception that is not an ``Exception``: ``KeyboardInterrupt``, ``Terminated``,
``DeadlinePassed``) it cancels the calls not yet started and leaves those
running: they end with the process. Whoever owns what those calls touch must
then treat it as still in use (:func:`left_behind` tells a caller whether it
happened beneath it); the reconciler keeps such requests' leases.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_Job = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]

_local = threading.local()
_numbers = itertools.count(1)


def left_behind() -> int:
    """How many pools the calling thread has left behind with calls still running
    (see :meth:`DaemonPool.__exit__`). Compare it before and after some work to
    tell whether that work left calls running. Never raises."""
    count: int = getattr(_local, "left", 0)
    return count


def note_left_behind() -> None:
    """Count a call the calling thread left running in a thread of its own (a
    pool's, or one like :func:`talprov.baremetal.power.base.bounded_call`'s)."""
    _local.left = left_behind() + 1


class DaemonPool:
    """``ThreadPoolExecutor``'s ``submit``, ``map`` and ``with`` on daemon threads,
    at most ``max_workers`` of them, started as calls come.

    Raises ``ValueError`` for ``max_workers`` below 1, and ``RuntimeError`` for a
    call submitted after :meth:`shutdown`. Thread-safe.
    """

    def __init__(self, max_workers: int, name: str = "talprov-pool") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._max = max_workers
        self._name = f"{name}-{next(_numbers)}"
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._futures: list[Future[Any]] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` in a thread of the pool; its future."""
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a pool that was shut down")
            self._futures.append(future)
            self._jobs.put((future, fn, args, kwargs))
            if len(self._threads) < min(self._max, len(self._futures)):
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"{self._name}_{len(self._threads)}")
                self._threads.append(thread)
                thread.start()
        return future

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """``fn`` for every item, all submitted now; their results in order as the
        iterator is read (raising there what a call raised)."""
        futures = [self.submit(fn, item) for item in items]

        def results() -> Iterator[R]:
            for future in futures:
                yield future.result()

        return results()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, fn, args, kwargs = job
            del job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # the caller's to see, as in an executor
                future.set_exception(exc)
            else:
                future.set_result(result)
            del future, fn, args, kwargs

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> bool:
        """No more calls; with ``cancel_futures`` those not started are cancelled;
        with ``wait``, returns once the others have ended. Whether calls still run
        (False with ``wait``). Idempotent."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
            if cancel_futures:
                for future in self._futures:
                    future.cancel()  # (a call already running is not cancelled)
            for _ in threads:
                self._jobs.put(None)
        if wait:
            for thread in threads:
                thread.join()
        return any(not future.done() for future in self._futures)

    def __enter__(self) -> DaemonPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None or isinstance(exc, Exception):
            try:
                self.shutdown(wait=True)
            except BaseException:
                # Interrupted while waiting (a call failed, another hangs): the
                # same as an interruption of the block itself, or the hanging
                # call's request would be given back while its call still runs.
                if self.shutdown(wait=False, cancel_futures=True):
                    note_left_behind()
                raise
            return
        # An interruption: what has not started never will, and what runs is left
        # to end with the process (counted, so that callers can tell).
        if self.shutdown(wait=False, cancel_futures=True):
            note_left_behind()

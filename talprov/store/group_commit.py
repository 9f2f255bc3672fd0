"""Group commit: the writes that wait for the store's write lock, done together.

Under load every API create used to be its own write transaction, and they
queued for the one write lock (SQLite's, or the process's lock in front of it)
one behind the other: on a busy interpreter each turn at the lock costs far more
than the few rows it writes, because the holder gives up the GIL at every SQLite
call and waits to get it back. :class:`GroupCommit` lets the waiting callers
share one turn instead. The first caller to arrive writes (it *leads*); callers
who arrive while it writes queue up; when it has committed, the first of them
leads the next turn, writing everything queued in one call of ``write_many``.

There is no writer thread: every item is written by one of the callers, so
nothing is left behind when the process stops, and a caller returns only once
its item's transaction has committed (or failed).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from talprov.store.errors import StoreError
from talprov.store.guard import QueryGuard, current_guard, guarded

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")

#: Most items one turn writes: bounds a transaction's size and how long the
#: next callers wait behind it.
MOST_PER_TURN = 100


@dataclass(eq=False)
class _Waiting(Generic[_Item, _Result]):
    """One caller's item, and what became of it."""

    item: _Item
    #: The caller's query guard (its API call's deadline), if any.
    guard: QueryGuard | None
    #: Set when the item's outcome is known, or when this caller is to lead.
    answered: threading.Event = field(default_factory=threading.Event)
    leads: bool = False
    result: _Result | None = None
    error: BaseException | None = None


class GroupCommit(Generic[_Item, _Result]):
    """Writes each caller's item in a turn shared with the items of the callers
    who wait at the same time.

    ``write_many(items)`` writes its items in ONE transaction and returns, in
    order, each item's result or the exception that item alone gets (a conflict:
    the transaction still commits the others). If it raises, the transaction
    wrote nothing and every item of the turn gets that error. Thread-safe.
    """

    def __init__(
        self,
        write_many: Callable[[Sequence[_Item]], Sequence[_Result | Exception]],
        *,
        most: int = MOST_PER_TURN,
    ) -> None:
        self._write_many = write_many
        self._most = most
        self._lock = threading.Lock()
        self._queue: list[_Waiting[_Item, _Result]] = []
        self._leading = False

    @property
    def waiting(self) -> int:
        """How many items no turn has taken yet."""
        with self._lock:
            return len(self._queue)

    def submit(self, item: _Item) -> _Result:
        """Write ``item`` (with whatever else waits) and return its result once the
        transaction has committed.

        Raises what ``write_many`` gave for this item, or what it raised for the
        whole turn. Under a query guard (:mod:`talprov.store.guard`), raises
        :class:`StoreError` when the deadline passes while the item still waits
        for its turn (it is then never written); the turn's transaction obeys the
        latest deadline of its callers (none if one of them has none), and one
        caller's cancel does not stop the others' writes. Idempotent exactly when
        ``write_many`` is.
        """
        guard = current_guard()
        me: _Waiting[_Item, _Result] = _Waiting(item, guard)
        with self._lock:
            self._queue.append(me)
            if not self._leading:
                self._leading = me.leads = True
        timeout = None if guard is None else guard.seconds_left()
        while not me.leads and not me.answered.wait(timeout):
            if self._withdraw(me):
                raise StoreError("store: query deadline passed while waiting to write")
            timeout = None  # a turn took it: its outcome comes with that commit
        if me.leads:
            me.answered.clear()
            self._lead(me)
        if me.error is not None:
            raise _own_copy(me.error)
        return me.result  # type: ignore[return-value]  # set before answered

    def _withdraw(self, me: _Waiting[_Item, _Result]) -> bool:
        """Take ``me`` out of the queue, unless a leader already took it into its
        turn or handed it the lead (it must write then)."""
        with self._lock:
            if me.leads or me not in self._queue:
                return False
            self._queue.remove(me)
            return True

    def _lead(self, me: _Waiting[_Item, _Result]) -> None:
        """Write the queue's first items (``me``'s among them), answer them, and
        hand the lead to the first caller still waiting."""
        with self._lock:
            turn, self._queue = self._queue[:self._most], self._queue[self._most:]
        results: Sequence[_Result | Exception] = ()
        failure: BaseException | None = None
        guards = [w.guard for w in turn]
        latest = (None if None in guards else
                  QueryGuard(max(g.seconds_left() for g in guards if g is not None)))
        try:
            with guarded(latest):
                results = self._write_many([w.item for w in turn])
            if len(results) != len(turn):
                failure = StoreError("store: a group write answered the wrong number of items")
        except BaseException as exc:  # every caller of the turn must hear of it
            failure = exc
        finally:
            me.leads = False
            with self._lock:
                if self._queue:
                    self._queue[0].leads = True
                    self._queue[0].answered.set()
                else:
                    self._leading = False
            for index, waiting in enumerate(turn):
                outcome = failure if failure is not None else results[index]
                if isinstance(outcome, BaseException):
                    waiting.error = outcome
                else:
                    waiting.result = outcome
                waiting.answered.set()


def _own_copy(error: BaseException) -> BaseException:
    """A copy of ``error`` for one caller to raise: callers of one turn raise in
    their own threads, and raising one object in all of them would mix their
    tracebacks."""
    try:
        return copy.copy(error)
    except Exception:  # an exception that cannot be copied: share it
        return error

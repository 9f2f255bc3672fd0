"""The power interface every BMC implementation provides (like Ironic's PowerInterface).

Implementations keep their own retries, timeouts and a minimum interval between
two commands to the same BMC: BMCs are small computers that stop answering under
bursts of commands, and callers (steps running in parallel) cannot coordinate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum
from typing import ClassVar, Protocol, TypeVar

from talprov.daemon_pool import note_left_behind

T = TypeVar("T")


class PowerState(StrEnum):
    ON = "on"
    OFF = "off"
    UNKNOWN = "unknown"


class BootDevice(StrEnum):
    PXE = "pxe"
    DISK = "disk"


class PowerDriver(Protocol):
    """Power and next-boot control of one machine.

    Every method raises ``AuthError`` for refused credentials (at once, no
    retries) and ``Transient`` when the BMC does not answer within the
    implementation's bounded retries. All are idempotent: powering on a
    machine that is on is success.
    """

    def power_state(self) -> PowerState:
        """The machine's power state as the BMC reports it."""
        ...

    def power_on(self) -> None:
        """Switch the machine on (no-op when on)."""
        ...

    def power_off(self) -> None:
        """Switch the machine off hard (no-op when off)."""
        ...

    def power_cycle(self) -> None:
        """Restart the machine hard; a machine that is off is switched on."""
        ...

    def set_next_boot(self, device: BootDevice) -> None:
        """Boot ``device`` on the next boot only (BIOS boot order applies afterwards)."""
        ...


class Throttle:
    """Spaces calls to one BMC at least ``interval`` seconds apart, across threads."""

    _registry: ClassVar[dict[str, Throttle]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._last: float | None = None

    @classmethod
    def for_bmc(cls, key: str, interval: float) -> Throttle:
        """The process-wide throttle of the BMC at ``key`` (host:port)."""
        with cls._registry_lock:
            found = cls._registry.get(key)
            if found is None:
                found = cls._registry[key] = cls(interval)
            found.interval = interval
            return found

    def wait(self) -> None:
        """Block until the next command may go out, and claim that slot."""
        with self._lock:
            now = self._clock()
            if self._last is not None:
                gap = self._last + self.interval - now
                if gap > 0:
                    self._sleep(gap)
                    now = self._clock()
            self._last = now


class NoAnswer(Exception):
    """A :func:`bounded_call` did not finish within its timeout."""


class StillBlocked(Exception):
    """A :func:`bounded_call` was refused: the previous call for the same key, given
    up on after its timeout, is still blocked (its thread has not returned)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"the previous call to {key} is still blocked")
        self.key = key


# Calls given up on and still running, by key (one BMC): a BMC that never answers
# must not gain a thread per retry over hours. Only given-up calls are counted, so
# concurrent calls to a BMC that answers stay as they were.
_abandoned: dict[str, set[threading.Thread]] = {}
_abandoned_lock = threading.Lock()


def abandoned_calls(key: str) -> int:
    """How many calls for ``key`` were given up on and are still blocked. Read-only."""
    with _abandoned_lock:
        return len(_abandoned.get(key, ()))


def bounded_call(action: Callable[[], T], timeout: float, *, name: str,
                 key: str | None = None) -> T:
    """``action()``'s result, or ``NoAnswer`` after ``timeout`` seconds.

    The action runs in a daemon thread of its own, not in an executor's worker:
    an executor's workers are joined when the interpreter exits, so one call
    that a hung BMC never answers (pyghmi waits on its own schedule) kept a
    finished ``reconcile --once`` or a stopped service alive for good. A thread
    left behind here ends with the process.

    With ``key`` (the BMC), a call given up on is remembered until its thread
    returns, and every later call for ``key`` meanwhile raises ``StillBlocked``
    at once, without starting a thread: retries of a BMC that never answers
    leave at most one blocked thread behind (one per caller that was waiting on
    it when it fell silent), not one per attempt. Raises what ``action`` raises.
    """
    if key is not None:
        with _abandoned_lock:
            if _abandoned.get(key):
                raise StillBlocked(key)
    outcome: list[T] = []
    failure: list[BaseException] = []
    finished = False

    def run() -> None:
        nonlocal finished
        try:
            outcome.append(action())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)
        finally:
            with _abandoned_lock:
                finished = True
                if key is not None:
                    left = _abandoned.get(key, set())
                    left.discard(worker)
                    if not left:
                        _abandoned.pop(key, None)

    def give_up() -> bool:
        """Whether the call is still running; if so, it is remembered for ``key``.
        Under the lock: a call that returns between the join and here is not
        recorded as blocked (its thread would never take itself off the list).
        Not is_alive(): a join broken off by a signal marks a running thread
        stopped on Python 3.11."""
        with _abandoned_lock:
            if not finished and key is not None:
                _abandoned.setdefault(key, set()).add(worker)
            return not finished

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    try:
        worker.join(timeout)
    except BaseException:
        # Interrupted: the call may still reach the BMC; whoever holds its
        # request (the reconciler, by its lease) learns that it is left running.
        if give_up():
            note_left_behind()
        raise
    if give_up():
        raise NoAnswer(name)
    if failure:
        raise failure[0]
    return outcome[0]

"""InstanceBackoff is shared by the reconcile loop and the autoscaler's gRPC threads
(issue 15): two failures recorded at once must both count.

Before the lock, a second thread's ``failed()`` ran while the first was between
reading the last trouble and writing the next (here: inside the jitter draw), and
the first then overwrote it: two failures, ``attempts == 1``.
"""

from __future__ import annotations

import random
import threading

from talprov.providers.errors import Transient
from talprov.reconcile.instance_health import InstanceBackoff


class SlowJitter(random.Random):
    """A jitter source whose first draw waits (up to ``hold`` s) for another thread
    to have entered ``failed()``: it widens the window a race needs to seconds."""

    def __init__(self, entered: threading.Event, hold: float) -> None:
        super().__init__(5)
        self.entered = entered
        self.hold = hold
        self.draws = 0

    def uniform(self, a: float, b: float) -> float:
        self.draws += 1
        if self.draws == 1:
            self.entered.wait(self.hold)
        return super().uniform(a, b)


def test_failures_recorded_at_once_are_all_counted() -> None:
    second_started = threading.Event()
    backoff = InstanceBackoff(rng=SlowJitter(second_started, hold=0.5))
    errors: list[BaseException] = []

    def fail(at: float, started: threading.Event | None = None) -> None:
        if started is not None:
            started.set()
        try:
            backoff.failed("pve", Transient("503"), None, at)
        except BaseException as exc:
            errors.append(exc)

    first = threading.Thread(target=fail, args=(100.0,))
    first.start()
    while backoff.trouble("pve") is None and first.is_alive() and not _drawing(backoff):
        pass
    second = threading.Thread(target=fail, args=(100.0, second_started))
    second.start()
    first.join(5)
    second.join(5)
    assert not errors
    trouble = backoff.trouble("pve")
    assert trouble is not None
    assert trouble.attempts == 2


def _drawing(backoff: InstanceBackoff) -> bool:
    rng = backoff._rng  # the test's own jitter source
    return isinstance(rng, SlowJitter) and rng.draws > 0


def test_readers_and_writers_side_by_side_keep_a_consistent_record() -> None:
    backoff = InstanceBackoff(base=0.001, cap=0.002, rng=random.Random(2))
    stop = threading.Event()
    failures: list[BaseException] = []

    def write(name: str) -> None:
        try:
            for n in range(2000):
                backoff.failed(name, Transient("503"), None, float(n))
                if n % 7 == 0:
                    backoff.succeeded(name)
        except BaseException as exc:
            failures.append(exc)

    def read() -> None:
        try:
            while not stop.is_set():
                for name, trouble in backoff.troubles().items():
                    assert trouble.instance == name
                backoff.due("a", 0.0)
        except BaseException as exc:
            failures.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    writers = [threading.Thread(target=write, args=(name,)) for name in "abc"]
    for thread in [*readers, *writers]:
        thread.start()
    for thread in writers:
        thread.join(30)
    stop.set()
    for thread in readers:
        thread.join(30)
    assert not failures
    # Each writer's last failure came after its last success at n = 1995.
    assert {name: t.attempts for name, t in backoff.troubles().items()} == {
        "a": 4, "b": 4, "c": 4}

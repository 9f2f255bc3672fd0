"""DaemonPool waits for its calls as ThreadPoolExecutor does, except when an
interruption leaves it: then it returns at once, and the calls still running
keep neither the pool's caller nor the interpreter's exit waiting."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from talprov.baremetal.power.base import bounded_call
from talprov.daemon_pool import DaemonPool, left_behind
from talprov.processes import DeadlinePassed, abandon_after
from talprov.stopping import Terminated

ROOT = Path(__file__).resolve().parents[2]


def test_left_normally_or_by_an_error_it_waits_for_every_call() -> None:
    ended: list[int] = []

    def slow(n: int) -> int:
        time.sleep(0.05)
        ended.append(n)
        return n * 2

    with DaemonPool(2) as pool:
        assert list(pool.map(slow, [1, 2, 3])) == [2, 4, 6]
    def failing(pool: DaemonPool) -> None:
        pool.submit(slow, 4)
        raise ValueError("a bug in the caller")

    with pytest.raises(ValueError, match="a bug"), DaemonPool(2) as pool:
        failing(pool)
    assert sorted(ended) == [1, 2, 3, 4]  # 4 ended before the with block was left


def test_an_interruption_leaves_running_calls_and_cancels_the_rest() -> None:
    release = threading.Event()
    started = threading.Event()

    def stuck() -> None:
        started.set()
        release.wait()

    before = left_behind()
    pool = DaemonPool(1)
    running = pool.submit(stuck)
    queued = pool.submit(lambda: None)
    assert started.wait(5)
    try:
        with pytest.raises(Terminated), pool:
            raise Terminated
        assert queued.cancelled()
        assert not running.done()
        assert left_behind() == before + 1
        ours = [t for t in threading.enumerate() if t.name.startswith("talprov-pool")]
        assert ours
        assert all(t.daemon for t in ours)
    finally:
        release.set()
    assert running.result(timeout=5) is None


def test_an_interruption_while_an_error_waits_for_a_hanging_call_leaves_it_behind() -> None:
    # One request's call failed (a driver bug), another hangs; Ctrl-C while the
    # block waits for it: the hanging call was neither noted nor its request's
    # lease kept (the pass gave it back while the call still ran).
    release = threading.Event()
    started = threading.Event()

    def stuck() -> None:
        started.set()
        release.wait()

    before = left_behind()
    try:
        with pytest.raises(Terminated):
            abandon_after(30, lambda: _fail_beside(stuck, started), otherwise=None)
        assert left_behind() == before + 1
    finally:
        release.set()


def _fail_beside(stuck: Callable[[], None], started: threading.Event) -> None:
    """Leave a pool by an error while ``stuck`` still runs in it; the deadline
    comes while the pool waits, and is turned into SIGTERM's stop here."""
    try:
        with DaemonPool(2) as pool:
            pool.submit(stuck)
            assert started.wait(5)
            # abandon_after's alarm, re-armed from the moment ``stuck`` runs: a
            # fixed deadline could come before, and the error was never raised.
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            raise KeyError("a driver bug")
    except DeadlinePassed as exc:
        raise Terminated from exc


def test_an_interruption_with_nothing_running_leaves_nothing_behind() -> None:
    before = left_behind()
    pool = DaemonPool(2)
    pool.submit(lambda: None).result()
    with pytest.raises(KeyboardInterrupt), pool:
        raise KeyboardInterrupt
    assert left_behind() == before


def test_a_call_left_running_does_not_hold_the_interpreters_exit() -> None:
    # ThreadPoolExecutor's threads are joined at exit: this process would wait for
    # the call for good.
    script = textwrap.dedent("""
        import threading
        from talprov.daemon_pool import DaemonPool
        try:
            with DaemonPool(1) as pool:
                pool.submit(threading.Event().wait)
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            print("left")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=20, check=False)
    assert (done.returncode, done.stdout) == (0, "left\n"), done.stderr


def test_an_interrupted_bounded_call_is_counted_as_left_behind() -> None:
    release = threading.Event()
    before = left_behind()
    try:
        assert abandon_after(0.2, lambda: bounded_call(release.wait, 30, name="bmc"),
                             otherwise=None) is None
        assert left_behind() == before + 1
    finally:
        release.set()

"""A SQLite write that waits for another process's write lock lets signal
handlers run while it waits: Ctrl-C, SIGTERM and a --wait's deadline (SIGALRM)
act within a fraction of a second, not when the lock comes (up to
BUSY_TIMEOUT_SECONDS). SQLite's own busy wait is one C call that no signal
breaks, and Python runs its handlers only between bytecodes (CI: a command whose
first signal seemed lost)."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from talprov.store import Store
from talprov.store.engine import BUSY_TIMEOUT_SECONDS
from talprov.store.errors import StoreError
from tests.unit.store.factories import make_request

HELD_FOR = 6.0


class Alarm(Exception):
    """What the test's signal handler raises, as the CLI's handlers raise theirs."""


def _alarm(_signum: int, _frame: object) -> None:
    raise Alarm


@pytest.fixture
def alarm_handler() -> Iterator[None]:
    kept = signal.signal(signal.SIGALRM, _alarm)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, kept)


@pytest.fixture
def write_lock_held(tmp_path: Path) -> Iterator[Store]:
    """A migrated store whose write lock another connection (another process, as
    far as SQLite can tell) holds for HELD_FOR seconds."""
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    holding = threading.Event()

    def hold() -> None:
        other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        holding.set()
        time.sleep(HELD_FOR)
        other.execute("ROLLBACK")
        other.close()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert holding.wait(10)
    yield store
    holder.join()
    store.close()


def test_a_signal_during_a_wait_for_the_write_lock_is_handled_at_once(
        alarm_handler: None, write_lock_held: Store) -> None:
    started = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    with pytest.raises(Alarm):
        write_lock_held.create_request(make_request("busy-1"))
    took = time.monotonic() - started
    assert took < 2.0, f"the handler ran {took:.1f} s after the signal came at 0.3 s"


def test_the_wait_for_the_write_lock_still_lasts_the_busy_timeout(
        write_lock_held: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Waited in slices, but as long as before: a write lock held for a few
    # seconds is waited for, and one held past the timeout is a StoreError.
    assert BUSY_TIMEOUT_SECONDS > HELD_FOR
    started = time.monotonic()
    write_lock_held.create_request(make_request("busy-2"))
    assert time.monotonic() - started >= HELD_FOR - 1.0
    monkeypatch.setattr("talprov.store.engine.BUSY_TIMEOUT_SECONDS", 0.5)
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(StoreError, match="locked"):
            write_lock_held.create_request(make_request("busy-3"))
        assert time.monotonic() - started < 5.0
    finally:
        other.execute("ROLLBACK")
        other.close()

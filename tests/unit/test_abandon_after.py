"""abandon_after: a wait's work broken off at its deadline the way Ctrl-C breaks
off a command, its finally blocks run, the signal handlers as they were."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from talprov.processes import abandon_after
from talprov.stopping import Terminated, stop_on_signals


@pytest.fixture(autouse=True)
def handlers_kept() -> Iterator[None]:
    kept = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    yield
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # nothing left armed
    assert {s: signal.getsignal(s) for s in kept} == kept


def test_work_done_in_time_gives_its_result() -> None:
    assert abandon_after(30.0, lambda: "done", otherwise="late") == "done"


def test_work_still_running_at_the_deadline_is_broken_off_after_its_clean_up() -> None:
    cleaned: list[str] = []

    def pass_that_hangs() -> str:
        try:
            time.sleep(60)  # a step that does not return
        finally:
            cleaned.append("leases given back")
        return "done"

    started = time.monotonic()
    assert abandon_after(0.2, pass_that_hangs, otherwise="late") == "late"
    assert time.monotonic() - started < 30  # not the 60 s of the step
    assert cleaned == ["leases given back"]


def test_what_the_work_raises_goes_through() -> None:
    def broken() -> str:
        raise ValueError("store unreadable")

    with pytest.raises(ValueError, match="store unreadable"):
        abandon_after(30.0, broken, otherwise="late")


@pytest.fixture
def stop_handlers() -> Iterator[None]:
    """The CLI's stop handlers, as every command has them; pytest's back after."""
    kept = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    stop_on_signals()
    yield
    for signum, handler in kept.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize(("signum", "raised"), [(signal.SIGINT, KeyboardInterrupt),
                                                (signal.SIGTERM, Terminated)])
def test_a_stop_signal_while_the_work_is_unwound_stops_the_command_after_it(
        stop_handlers: None, signum: signal.Signals, raised: type[KeyboardInterrupt]) -> None:
    # Ctrl-C (or SIGTERM) while the deadline's unwinding waits for a step in
    # flight: it was ignored, and when the handlers were put back the command
    # went on (`--wait` said "still ... after Ns" and exited 1) as if it had never
    # been sent. It must stop the command once the unwinding is over.
    cleaned: list[str] = []

    def pass_that_hangs() -> str:
        try:
            time.sleep(60)
        finally:
            os.kill(os.getpid(), signum)  # during the unwinding (leases given back)
            cleaned.append("leases given back")  # not broken off by it
        return "done"

    with pytest.raises(raised) as stopped:
        abandon_after(0.2, pass_that_hangs, otherwise="late")
    assert type(stopped.value) is raised
    assert cleaned == ["leases given back"]
    # The one-signal rule: the deferred stop is the first, a second one is ignored.
    os.kill(os.getpid(), signal.SIGINT)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_without_a_stop_signal_the_handlers_are_back_after_the_deadline(
        stop_handlers: None) -> None:
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    def hangs() -> str:
        time.sleep(60)
        return "done"

    assert abandon_after(0.05, hangs, otherwise="late") == "late"
    assert {s: signal.getsignal(s) for s in handlers} == handlers


def test_work_that_swallows_the_deadline_leaves_the_stop_handlers_in_place(
        stop_handlers: None) -> None:
    # A work whose `except BaseException` ate DeadlinePassed returned normally: the
    # handlers that only note a stop stayed, and every later Ctrl-C was noted and
    # never raised.
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def swallowing() -> str:
        try:
            time.sleep(60)
        except BaseException:
            return "swallowed"
        return "done"

    assert abandon_after(0.05, swallowing, otherwise="late") == "swallowed"
    assert {s: signal.getsignal(s) for s in handlers} == handlers


def test_a_stop_that_beats_the_deferring_keeps_the_one_signal_rule(
        stop_handlers: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # SIGTERM handled inside the deadline's handler, before it deferred the stop
    # signals: the stop ignores both from then on, and abandon_after must not put
    # the stop handlers back over that (a second signal then broke off the
    # clean-up the first one began).
    from talprov import processes
    from talprov.stopping import defer_stops as real_defer

    def stop_comes_first() -> None:
        signal.raise_signal(signal.SIGTERM)
        real_defer()

    monkeypatch.setattr(processes, "defer_stops", stop_comes_first)

    def hangs() -> str:
        time.sleep(60)
        return "done"

    with pytest.raises(Terminated):
        abandon_after(0.05, hangs, otherwise="late")
    os.kill(os.getpid(), signal.SIGINT)  # a second stop during the clean-up: ignored
    time.sleep(0.01)

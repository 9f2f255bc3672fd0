"""abandon_after: a wait's work broken off at its deadline the way Ctrl-C breaks
off a command, its finally blocks run, the signal handlers as they were."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from talprov.processes import abandon_after


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

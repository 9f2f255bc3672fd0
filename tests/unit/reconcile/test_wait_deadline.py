"""The deadline of a wait bounds it (QA: `machine create --wait --timeout 15`
returned after ~25 s), and progress lines show the time since the wait began."""

from __future__ import annotations

import pytest

from talprov.cli import waiting as cli_waiting
from talprov.reconcile.waiting import repeat_until
from talprov.testing import FakeClock


def test_a_wait_neither_sleeps_nor_works_past_its_deadline() -> None:
    clock = FakeClock()
    start = clock()
    runs: list[float] = []

    def work() -> None:  # a pass that takes 3 s (an attempt against a slow cloud)
        runs.append(clock() - start)
        clock.now += 3.0

    assert repeat_until(work, lambda: False, timeout=15.0, pause=lambda: 5.0,
                        clock=clock, sleep=clock.sleep) is False
    # Passes at 0, 8 and 16 would end at 19 s; the pause is cut at the deadline.
    assert runs == [0.0, 8.0]
    assert clock() - start == 15.0


def test_a_wait_done_at_the_deadline_says_so() -> None:
    clock = FakeClock()
    deadline = clock() + 10.0
    assert repeat_until(lambda: None, lambda: clock() >= deadline, timeout=10.0,
                        pause=lambda: 30.0, clock=clock, sleep=clock.sleep) is True
    assert clock.sleeps == [10.0]


def test_progress_lines_show_the_time_since_the_wait_began(
        monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []
    monkeypatch.setattr(cli_waiting, "say", lambda line, **_: said.append(line))
    clock = FakeClock()
    progress = cli_waiting.WaitProgress(clock)
    progress.show("r1: pending")
    clock.sleep(7.0)
    progress.show("r1: provisioning at step create")
    clock.sleep(cli_waiting.HEARTBEAT + 5)
    progress.show("r1: provisioning at step create")
    assert said == ["r1: pending [0m00s]", "r1: provisioning at step create [0m07s]",
                    "r1: provisioning at step create [0m42s]"]

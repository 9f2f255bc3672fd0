"""Helpers for people testing with talprov (its own suite uses them too)."""

from __future__ import annotations


class FakeClock:
    """A clock that moves only when someone sleeps on it.

    Pass it as ``Runtime(clock=clock, sleep=clock.sleep)`` and every backoff,
    retry and timeout runs instantly while keeping its order of events.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def time(self) -> float:
        """The current fake time (same as calling the clock)."""
        return self.now

    def sleep(self, seconds: float) -> None:
        """Advance the clock by ``seconds`` (negative waits count as none)."""
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)

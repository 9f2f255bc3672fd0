"""Helpers for people testing with talprov (its own suite uses them too)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from talprov.providers.protocol import ProviderState, StepContext
from talprov.providers.types import Health, StepResult


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


class NoSettings(BaseModel):
    """An empty config or provider_data model that refuses every field."""

    model_config = ConfigDict(extra="forbid")


class ProviderDouble:
    """A base for in-memory provider doubles in tests.

    It brings what most doubles share: no config and no provider_data fields, the
    plain ``ProviderState``, a deprovision with nothing to remove (gone at once)
    and good health. A subclass adds ``name``, ``steps()`` and ``list_machines()``
    (the behaviour under test), and overrides the rest where it matters.
    """

    type_name: ClassVar[str] = "double"
    config_model: ClassVar[type[BaseModel]] = NoSettings
    data_model: ClassVar[type[BaseModel]] = NoSettings
    state_model: ClassVar[type[ProviderState]] = ProviderState

    def deprovision(self, ctx: StepContext[Any, Any]) -> StepResult:
        """Nothing to remove: already gone. Never raises; idempotent."""
        return None

    def health(self) -> Health:
        """Always healthy. Never raises."""
        return Health(ok=True)

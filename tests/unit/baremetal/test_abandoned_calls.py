"""A BMC that never answers leaves at most one blocked thread behind, however
often the call is retried (review: bounded_call started a daemon thread per
attempt, and over hours of retries of a silent BMC they piled up)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from talprov.baremetal.power.base import (
    NoAnswer,
    PowerState,
    StillBlocked,
    abandoned_calls,
    bounded_call,
)
from talprov.baremetal.power.ipmi import IpmiPower
from talprov.providers.errors import Transient


class Silent:
    """An injected call that blocks until released, counting its starts."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = 0

    def __call__(self) -> str:
        self.started += 1
        self.release.wait(30)
        return "late"


def threads_named(name: str) -> int:
    return sum(1 for t in threading.enumerate() if t.name == name and t.is_alive())


@pytest.fixture
def silent() -> Iterator[Silent]:
    call = Silent()
    yield call
    call.release.set()  # no thread outlives its test


def _wait_unblocked(key: str) -> None:
    for _ in range(200):
        if abandoned_calls(key) == 0:
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"{key} still has a blocked call")


def test_retries_of_a_silent_call_start_no_second_thread(silent: Silent) -> None:
    with pytest.raises(NoAnswer):
        bounded_call(silent, 0.05, name="silent-a", key="bmc-a")
    assert (silent.started, threads_named("silent-a"), abandoned_calls("bmc-a")) == (1, 1, 1)
    for _ in range(20):
        with pytest.raises(StillBlocked):
            bounded_call(silent, 0.05, name="silent-a", key="bmc-a")
    assert (silent.started, threads_named("silent-a")) == (1, 1)
    # Another BMC is not held up by this one.
    assert bounded_call(lambda: "ok", 1, name="other", key="bmc-b") == "ok"
    # Once the blocked call returns, calls go out again.
    silent.release.set()
    _wait_unblocked("bmc-a")
    assert bounded_call(lambda: "again", 1, name="silent-a", key="bmc-a") == "again"
    assert threads_named("silent-a") == 0


def test_a_call_that_answers_is_not_remembered() -> None:
    assert bounded_call(lambda: 1, 1, name="quick", key="bmc-c") == 1
    with pytest.raises(ValueError, match="boom"):
        bounded_call(lambda: (_ for _ in ()).throw(ValueError("boom")), 1, name="quick",
                     key="bmc-c")
    assert abandoned_calls("bmc-c") == 0


class _SilentCommand:
    def __init__(self, silent: Silent) -> None:
        self._silent = silent

    def get_power(self) -> dict[str, Any]:
        return {"powerstate": self._silent()}


def test_ipmi_retries_of_a_silent_bmc_say_so_without_new_threads(
        silent: Silent, monkeypatch: pytest.MonkeyPatch) -> None:
    power = IpmiPower("192.0.2.7", "u", "p", port=6230, attempts=3, call_timeout=0.05,
                      min_interval=0, sleep=lambda _s: None)
    monkeypatch.setattr(power, "_command", lambda: _SilentCommand(silent))
    monkeypatch.setattr(power, "_forget_session", lambda: None)
    name = "ipmi get power 192.0.2.7:6230"
    with pytest.raises(Transient, match="no answer within 0s"):
        power.power_state()  # its further attempts are not made: the call is blocked
    assert (silent.started, threads_named(name)) == (1, 1)
    for _ in range(10):  # later steps and rounds
        with pytest.raises(Transient) as caught:
            power.power_state()
        assert str(caught.value).startswith(
            "get power: BMC ipmi://192.0.2.7:6230 still has not answered the previous call")
    assert (silent.started, threads_named(name)) == (1, 1)
    silent.release.set()
    _wait_unblocked(power.endpoint)
    assert power.power_state() == PowerState.UNKNOWN  # "late": answered, and asked again
    assert silent.started == 2

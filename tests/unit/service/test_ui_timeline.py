"""The step timeline rebuilt from a request's event log (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from talprov.providers.types import Stage
from talprov.service.ui.timeline import build_timeline

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STEPS = ("resolve-image", "ensure-machine", "wait-running")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_steps_get_start_duration_retries_errors_and_the_running_one() -> None:
    events = [
        (at(0), "request created"),
        (at(1), "provisioning started"),
        (at(2), "step resolve-image done"),
        (at(3), "attempt 1 failed, retry in 5s: ensure-machine: no capacity"),
        (at(9), "attempt 2 failed, retry in 10s: ensure-machine: no capacity"),
        (at(20), "created i-123"),
        (at(20), "step ensure-machine done"),
        (at(21), "wait-running: instance pending"),
    ]
    lines = build_timeline(STEPS, events, stage=Stage.PROVISIONING,
                           current_step="wait-running", step_started_at=at(20))
    resolve, ensure, wait = lines
    assert (resolve.status, resolve.started, resolve.duration(at(99))) == ("done", at(1), 1.0)
    assert (ensure.status, ensure.started, ensure.finished) == ("done", at(2), at(20))
    assert ensure.retries == 2
    assert ensure.errors[0].endswith("ensure-machine: no capacity")
    assert (wait.status, wait.started, wait.notes) == ("running", at(20), ["instance pending"])
    assert wait.duration(at(30)) == 10.0


def test_a_failed_step_and_the_steps_after_it() -> None:
    events = [
        (at(0), "request created"),
        (at(1), "provisioning started"),
        (at(2), "failed (permanent error): resolve-image: no such Talos version"),
    ]
    lines = build_timeline(STEPS, events, stage=Stage.FAILED, current_step="resolve-image",
                           step_started_at=None)
    assert [line.status for line in lines] == ["failed", "waiting", "waiting"]
    assert lines[0].errors == ["failed (permanent error): resolve-image: no such Talos version"]
    assert lines[1].duration(at(9)) is None


def test_only_the_newest_life_of_a_request_made_again_is_shown() -> None:
    events = [
        (at(0), "request created"),
        (at(1), "provisioning started"),
        (at(2), "step resolve-image done"),
        (at(3), "attempt 1 failed, retry in 5s: ensure-machine: quota"),
        (at(50), "request created again (the previous one was gone)"),
    ]
    lines = build_timeline(STEPS, events, stage=Stage.PENDING, current_step=None,
                           step_started_at=None)
    assert [(line.status, line.retries, line.started) for line in lines] == [
        ("waiting", 0, None)] * 3

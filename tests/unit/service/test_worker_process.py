"""The reconcile loop in a child process: relayed metrics, wake/stop, restarts."""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from talprov.logs import native_stderr_logged
from talprov.service import worker_process
from talprov.service.metrics import Metrics
from talprov.service.worker_process import WorkerProcess
from tests.unit.service import worker_targets


def _wait(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_the_childs_reports_reach_the_parents_metrics(tmp_path: Path) -> None:
    log = tmp_path / "messages"
    metrics = Metrics()
    worker = WorkerProcess(functools.partial(worker_targets.reporting_child, str(log)),
                           metrics=metrics)
    worker.start()
    try:
        _wait(lambda: worker.worker_id.startswith("test-child:"), "the child's worker id")
        _wait(lambda: _sample(metrics, "talprov_leftovers_swept_total",
                              provider="fake", kind="volume") == 1.0, "the sweep count")
        assert _sample(metrics, "talprov_step_duration_seconds_count",
                       provider="fake", step="create") == 1.0
        assert _sample(metrics, "talprov_provider_errors_total", provider="fake",
                       operation="create", error="Transient") == 1.0
        assert worker.instance_troubles() == {}
        worker.wake()
        _wait(lambda: "fake" in worker.instance_troubles(), "the round's troubles")
        assert worker.instance_troubles()["fake"].endpoint == "http://127.0.0.1:9"
        assert _sample(metrics, "talprov_reconcile_pass_failures_total") == 1.0
        assert worker.running
    finally:
        assert worker.stop(timeout=30)
    assert not worker.running
    assert log.read_text().splitlines() == ["wake", "stop"]
    assert worker.stop() is True  # idempotent


def test_a_child_that_dies_is_started_again_with_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_process, "FIRST_RESTART_DELAY", 0.05)
    count = tmp_path / "starts"
    worker = WorkerProcess(functools.partial(worker_targets.dying_child, str(count)),
                           metrics=Metrics())
    worker.start()
    try:
        _wait(lambda: worker.worker_id == "healthy", "the third child")
        assert worker.restarts == 2
        assert count.read_text() == "3"
    finally:
        assert worker.stop(timeout=30)


def test_stop_before_the_child_started_is_honoured(tmp_path: Path) -> None:
    worker = WorkerProcess(functools.partial(worker_targets.reporting_child,
                                             str(tmp_path / "m")), metrics=Metrics())
    worker.start()
    assert worker.stop(timeout=60)
    assert not worker.running


def test_the_child_writes_to_the_stderr_of_when_the_supervisor_was_made(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # With the autoscaler on, serve routes fd 2 through logging (gRPC's native
    # lines); a worker child spawned then had every one of its log lines
    # wrapped as "WARNING grpc: ..." (QA).
    real = (tmp_path / "stderr").open("w+")
    saved = os.dup(2)
    os.dup2(real.fileno(), 2)
    try:
        worker = WorkerProcess(worker_targets.stderr_child, metrics=Metrics())
        with caplog.at_level(logging.DEBUG, logger="grpc"), native_stderr_logged("grpc"):
            worker.start()
            assert worker.worker_id == "stderr-child"
            assert worker.stop(timeout=30)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    assert "a line of the worker child" in (tmp_path / "stderr").read_text()
    assert not [r for r in caplog.records if "worker child" in r.getMessage()]


def test_a_child_starts_with_ctrl_c_and_sigterm_held() -> None:
    # A Ctrl-C while the child's interpreter started printed a KeyboardInterrupt
    # traceback (QA): the child holds both until its entry point handles them.
    worker = WorkerProcess(worker_targets.signal_mask_child, metrics=Metrics())
    worker.start()
    try:
        held = set(worker.worker_id.split(","))
        assert {"SIGINT", "SIGTERM"} <= held
    finally:
        assert worker.stop(timeout=30)


def test_a_child_the_groups_sigterm_stopped_first_is_not_a_death(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # `kill -TERM -- -PGID` (systemd, timeout) reaches the child and serve at once;
    # the child may end before serve says stop. That logged "exited (code 0);
    # starting another" as an ERROR (QA).
    worker = WorkerProcess(worker_targets.signalled_child, metrics=Metrics())
    with caplog.at_level(logging.INFO, logger="talprov.service.worker_process"):
        worker.start()
        # The child has ended (the supervisor let its pipe go); serve's own stop
        # comes a moment later. A fixed second let a slow child end after the stop.
        _wait(lambda: worker._conn is None, "the child's end")
        assert worker.stop(timeout=30)
    assert worker.restarts == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_a_child_a_signal_stopped_alone_is_started_again_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(worker_process, "SIGNALLED_GRACE", 0.1)
    monkeypatch.setattr(worker_process, "FIRST_RESTART_DELAY", 0.05)
    worker = WorkerProcess(worker_targets.signalled_child, metrics=Metrics())
    with caplog.at_level(logging.INFO, logger="talprov.service.worker_process"):
        worker.start()
        try:
            _wait(lambda: worker.restarts >= 1, "a restart")
        finally:
            assert worker.stop(timeout=30)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings
    assert "stopped by a signal, not by serve" in warnings[0].getMessage()


class _SlowPipe:
    """The parent's end of the pipe: the first send waits for ``release``."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.release = threading.Event()
        self.sending = threading.Event()

    def send(self, message: str) -> None:
        self.sending.set()
        if not self.sent:
            assert self.release.wait(10)
        self.sent.append(message)


def test_wakes_during_a_send_are_folded_into_one_more_send() -> None:
    worker = WorkerProcess(functools.partial(worker_targets.reporting_child, "unused"),
                           metrics=Metrics())
    pipe = _SlowPipe()
    worker._conn = pipe  # type: ignore[assignment]  # the test plays the child's pipe
    first = threading.Thread(target=worker.wake)
    first.start()
    assert pipe.sending.wait(10)
    during = [threading.Thread(target=worker.wake) for _ in range(20)]
    for thread in during:
        thread.start()
    for thread in during:
        thread.join(10)  # they return at once: the sender owes them a wake
        assert not thread.is_alive()
    assert pipe.sent == []
    pipe.release.set()
    first.join(10)
    # One send was under way when they came; one more, after them all, is theirs.
    assert pipe.sent == ["wake", "wake"]
    worker.wake()  # nothing under way: sent at once
    assert pipe.sent == ["wake", "wake", "wake"]
    worker.close()

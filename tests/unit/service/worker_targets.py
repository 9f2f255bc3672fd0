"""Child entry points for the WorkerProcess tests (spawned children import them)."""

from __future__ import annotations

import os
import time
from multiprocessing.connection import Connection
from pathlib import Path

from talprov.reconcile.instance_health import InstanceTrouble
from talprov.service.worker_process import STOP, WAKE, PipeMetrics


def reporting_child(log_path: str, conn: Connection) -> None:
    """Reports one step, one error, one sweep and a round per wake; notes each
    message in ``log_path``; returns on stop."""
    sink = PipeMetrics(conn)
    sink.send(("started", f"test-child:{os.getpid()}"))
    sink.observe_step("fake", "create", 0.25)
    sink.count_error("fake", "create", "Transient")
    sink.count_swept("fake", "volume")
    trouble = InstanceTrouble(instance="fake", kind="unreachable", endpoint="http://127.0.0.1:9",
                              detail="refused", since=0.0, next_attempt=1.0, attempts=1)
    while True:
        message = conn.recv()
        with Path(log_path).open("a") as log:
            log.write(f"{message}\n")
        if message == WAKE:
            sink.send(("round", 0.5, True, {"fake": trouble}))
        elif message == STOP:
            return


def dying_child(count_path: str, conn: Connection) -> None:
    """Counts its starts in ``count_path``; dies at once the first two times,
    then waits for stop like a healthy child."""
    path = Path(count_path)
    starts = int(path.read_text() or "0") + 1 if path.exists() else 1
    path.write_text(str(starts))
    if starts <= 2:
        os._exit(3)
    PipeMetrics(conn).send(("started", "healthy"))
    while conn.recv() != STOP:
        time.sleep(0)


def stderr_child(conn: Connection) -> None:
    """Writes one line to its stderr, reports started, waits for stop."""
    import sys

    print("a line of the worker child", file=sys.stderr, flush=True)
    PipeMetrics(conn).send(("started", "stderr-child"))
    while conn.recv() != STOP:
        time.sleep(0)


def signal_mask_child(conn: Connection) -> None:
    """Reports the signals held when its entry point starts, then waits for stop."""
    import signal

    held = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    PipeMetrics(conn).send(("started", ",".join(sorted(signal.Signals(s).name for s in held))))
    while conn.recv() != STOP:
        time.sleep(0)


def signalled_child(conn: Connection) -> None:
    """Reports started, then ends as a child does on SIGTERM (exit 0)."""
    PipeMetrics(conn).send(("started", "signalled"))
    time.sleep(0.2)
    os._exit(0)

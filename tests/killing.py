"""Real worker processes, SIGKILLed: the helpers the crash and chaos suites share."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from tests.helpers import REPO


def worker_env(config: Path, *extra_paths: Path) -> dict[str, str]:
    """The environment of a ``talprov`` worker reading ``config`` from this checkout."""
    return dict(os.environ, TALPROV_CONFIG=str(config),
                PYTHONPATH=os.pathsep.join([*map(str, extra_paths), str(REPO)]))


def reconcile_command(interval: float = 0.2) -> list[str]:
    """``talprov reconcile`` passing every ``interval`` seconds until killed."""
    return [sys.executable, "-m", "talprov", "reconcile", "--interval", str(interval)]


def start_worker(env: Mapping[str, str], interval: float = 0.2) -> subprocess.Popen[bytes]:
    return subprocess.Popen(reconcile_command(interval), env=dict(env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill(worker: subprocess.Popen[bytes]) -> None:
    """SIGKILL (no clean-up of any kind) and reap."""
    if worker.poll() is None:
        os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)


def run_then_kill(env: Mapping[str, str], after: float, interval: float = 0.2) -> None:
    """Start a reconcile worker, let it run ``after`` seconds, SIGKILL it."""
    worker = start_worker(env, interval)
    try:
        time.sleep(after)
    finally:
        kill(worker)

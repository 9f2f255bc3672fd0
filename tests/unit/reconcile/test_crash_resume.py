"""A real worker process is SIGKILLed between a provider's create and the step's state write.

The provider double writes a marker file right after it created the machine and
then blocks, so the kill lands exactly in the window that matters: the machine
exists, the store does not know it. A restarted worker must find it (by the
request id it was tagged with) instead of creating a second one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import Home
from tests.providers.fileprov import Cloud


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"worker exited early ({proc.returncode}): {out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError("worker never reached the create")
        time.sleep(0.05)


def test_sigkill_after_create_before_record_yields_one_machine(home: Home) -> None:
    marker = home.root / "created.marker"
    home.providers["fake"]["pause_after_create"] = str(marker)
    home.write_config()
    request = home.write_request("crash-1")
    home.run("machine", "create", "-f", str(request), check=True)

    worker = subprocess.Popen(
        [sys.executable, "-m", "talprov", "reconcile", "--interval", "0.1"],
        env=home.env(), cwd=home.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(marker, worker)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate()
    assert worker.returncode == -signal.SIGKILL

    cloud = Cloud(home.cloud_path())
    assert len(cloud.machines()) == 1
    before = json.loads(home.run("machine", "get", "crash-1", "-o", "json", check=True).stdout)
    assert before["stage"] == "pending"  # nothing of the first step was stored
    assert before["infra_id"] is None  # the kill landed before the state write

    # Restart without the pause: the worker resumes the same step.
    del home.providers["fake"]["pause_after_create"]
    home.write_config()
    for _ in range(20):
        home.run("reconcile", "--once", check=True)
        after = json.loads(home.run("machine", "get", "crash-1", "-o", "json", check=True).stdout)
        if after["stage"] == "provisioned":
            break
    assert after["stage"] == "provisioned"
    machines = cloud.machines()
    assert len(machines) == 1
    assert after["infra_id"] == machines[0]["infra_id"]
    assert cloud.calls("create") == 1

"""A worker SIGKILLed while Nova creates its server: the restart finds that server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from talprov.openstack.state import OpenStackState
from talprov.testing.openstack.wire import Request, Response
from tests.unit.openstack.harness import Harness

REPO = Path(__file__).resolve().parents[3]


def test_sigkill_during_server_create_then_restart_makes_one_server(
        harness: Harness, tmp_path: Path) -> None:
    request = harness.request("killed")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({
        "installation": harness.owner.installation,
        "owner": {"installation": harness.owner.installation,
                  "instance": harness.owner.instance},
        "cache_dir": str(harness.runtime.cache_dir),
        "factory_url": harness.factory.url,
        "config": {**harness.config.model_dump(mode="json"), "auth": harness.cloud.auth()},
        "request": {**request.model_dump(mode="json"),
                    "machine_config": request.machine_config.get_secret_value()},
    }))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-m", "tests.unit.openstack.crash_child",
                              str(spec)], cwd=REPO, env=env, stderr=subprocess.PIPE,
                             text=True)
    killed = threading.Event()

    def kill_before_the_reply(req: Request, response: Response) -> None:
        # Nova has accepted the server; the worker dies before it learns the id.
        if response.status == 202 and not killed.is_set():
            # Set first: the main thread's wait() returns the moment the child dies,
            # possibly before this thread runs another line.
            killed.set()
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)

    harness.cloud.after("POST", r"/compute/v2\.1/servers$", kill_before_the_reply)
    try:
        _, errors = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    returncode = child.returncode
    assert killed.is_set(), f"the worker exited ({returncode}) before Nova answered: {errors}"
    assert returncode == -signal.SIGKILL
    assert len(harness.cloud.servers()) == 1

    # The restarted worker has nothing stored for this request beyond its id.
    ctx = harness.provision(request, OpenStackState())

    servers = harness.cloud.servers()
    assert len(servers) == 1
    assert servers[0].status == "ACTIVE"
    assert ctx.state.server_id == servers[0].id
    assert len(harness.cloud.ports()) == 1
    assert len(harness.cloud.images()) == 1

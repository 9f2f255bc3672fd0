"""SIGKILL inside the clone step, then a fresh start: exactly one VM for the request."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from talprov.providers.types import Owner
from talprov.testing import FakeClock
from talprov.vmware.provider import VSphereProvider
from talprov.vmware.state import VSphereState
from tests.driving import context, provision
from tests.emulators.factory import FakeImageFactory
from tests.emulators.vcsim.fixture import VcsimServer
from tests.unit.vmware.conftest import machine_request
from tests.unit.vmware.observe import all_vms

REPO = Path(__file__).resolve().parents[3]


def test_sigkill_during_clone_then_restart_yields_one_vm(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner, clock: FakeClock,
    image_factory: FakeImageFactory, tmp_path: Path,
) -> None:
    marker = tmp_path / "cloned.marker"
    settings = {
        "config": {"url": vcsim.url, "username": vcsim.user, "ca_file": str(vcsim.ca_file)},
        "installation": owner.installation, "instance": owner.instance,
        "cache": str(provider.runtime.cache_dir), "factory_url": image_factory.url,
        "request_id": "k1", "marker": str(marker),
    }
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(json.dumps(settings))
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.unit.vmware.crash_worker", str(settings_file)],
        cwd=REPO, env={**os.environ, "VCSIM_PASSWORD": vcsim.password},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            if worker.poll() is not None:
                out, err = worker.communicate()
                raise AssertionError(f"worker exited early ({worker.returncode}): {out}{err}")
            assert time.monotonic() < deadline, "the worker never reached the clone"
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate()
    assert worker.returncode == -signal.SIGKILL
    assert len(all_vms(vcsim)["k1"]) == 1  # the clone happened; its state was never stored

    # A new process starts from the last stored state: nothing.
    ctx = context(provider, machine_request("k1"), owner, state=VSphereState())
    provision(provider, [ctx], clock)
    vms = all_vms(vcsim)
    assert len(vms["k1"]) == 1
    assert ctx.state.vm_moid == vms["k1"][0]["moid"]
    assert vms["k1"][0]["runtime.powerState"] == "poweredOn"
    assert [m.request_id for m in provider.list_machines(owner)] == ["k1"]

"""SIGKILL inside the clone step or a pipelined batch, then a fresh start: exactly one VM
for each request."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from talprov.providers.types import Owner, Stage
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store
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
        "request_id": "k1", "marker": str(marker), "mode": "clone-step",
    }
    kill_when_marked(settings, tmp_path, vcsim)
    assert len(all_vms(vcsim)["k1"]) == 1  # the clone happened; its state was never stored

    # A new process starts from the last stored state: nothing.
    ctx = context(provider, machine_request("k1"), owner, state=VSphereState())
    provision(provider, [ctx], clock)
    vms = all_vms(vcsim)
    assert len(vms["k1"]) == 1
    assert ctx.state.vm_moid == vms["k1"][0]["moid"]
    assert vms["k1"][0]["runtime.powerState"] == "poweredOn"
    assert [m.request_id for m in provider.list_machines(owner)] == ["k1"]


def test_sigkill_inside_a_pipelined_batch_then_restart_yields_one_vm_each(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner,
    image_factory: FakeImageFactory, tmp_path: Path,
) -> None:
    # A request whose clone ended goes on to its power-on while the batch's other
    # clones run, and nothing of the batch is stored before they all end: the
    # worker is killed right after the first power-on, with every clone of the
    # batch made or under way and none of them stored.
    store_url = f"sqlite:///{tmp_path / 'state.db'}"
    store = Store(store_url)
    store.migrate()
    reconciler = Reconciler(store, {owner.instance: ProviderHandle(provider)}, provider.runtime)
    store.create_request(machine_request("k0"))  # imports the template first
    assert reconciler.run_until(lambda: _all_provisioned(store), timeout=600, interval=1.0)
    for i in range(1, 4):
        store.create_request(machine_request(f"k{i}"))
    settings = {
        "config": {"url": vcsim.url, "username": vcsim.user, "ca_file": str(vcsim.ca_file)},
        "installation": owner.installation, "instance": owner.instance,
        "cache": str(provider.runtime.cache_dir), "factory_url": image_factory.url,
        "store": store_url, "marker": str(tmp_path / "powered.marker"), "mode": "pass",
    }
    kill_when_marked(settings, tmp_path, vcsim)
    # Nothing of the batch was stored: ensure-template's outcome goes with
    # clone-vm's (found_again), which the kill came before.
    assert {r.request.id: (r.stage, r.step_name) for r in store.list_requests()
            if r.request.id != "k0"} == dict.fromkeys(("k1", "k2", "k3"),
                                                      (Stage.PENDING, None))

    # A fresh worker takes the requests over from the dead one and resumes.
    assert reconciler.run_until(lambda: _all_provisioned(store), timeout=600, interval=1.0)
    vms = all_vms(vcsim)
    for i in range(4):
        record = store.get_request(f"k{i}")
        assert record is not None
        assert [vm["moid"] for vm in vms[f"k{i}"]] == [record.infra_id]
        assert vms[f"k{i}"][0]["runtime.powerState"] == "poweredOn"


def _all_provisioned(store: Store) -> bool:
    return all(r.stage == Stage.PROVISIONED for r in store.list_requests())


def kill_when_marked(settings: dict[str, Any], tmp_path: Path, vcsim: VcsimServer) -> None:
    """Run ``tests.unit.vmware.crash_worker`` with ``settings`` and SIGKILL it once it
    wrote the file ``settings["marker"]``."""
    marker = Path(settings["marker"])
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
            assert time.monotonic() < deadline, "the worker never reached the marked call"
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate()
    assert worker.returncode == -signal.SIGKILL

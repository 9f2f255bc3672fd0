"""A worker SIGKILLed after the looks-only steps (image, flavor, server group) and the
port create, before the one store write that holds all of them: the restart finds
the tagged ports, makes one server per request, and leaks no port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from talprov.providers.types import Stage
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store
from talprov.testing.openstack.wire import Request, Response
from tests.unit.openstack.harness import Harness

REPO = Path(__file__).resolve().parents[3]
IMAGE = "talos-crash"
REQUESTS = ("k0", "k1", "k2")


def test_sigkill_between_the_lookups_and_their_write_leaves_one_server_each(
        harness: Harness, tmp_path: Path) -> None:
    harness.cloud.add_image(IMAGE)
    store_url = f"sqlite:///{tmp_path / 'state.db'}"
    store = Store(store_url)
    store.migrate()
    for rid in REQUESTS:
        store.create_request(harness.request(rid, image=IMAGE))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({
        "installation": harness.owner.installation,
        "owner": {"installation": harness.owner.installation,
                  "instance": harness.owner.instance},
        "cache_dir": str(harness.runtime.cache_dir),
        "factory_url": harness.factory.url,
        "config": {**harness.config.model_dump(mode="json"), "auth": harness.cloud.auth()},
        "store": store_url,
    }))
    child = subprocess.Popen([sys.executable, "-m", "tests.unit.openstack.crash_child",
                              str(spec)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                             stderr=subprocess.PIPE, text=True)
    killed = threading.Event()

    def kill_before_the_reply(req: Request, response: Response) -> None:
        # Neutron made the pass's ports; the worker dies before it hears back.
        if response.status == 201 and not killed.is_set():
            killed.set()
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)

    harness.cloud.after("POST", r"/v2\.0/ports$", kill_before_the_reply)
    try:
        _, errors = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert killed.is_set(), f"the worker exited ({child.returncode}) first: {errors}"
    assert child.returncode == -signal.SIGKILL
    # The window is real: the ports exist, and nothing the lookups found was
    # stored (they are written with the ports' step, which never ended).
    assert len(harness.cloud.ports()) == len(REQUESTS)
    for record in store.list_requests():
        assert (record.stage, record.step_name, record.state) == (Stage.PENDING, None, {})

    # A fresh worker takes the dead one's requests over and resumes.
    provider = harness.provider
    reconciler = Reconciler(store, {"os-test": ProviderHandle(provider)}, harness.runtime)
    assert reconciler.run_until(lambda: all(
        r.stage == Stage.PROVISIONED for r in store.list_requests()), timeout=600, interval=2)
    reconciler.close()

    servers = harness.cloud.servers()
    assert sorted(s.name for s in servers) == sorted(REQUESTS)
    by_id = {s.id: s for s in servers}
    for record in store.list_requests():
        assert by_id[str(record.infra_id)].name == record.request.id
    ports = harness.cloud.ports()
    # The killed worker's ports were found by their tags and used: one per
    # server, each bound to it; none left for the sweep.
    assert len(ports) == len(REQUESTS)
    assert sorted(p.device_id for p in ports) == sorted(by_id)
    assert provider.list_leftovers(harness.owner) == []
    store.close()

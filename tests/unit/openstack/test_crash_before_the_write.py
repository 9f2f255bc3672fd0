"""A worker SIGKILLed after the steps that are not stored on their own
(``Step.found_again``: image, flavor, server group, ports, server) made ports or a
server, before the one store write that holds them: the restart finds the tagged
ports and servers, ends with one server per request, and leaks no port."""

from __future__ import annotations

from pathlib import Path

import pytest

from talprov.providers.types import Stage
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store
from tests.unit.openstack.harness import Harness

IMAGE = "talos-crash"
REQUESTS = ("k0", "k1", "k2")


# Neutron made the pass's ports (201), or Nova took the first server (202); the
# worker dies before it hears back.
KILL_POINTS = {"ports": (r"/v2\.0/ports$", 201), "server": (r"/compute/v2\.1/servers$", 202)}


@pytest.mark.parametrize("kill_at", sorted(KILL_POINTS))
def test_sigkill_before_the_write_leaves_one_server_each_and_no_port(
        harness: Harness, tmp_path: Path, kill_at: str) -> None:
    harness.cloud.add_image(IMAGE)
    store_url = f"sqlite:///{tmp_path / 'state.db'}"
    store = Store(store_url)
    store.migrate()
    for rid in REQUESTS:
        store.create_request(harness.request(rid, image=IMAGE))
    harness.kill_worker(tmp_path, {"store": store_url}, *KILL_POINTS[kill_at])
    # The window is real: the ports (and maybe servers) exist, and nothing of
    # what the steps found or made was stored.
    assert len(harness.cloud.ports()) == len(REQUESTS)
    assert len(harness.cloud.servers()) >= (kill_at == "server")
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

"""A delete that lands while a pass runs the steps that are not stored on their own
(``Step.found_again``: image, flavor, server group, ports): the pass stops before
ensure-server, so no server is booted only to be deprovisioned, and the ports it
made go with the deletion."""

from __future__ import annotations

from pathlib import Path

from talprov.providers.types import Stage
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store
from talprov.testing.openstack.wire import Request, Response
from tests.unit.openstack.harness import Harness

IMAGE = "talos-mid-pass"
SERVER_CREATES = r"/compute/v2\.1/servers$"


def test_a_delete_after_the_ports_stops_the_pass_before_the_server_create(
        harness: Harness, tmp_path: Path) -> None:
    harness.cloud.add_image(IMAGE)
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    for rid in ("d0", "d1"):
        store.create_request(harness.request(rid, image=IMAGE))

    def delete_d0(_req: Request, _response: Response) -> None:
        store.request_deletion("d0")  # the pass's ports exist; no server yet

    harness.cloud.after("POST", r"/v2\.0/ports$", delete_d0)
    reconciler = Reconciler(store, {"os-test": ProviderHandle(harness.provider)},
                            harness.runtime)
    reconciler.run_pass()

    # d1 went on to its server; d0 was never booted.
    assert [s.name for s in harness.cloud.servers()] == ["d1"]
    assert harness.cloud.count_calls("POST", SERVER_CREATES) == 1
    d0 = store.get_request("d0")
    assert d0 is not None
    assert d0.stage == Stage.DEPROVISIONING
    # What the stopped pass made is kept for the deletion, which removes it.
    assert d0.state.get("port_ids")
    assert reconciler.run_until(lambda: (r := store.get_request("d0")) is not None
                                and r.stage == Stage.GONE, timeout=120, interval=2)
    reconciler.close()
    assert {p.device_id for p in harness.cloud.ports()} == {
        s.id for s in harness.cloud.servers()}
    assert harness.cloud.count_calls("POST", SERVER_CREATES) == 1
    store.close()

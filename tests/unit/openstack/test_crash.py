"""A worker SIGKILLed while Nova creates its server: the restart finds that server."""

from __future__ import annotations

from pathlib import Path

from talprov.openstack.state import OpenStackState
from tests.unit.openstack.harness import Harness


def test_sigkill_during_server_create_then_restart_makes_one_server(
        harness: Harness, tmp_path: Path) -> None:
    request = harness.request("killed")
    # Nova has accepted the server; the worker dies before it learns the id.
    harness.kill_worker(tmp_path, {"request": {
        **request.model_dump(mode="json"),
        "machine_config": request.machine_config.get_secret_value()}},
        r"/compute/v2\.1/servers$", 202)
    assert len(harness.cloud.servers()) == 1

    # The restarted worker has nothing stored for this request beyond its id.
    ctx = harness.provision(request, OpenStackState())

    servers = harness.cloud.servers()
    assert len(servers) == 1
    assert servers[0].status == "ACTIVE"
    assert ctx.state.server_id == servers[0].id
    assert len(harness.cloud.ports()) == 1
    assert len(harness.cloud.images()) == 1

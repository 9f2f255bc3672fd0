"""The OpenStack driver, through the real openstacksdk, against the fake cloud over HTTP."""

from __future__ import annotations

import base64

from pydantic import SecretStr

from talprov.openstack.images import SCHEMATIC_PROPERTY
from talprov.openstack.provider import OpenStackProvider
from talprov.openstack.servers import zone_order
from talprov.openstack.state import OpenStackState
from talprov.providers.protocol import Provider
from talprov.providers.types import JoinSpec, MachineState
from talprov.talos.schematic import Schematic
from tests.unit.openstack.harness import CONFIG_CANARY, Harness, machine_config


def test_three_machines_share_one_image_and_carry_their_config(harness: Harness) -> None:
    contexts = [harness.provision(harness.request(f"web-{i}")) for i in range(3)]

    servers = harness.cloud.servers()
    assert len(servers) == 3
    by_name = {s.name: s for s in servers}
    for ctx in contexts:
        server = by_name[ctx.request.id]
        assert server.status == "ACTIVE"
        assert base64.b64decode(server.user_data or "").decode() == machine_config(
            ctx.request.id)
        assert f"talprov-request={ctx.request.id}" in server.tags
        assert "talprov-installation=test-install" in server.tags
        assert server.metadata["talprov-request"] == ctx.request.id
        assert server.metadata["talprov-label-role"] == "w"
        assert ctx.state.server_id == server.id
        assert ctx.state.addresses
        assert ctx.state.addresses[0].startswith("10.0.0.")
    images = harness.cloud.images()
    assert len(images) == 1
    assert images[0].status == "active"
    assert images[0].properties["os_distro"] == "talos"
    assert images[0].properties["hw_firmware_type"] == "bios"
    schematic_id = Schematic.from_request(contexts[0].request).id()
    assert images[0].properties[SCHEMATIC_PROPERTY] == schematic_id
    assert images[0].name == f"talos-v1.13.9-amd64-{schematic_id[:12]}"
    assert {s.image_id for s in servers} == {images[0].id}
    # One upload: the file was PUT once for three machines, with progress reported.
    assert harness.cloud.count_calls("PUT", r"/v2/images/.*/file") == 1
    uploads = [p for p in harness.progress if p[0].startswith("upload talos-")]
    assert uploads
    assert uploads[-1][1] == uploads[-1][2] == images[0].size
    ports = harness.cloud.ports()
    assert len(ports) == 3
    assert all("talprov-request=" + p.name.rsplit("-", 1)[0] in p.tags for p in ports)
    assert {p.device_id for p in ports} == {s.id for s in servers}

    machines = harness.provider.list_machines(harness.owner)
    assert sorted(m.request_id or "" for m in machines) == ["web-0", "web-1", "web-2"]
    assert all(m.state is MachineState.RUNNING for m in machines)
    assert all(m.labels == {"role": "w"} for m in machines)

    for ctx in contexts:
        harness.deprovision(ctx)
    assert harness.cloud.servers() == []
    assert harness.cloud.ports() == []
    assert harness.provider.list_machines(harness.owner) == []


def test_list_machines_is_one_call_filtered_by_tag(harness: Harness) -> None:
    harness.provision(harness.request("one"))
    harness.cloud.calls.clear()
    harness.provider.list_machines(harness.owner)
    server_calls = [c for c in harness.cloud.calls if "/servers" in c[1]]
    assert len(server_calls) == 1
    method, path, query = server_calls[0]
    assert (method, path) == ("GET", "/compute/v2.1/servers/detail")
    assert "tags=talprov-installation=test-install,talprov-instance=os-test" in query


def test_no_valid_host_moves_to_the_next_zone_without_leaking_ports(harness: Harness) -> None:
    request = harness.request("cp-1", availability_zone=["az1", "az2"])
    first, second = zone_order(request.id, ["az1", "az2"])
    assert first is not None
    assert second is not None
    harness.cloud.no_valid_host(first, count=1)
    ports_before = len(harness.cloud.ports())

    ctx = harness.provision(request)

    servers = harness.cloud.servers()
    assert len(servers) == 1
    assert servers[0].status == "ACTIVE"
    assert servers[0].availability_zone == second
    assert ctx.state.last_fault is not None
    assert "No valid host" in ctx.state.last_fault
    assert len(ctx.state.discarded_servers) == 1
    ports = harness.cloud.ports()
    assert len(ports) == ports_before + 1
    assert ports[0].device_id == servers[0].id

    harness.deprovision(ctx)
    assert len(harness.cloud.ports()) == ports_before


def test_rerun_after_crash_finds_the_server_instead_of_creating_another(
        harness: Harness) -> None:
    request = harness.request("crashy")
    ctx = harness.context(request)
    for name in ("resolve-image", "resolve-flavor", "ensure-server-group", "ensure-ports",
                 "ensure-server"):
        harness.run_step(name, ctx)
    assert len(harness.cloud.servers()) == 1

    # The process died before the runner stored the state: start from an empty one.
    fresh = harness.context(request, OpenStackState())
    for step in harness.provider.steps():
        harness.run_step(step.name, fresh)

    servers = harness.cloud.servers()
    assert len(servers) == 1
    assert fresh.state.server_id == servers[0].id == ctx.state.server_id
    assert len(harness.cloud.ports()) == 1
    assert len(harness.cloud.images()) == 1


def test_provider_satisfies_the_protocol(harness: Harness) -> None:
    assert isinstance(harness.provider, Provider)
    assert OpenStackProvider.type_name == "openstack"
    schema = OpenStackProvider.data_model.model_json_schema()
    assert {"flavor", "networks", "availability_zone", "server_group"} <= set(
        schema["properties"])


def test_secrets_stay_out_of_events_and_reprs(harness: Harness) -> None:
    ctx = harness.provision(harness.request("quiet"))
    text = " ".join(ctx.events) + repr(ctx.state) + repr(harness.config) + repr(
        harness.provider) + repr(harness.provider.client)
    assert CONFIG_CANARY not in text
    assert harness.cloud.password not in text


def test_omni_join_documents_travel_in_user_data(harness: Harness) -> None:
    token = "join-token-canary-5b1e"
    request = harness.request("joiner").model_copy(update={"join": JoinSpec(
        api_url=SecretStr(f"https://omni.example:8090/?jointoken={token}"))})
    ctx = harness.provision(request)
    user_data = base64.b64decode(harness.cloud.servers()[0].user_data or "").decode()
    assert user_data.startswith(machine_config("joiner"))
    assert "kind: SideroLinkConfig" in user_data
    assert token in user_data
    assert token not in " ".join(ctx.events) + repr(ctx.state)


def test_deprovision_waits_for_nova_to_finish_deleting(harness: Harness) -> None:
    ctx = harness.provision(harness.request("lingering"))
    harness.cloud.slow_deletes(2)
    first = harness.provider.deprovision(ctx)
    assert first is not None
    assert len(harness.cloud.servers()) == 1
    machines = harness.provider.list_machines(harness.owner)
    assert [m.state for m in machines] == [MachineState.TERMINATED]
    # Ports stay until the server is gone (Nova still holds them).
    assert len(harness.cloud.ports()) == 1
    harness.deprovision(ctx)
    assert harness.cloud.servers() == []
    assert harness.cloud.ports() == []
    assert harness.cloud.count_calls("DELETE", r"/servers/") == 1

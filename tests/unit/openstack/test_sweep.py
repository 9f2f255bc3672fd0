"""The leak sweep (``SweepsLeftovers``) of the OpenStack driver, against the fake cloud.

Each test strands parts the way a crash would (a worker killed after the ports
were made, a delete that died after the server went) and checks that exactly
those, and only this owner's unused ones, are listed and removed.
"""

from __future__ import annotations

import pytest

from talprov.openstack.data import OpenStackData
from talprov.openstack.servers import tag
from talprov.openstack.state import OpenStackState
from talprov.openstack.sweep import FLOATING_IP, PORT, request_id_of
from talprov.providers.errors import Transient
from talprov.providers.ownership import REQUEST_KEY
from talprov.providers.protocol import Leftover, StepContext, SweepsLeftovers
from talprov.providers.types import Owner
from talprov.testing.openstack import port_records
from talprov.testing.openstack.wire import Request, Response
from tests.unit.openstack.harness import Harness

Ctx = StepContext[OpenStackData, OpenStackState]
UP_TO_PORTS = ("resolve-image", "resolve-flavor", "ensure-server-group", "ensure-ports")
# 60 characters: its tag "talprov-request=<id>" is too long and travels as a digest.
LONG_ID = "a-request-id-long-enough-that-its-tag-must-be-digested-x0123"


def strand_ports(harness: Harness, request_id: str, owner: Owner | None = None) -> Ctx:
    """Run a request up to its ports and stop, as a worker killed there would."""
    ctx = harness.context(harness.request(request_id))
    if owner is not None:
        ctx.owner = owner
    for name in UP_TO_PORTS:
        harness.run_step(name, ctx)
    return ctx


def port_ids(harness: Harness) -> set[str]:
    return {p.id for p in harness.cloud.ports()}


def test_the_provider_implements_the_sweep_protocol(harness: Harness) -> None:
    assert isinstance(harness.provider, SweepsLeftovers)


def test_ports_of_a_request_killed_before_its_server_are_swept(harness: Harness) -> None:
    ctx = strand_ports(harness, "killed")
    stranded = set(ctx.state.port_ids)
    assert stranded == port_ids(harness)

    leftovers = harness.provider.list_leftovers(harness.owner)

    assert leftovers == [Leftover(kind=PORT, id=port_id, request_id="killed")
                         for port_id in stranded]
    for leftover in leftovers:
        harness.provider.delete_leftover(harness.owner, leftover)
    assert harness.cloud.ports() == []
    assert harness.provider.list_leftovers(harness.owner) == []


def test_no_valid_host_crash_leaves_a_port_that_the_sweep_removes(harness: Harness) -> None:
    # The OpenStack Cluster API provider's recurring leak: the scheduler finds no
    # host, the server goes to ERROR without ever binding the port, and the
    # worker that would have released the port dies before it can.
    request = harness.request("no-room", availability_zone=["az1"])
    harness.cloud.no_valid_host("az1", count=1)
    ctx = harness.context(request)
    for name in (*UP_TO_PORTS, "ensure-server"):
        harness.run_step(name, ctx)
    harness.provider.list_machines(harness.owner)  # one poll: the build fails
    [server] = harness.cloud.servers()
    assert server.status == "ERROR"
    [port] = harness.cloud.ports()
    assert port.device_id == ""

    leftovers = harness.provider.list_leftovers(harness.owner)

    assert leftovers == [Leftover(kind=PORT, id=port.id, request_id="no-room")]
    harness.provider.delete_leftover(harness.owner, leftovers[0])
    assert harness.cloud.ports() == []


def test_a_delete_that_died_halfway_is_finished_by_two_sweeps(harness: Harness) -> None:
    ctx = harness.provision(harness.request(LONG_ID, floating_ip_pool="public"))
    [fip] = harness.cloud.floating_ips()
    [port] = harness.cloud.ports()
    assert fip.port_id == port.id
    assert all("sha256:" in t for t in port.tags if t.startswith("talprov-request="))
    # The server is deleted; the worker dies before the floating IP and the port.
    assert harness.provider.deprovision(ctx) is not None
    assert harness.cloud.servers() == []

    # The floating IP still sits on the now detached port: only the port is listed.
    first = harness.provider.list_leftovers(harness.owner)
    assert first == [Leftover(kind=PORT, id=port.id, request_id=LONG_ID)]
    harness.provider.delete_leftover(harness.owner, first[0])
    # Deleting the port freed the floating IP, so the next sweep finds it.
    second = harness.provider.list_leftovers(harness.owner)
    assert second == [Leftover(kind=FLOATING_IP, id=fip.id, request_id=LONG_ID)]
    harness.provider.delete_leftover(harness.owner, second[0])

    assert harness.cloud.ports() == []
    assert harness.cloud.floating_ips() == []
    assert harness.provider.list_leftovers(harness.owner) == []


def test_parts_of_a_running_machine_are_not_listed(harness: Harness) -> None:
    harness.provision(harness.request("alive", floating_ip_pool="public"))
    stranded = strand_ports(harness, "stranded")

    leftovers = harness.provider.list_leftovers(harness.owner)

    assert [(x.kind, x.id, x.request_id) for x in leftovers] == [
        (PORT, stranded.state.port_ids[0], "stranded")]


def test_parts_of_other_installations_and_instances_are_never_listed(
        harness: Harness) -> None:
    other_installation = Owner(installation="someone-else", instance=harness.owner.instance)
    other_instance = Owner(installation=harness.owner.installation, instance="os-other")
    for owner in (other_installation, other_instance):
        strand_ports(harness, "shared-name", owner)
    assert len(harness.cloud.ports()) == 2

    assert harness.provider.list_leftovers(harness.owner) == []
    # They are leftovers all the same, to their own owners.
    assert len(harness.provider.list_leftovers(other_installation)) == 1
    assert len(harness.provider.list_leftovers(other_instance)) == 1


def test_delete_leftover_leaves_foreign_and_attached_parts(harness: Harness) -> None:
    foreign_owner = Owner(installation="someone-else", instance=harness.owner.instance)
    foreign = strand_ports(harness, "theirs", foreign_owner)
    [foreign_leftover] = harness.provider.list_leftovers(foreign_owner)
    # Listed while detached; then the request carries on and boots on it.
    resumed = strand_ports(harness, "resumed")
    [stale] = harness.provider.list_leftovers(harness.owner)
    for name in ("ensure-server", "wait-active"):
        harness.run_step(name, resumed)
    before = port_ids(harness)

    harness.provider.delete_leftover(harness.owner, foreign_leftover)
    harness.provider.delete_leftover(harness.owner, stale)
    harness.provider.delete_leftover(harness.owner, Leftover(
        kind=PORT, id=foreign.state.port_ids[0], request_id="theirs"))

    assert port_ids(harness) == before
    assert harness.cloud.count_calls("DELETE", r"/v2.0/ports/") == 0
    [server] = harness.cloud.servers()
    assert server.status == "ACTIVE"


def test_delete_leftover_leaves_an_associated_floating_ip(harness: Harness) -> None:
    harness.provision(harness.request("with-ip", floating_ip_pool="public"))
    [fip] = harness.cloud.floating_ips()
    harness.provider.delete_leftover(harness.owner, Leftover(
        kind=FLOATING_IP, id=fip.id, request_id="with-ip"))
    assert [f.id for f in harness.cloud.floating_ips()] == [fip.id]


def test_delete_leftover_of_a_part_already_gone_is_success(harness: Harness) -> None:
    ctx = strand_ports(harness, "gone-twice")
    [leftover] = harness.provider.list_leftovers(harness.owner)
    harness.provider.delete_leftover(harness.owner, leftover)
    harness.provider.delete_leftover(harness.owner, leftover)
    assert harness.cloud.ports() == []
    assert ctx.state.port_ids == [leftover.id]


def test_a_port_bound_between_the_read_and_the_delete_is_kept(harness: Harness) -> None:
    running = harness.provision(harness.request("host"))
    strand_ports(harness, "racing")
    [leftover] = harness.provider.list_leftovers(harness.owner)
    cloud = harness.cloud

    def nova_binds_it_now(req: Request, response: Response) -> None:
        # Right after the sweep re-read the port, Nova plugs it into a server.
        server = cloud.state.servers[str(running.state.server_id)]
        port_records.bind_port(cloud.state, cloud.state.ports[leftover.id], server)

    cloud.after("GET", rf"/v2.0/ports/{leftover.id}$", nova_binds_it_now)

    harness.provider.delete_leftover(harness.owner, leftover)

    assert leftover.id in port_ids(harness)
    # The delete was sent and refused by its If-Match revision, not skipped.
    assert cloud.count_calls("DELETE", rf"/v2.0/ports/{leftover.id}$") == 1


def test_listing_is_one_port_list_and_one_floating_ip_list(harness: Harness) -> None:
    for index in range(3):
        strand_ports(harness, f"leak-{index}")
    harness.provision(harness.request("alive", floating_ip_pool="public"))
    harness.cloud.calls.clear()

    leftovers = harness.provider.list_leftovers(harness.owner)

    assert sorted(x.request_id or "" for x in leftovers) == ["leak-0", "leak-1", "leak-2"]
    network_calls = [c for c in harness.cloud.calls if c[1].startswith("/network/")]
    # Side by side, so in either order.
    assert sorted((method, path) for method, path, _ in network_calls) == [
        ("GET", "/network/v2.0/floatingips"), ("GET", "/network/v2.0/ports")]
    owner_filter = "tags=talprov-installation=test-install,talprov-instance=os-test"
    assert all(owner_filter in query for _, _, query in network_calls)


def test_listing_failures_are_transient(harness: Harness) -> None:
    harness.cloud.fail_next("GET", r"/v2.0/ports$", 503, count=100, retry_after=4)
    with pytest.raises(Transient) as caught:
        harness.provider.list_leftovers(harness.owner)
    assert caught.value.retry_after == 4


@pytest.mark.parametrize("kind", ["volume", ""])
def test_unknown_kinds_are_left_alone(harness: Harness, kind: str) -> None:
    strand_ports(harness, "kinds")
    [port] = harness.cloud.ports()
    harness.provider.delete_leftover(harness.owner, Leftover(kind=kind, id=port.id,
                                                              request_id="kinds"))
    assert port_ids(harness) == {port.id}



def test_request_ids_are_read_back_only_when_the_tag_proves_them() -> None:
    short = tag(REQUEST_KEY, "web-1")
    digested = tag(REQUEST_KEY, LONG_ID)
    assert request_id_of([short, "other"], None) == "web-1"
    assert request_id_of([digested], LONG_ID) == LONG_ID
    # A digest is never taken for an id, nor is a name that does not hash to it.
    assert request_id_of([digested], None) is None
    assert request_id_of([digested], LONG_ID[:-1] + "9") is None
    # No request tag, or two of them: nobody's, so never swept.
    assert request_id_of(["talprov-installation=x"], "web-1") is None
    assert request_id_of([short, tag(REQUEST_KEY, "web-2")], "web-1") is None

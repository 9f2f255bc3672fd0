"""provider_data features: flavor by size, server groups, floating IPs, existing images."""

from __future__ import annotations

import pytest

from talprov.providers.errors import InvalidRequest
from tests.unit.openstack.harness import Harness


def test_smallest_fitting_flavor_is_chosen(harness: Harness) -> None:
    request = harness.request("sized", flavor=None, cpu=2, memory=3000, disk=30)
    harness.provision(request)
    assert harness.cloud.servers()[0].flavor.name == "m1.medium"


def test_no_fitting_flavor_names_the_field(harness: Harness) -> None:
    request = harness.request("huge", flavor=None, cpu=64, memory=1, disk=1)
    ctx = harness.context(request)
    with pytest.raises(InvalidRequest) as caught:
        harness.run_step("resolve-flavor", ctx)
    assert caught.value.field == "provider_data.cpu"


def test_anti_affinity_group_is_shared_and_spreads_hosts(harness: Harness) -> None:
    for i in range(3):
        harness.provision(harness.request(f"cp-{i}", server_group="cp", availability_zone="az1"))
    groups = harness.cloud.server_groups()
    assert len(groups) == 1
    assert groups[0].policy == "anti-affinity"
    assert len(groups[0].members) == 3
    hosts = {s.host for s in harness.cloud.servers()}
    assert len(hosts) == 3


def test_floating_ip_is_created_tagged_and_removed(harness: Harness) -> None:
    ctx = harness.provision(harness.request("public", floating_ip_pool="public"))
    fips = harness.cloud.floating_ips()
    assert len(fips) == 1
    assert fips[0].port_id == ctx.state.port_ids[0]
    assert fips[0].floating_ip_address in ctx.state.addresses
    assert "talprov-request=public" in fips[0].tags
    harness.deprovision(ctx)
    assert harness.cloud.floating_ips() == []
    assert harness.cloud.ports() == []


def test_existing_image_skips_the_factory(harness: Harness) -> None:
    image = harness.cloud.add_image("my-talos")
    ctx = harness.provision(harness.request("byo", image="my-talos"))
    assert ctx.state.image_id == image.id
    assert len(harness.cloud.images()) == 1
    # Nothing was downloaded: the cache holds no image.
    assert not (harness.runtime.cache_dir / "openstack").exists()


def test_explicit_port_with_fixed_ip_and_security_group(harness: Harness) -> None:
    port = {"network": "private", "fixed_ips": [{"ip_address": "10.0.0.50"}],
            "security_groups": ["default"]}
    ctx = harness.provision(harness.request("fixed", networks=[], ports=[port]))
    assert ctx.state.addresses == ["10.0.0.50"]
    assert harness.cloud.ports()[0].fixed_ips[0]["ip_address"] == "10.0.0.50"


def test_unknown_network_names_the_field(harness: Harness) -> None:
    ctx = harness.context(harness.request("lost", networks=["nowhere"]))
    with pytest.raises(InvalidRequest) as caught:
        harness.run_step("ensure-ports", ctx)
    assert caught.value.field == "provider_data.networks"


def test_root_volume_boots_from_a_volume_made_from_the_image(harness: Harness) -> None:
    request = harness.request("bfv", root_volume={"size": 30, "type": "ssd"},
                              config_drive=True, tags=["team-a"], metadata={"owner": "ops"})
    ctx = harness.provision(request)
    server = harness.cloud.servers()[0]
    assert server.image_id is None
    boot = server.block_devices[0]
    assert boot["uuid"] == ctx.state.image_id
    assert (boot["source_type"], boot["destination_type"]) == ("image", "volume")
    assert (boot["volume_size"], boot["volume_type"]) == (30, "ssd")
    assert server.config_drive
    assert "team-a" in server.tags
    assert server.metadata["owner"] == "ops"

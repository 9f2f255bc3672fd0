"""Settings of provider_data the cloud would refuse are found with the lookups,
before anything is created (QA: an unknown floating_ip_pool was found only once
the server was ACTIVE, its server and port left until the request was deleted)."""

from __future__ import annotations

import pytest

from talprov.providers.errors import InvalidRequest
from tests.unit.openstack.harness import Harness

NETWORK_CALLS = r"/v2\.0/networks"


def test_an_unknown_floating_ip_pool_fails_before_anything_is_created(
        harness: Harness) -> None:
    with pytest.raises(InvalidRequest, match=r"provider_data\.floating_ip_pool") as failed:
        harness.provision(harness.request("nopool-1", floating_ip_pool="nopool"))
    assert "'nopool'" in str(failed.value)
    assert harness.cloud.servers() == []
    assert harness.cloud.ports() == []
    assert harness.cloud.count_calls("POST", r"/servers$") == 0


def test_the_pool_is_looked_up_with_the_other_names_once(harness: Harness) -> None:
    harness.provision(harness.request("pool-1", floating_ip_pool="public"))
    harness.cloud.calls.clear()
    ctx = harness.provision(harness.request("pool-2", floating_ip_pool="public"))
    assert ctx.state.floating_ip_id is not None
    # Cached by the first request: neither the steps nor the floating IP ask again.
    assert harness.cloud.count_calls("GET", NETWORK_CALLS) == 0


def test_an_unknown_zone_fails_before_anything_is_created(harness: Harness) -> None:
    with pytest.raises(InvalidRequest,
                       match=r"provider_data\.availability_zone") as failed:
        harness.provision(harness.request("az-1", availability_zone=["az1", "az9"]))
    assert "'az9'" in str(failed.value)
    assert "az1, az2" in str(failed.value)  # what the cloud offers
    assert harness.cloud.ports() == []
    assert harness.cloud.count_calls("POST", r"/servers$") == 0


def test_novas_refusal_of_a_zone_names_the_field(harness: Harness) -> None:
    # The zone list was cached when az2 still took servers; Nova refuses it now.
    harness.provision(harness.request("az-ok", availability_zone=["az2"]))
    with harness.cloud.lock:
        del harness.cloud.state.availability_zones["az2"]
    with pytest.raises(InvalidRequest, match=r"provider_data\.availability_zone"):
        harness.provision(harness.request("az-gone", availability_zone=["az2"]))
    assert [s.name for s in harness.cloud.servers()] == ["az-ok"]


@pytest.mark.parametrize("fixed", [
    {"subnet": "private-subnet", "ip_address": "192.168.7.10"},
    {"ip_address": "192.168.7.10"},
])
def test_a_fixed_ip_outside_the_subnet_fails_before_a_port_is_made(
        harness: Harness, fixed: dict[str, str]) -> None:
    request = harness.request("ip-1", networks=[],
                              ports=[{"network": "private", "fixed_ips": [fixed]}])
    with pytest.raises(InvalidRequest, match=r"provider_data\.ports") as failed:
        harness.provision(request)
    assert "192.168.7.10" in str(failed.value)
    assert "10.0.0.0/24" in str(failed.value)
    assert harness.cloud.ports() == []
    assert harness.cloud.count_calls("POST", r"/v2\.0/ports$") == 0


def test_a_fixed_ip_inside_the_subnet_is_taken(harness: Harness) -> None:
    request = harness.request("ip-2", networks=[], ports=[
        {"network": "private", "fixed_ips": [{"ip_address": "10.0.0.77"}]}])
    ctx = harness.provision(request)
    assert "10.0.0.77" in ctx.state.addresses
